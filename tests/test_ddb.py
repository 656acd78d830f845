"DDB stages 05-09 on tiny random models: tokens, swapping, resumable inpainting, pruning scores, the retraining loss."
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from spurnb.config import digest, get_config
from spurnb.generator import load_generator
from spurnb.inpaint import inpaint_masks, inpaint_resumable, target_classes
from spurnb.inversion import (class_seed, draw_tokens, images_of, inversion_images, learn_per_class, learn_tokens,
                              load_tokens, save_tokens, token_groups)
from spurnb.prune import prune_decision, psi_scores, psi_thresholds, rho_scores
from spurnb.retrain import JoinedDataset, ddb_loss
from spurnb.data import ArrayGroupDataset



@pytest.fixture(scope="module")
def icfg():
    return {**get_config("smoke")["ddb"]["inversion"], "steps": 3, "batch_size": 2, "tokens_per_class": 1}


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_inversion_images_pick_by_loss_per_class():
    losses, y = np.array([0.1, 2.0, 0.5, 0.3, 0.9, 3.0]), np.array([0, 0, 0, 1, 1, 1])
    assert inversion_images(losses, y, 1)[0].tolist() == [1] and inversion_images(losses, y, 1)[1].tolist() == [5]
    assert inversion_images(losses, y, 5)[0].tolist() == [1, 2, 0]  # capped at the class size
    with pytest.raises(ValueError, match="unknown selection"):
        inversion_images(losses, y, 1, "oracle")


def test_learned_tokens_move_and_nothing_else_does(folder, icfg):
    before = load_generator(folder).text_encoder.get_input_embeddings().weight.detach().clone()
    learned, meta = learn_tokens(folder, {0: _images(3), 1: _images(3, 1)}, icfg, seed=0)
    assert list(learned) == ["<c0>", "<c1>"] and len(meta["history"]) == icfg["steps"]
    assert all(v > 0 for v in meta["relative_move"].values())  # the embeddings moved away from the initial word
    assert not torch.allclose(learned["<c0>"], learned["<c1>"])
    after = load_generator(folder).text_encoder.get_input_embeddings().weight
    assert torch.equal(before, after)  # the model on disk is untouched
    zero, meta0 = learn_tokens(folder, {0: _images(0), 1: _images(0)}, icfg, seed=0)
    assert meta0["history"] == [] and torch.equal(zero["<c0>"], zero["<c1>"])  # N = 0: the initial word


def test_classes_learn_apart_and_merge_to_what_each_learns_alone(folder, icfg):
    "learn_per_class is learn_tokens on each class with its own seed, merged: what each process of a split run makes."
    images = {0: _images(3), 1: _images(3, 1)}
    learned, meta = learn_per_class(folder, images, icfg, seed=5)
    alone = {c: learn_tokens(folder, {c: images[c]}, icfg, seed=class_seed(5, c)) for c in (0, 1)}
    assert list(learned) == ["<c0>", "<c1>"] and meta["tokens"] == ["<c0>", "<c1>"]
    for c, t_ in ((0, "<c0>"), (1, "<c1>")):
        assert torch.equal(learned[t_], alone[c][0][t_])
        assert meta["class_history"][str(c)] == alone[c][1]["history"]
    assert meta["history"] == pytest.approx([(a + b) / 2 for a, b in zip(alone[0][1]["history"], alone[1][1]["history"])])
    assert meta["class_tokens"] == {"0": ["<c0>"], "1": ["<c1>"]} and meta["n_images"] == {"0": 3, "1": 3}


def test_several_words_per_class_each_learn_from_their_own_images(folder, icfg):
    images = {0: _images(4), 1: _images(4, 1)}
    groups = {0: np.array([0, 0, 1, 1]), 1: np.array([1, 1, 1, 1])}
    learned, meta = learn_tokens(folder, images, {**icfg, "tokens_per_class": 2}, seed=0, groups=groups)
    assert list(learned) == ["<c0-0>", "<c0-1>", "<c1-0>", "<c1-1>"]
    assert meta["class_tokens"] == {"0": ["<c0-0>", "<c0-1>"], "1": ["<c1-0>", "<c1-1>"]}
    assert meta["token_images"] == {"<c0-0>": 2, "<c0-1>": 2, "<c1-0>": 0, "<c1-1>": 4}
    assert meta["relative_move"]["<c1-0>"] == 0 and meta["relative_move"]["<c1-1>"] > 0  # no image, no gradient
    assert not torch.allclose(learned["<c0-0>"], learned["<c0-1>"])
    assert set(draw_tokens(meta, np.ones(40, int), seed=0)) == {"<c1-1>"}  # a word no image taught is never drawn
    assert len(set(draw_tokens(meta, np.zeros(40, int), seed=0))) == 2
    assert draw_tokens(meta, np.array([0, 1, 0]), seed=3) == draw_tokens(meta, np.array([0, 1, 0]), seed=3)
    with pytest.raises(ValueError, match="one of its class's"):
        learn_tokens(folder, images, {**icfg, "tokens_per_class": 2}, seed=0, groups={0: np.array([0, 2, 0, 0]), 1: groups[1]})


def test_token_groups_split_by_features_of_the_classifier():
    from spurnb.erm import features, make_model

    model = make_model("resnet_small", 2, [4, 8, 8])
    x = np.zeros((6, 32, 32, 3), np.uint8)
    x[3:] = 255  # two kinds of image
    ds = ArrayGroupDataset(x, np.zeros(6), np.zeros(6), 2, 2)
    f = features(model, ds.subset(np.arange(6)))
    assert f.shape == (6, 8) and np.allclose(f[0], f[1]) and not np.allclose(f[0], f[3])
    groups = token_groups(f, 2, seed=0)
    assert len(set(groups[:3])) == 1 and len(set(groups[3:])) == 1 and groups[0] != groups[3]
    assert token_groups(f, 1).tolist() == [0] * 6 and token_groups(f[:0], 3).shape == (0,)
    assert features(model, ds.subset(np.arange(0))).shape == (0, 8)
    big = make_model("resnet50", 2)  # the paper profile's classifier: its `fc` removed
    assert features(big, ds.subset(np.arange(2))).shape == (2, 2048)


def test_bad_init_word_and_token_clash(folder, icfg):
    with pytest.raises(ValueError, match="single token"):
        learn_tokens(folder, {0: _images(2)}, {**icfg, "init_word": "zebra crossing"}, seed=0)
    with pytest.raises(ValueError, match="clash"):
        learn_tokens(folder, {0: _images(2)}, {**icfg, "placeholder": "seven"}, seed=0)


def test_tokens_round_trip_through_load_textual_inversion(folder, tmp_path):
    pipe = load_generator(folder)
    width = pipe.text_encoder.get_input_embeddings().weight.shape[-1]
    vecs = {"<c0>": torch.randn(width), "<c1>": torch.randn(width)}
    files = save_tokens(vecs, tmp_path)
    assert (files["<c0>"] / "learned_embeds.safetensors").exists()
    load_tokens(pipe, files)
    table = pipe.text_encoder.get_input_embeddings().weight
    for t, v in vecs.items():
        assert torch.allclose(table[pipe.tokenizer.convert_tokens_to_ids(t)], v)


def test_missing_or_wrong_token_files_fail_loudly(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="learned_embeds.safetensors"):
        load_tokens(load_generator(folder), {"<c0>": tmp_path / "absent"})
    wrong = save_tokens({"<c0>": torch.zeros(5)}, tmp_path / "w")
    with pytest.raises(ValueError, match="width"):
        load_tokens(load_generator(folder), wrong)
    junk = tmp_path / "j" / "c0"
    junk.mkdir(parents=True)
    (junk / "learned_embeds.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable"):
        load_tokens(load_generator(folder), {"<c0>": junk})


def test_images_of_resizes():
    ds = ArrayGroupDataset(_images(4), [0, 1, 0, 1], [0, 0, 1, 1], 2, 2)
    assert images_of(ds, np.array([2, 0]), 32).shape == (2, 32, 32, 3)
    assert (images_of(ds, np.array([2]), 32)[0] == ds.images[2]).all()
    assert images_of(ds, np.array([1]), 16).shape == (1, 16, 16, 3)


def test_images_of_takes_the_whole_file_not_the_classifier_crop(tmp_path):
    "The generator sees the whole image: a red border strip that the 224 centre crop cuts off must be there."
    from PIL import Image

    from spurnb.data import FileGroupDataset

    im = np.zeros((375, 500, 3), np.uint8)
    im[:, :20] = [255, 0, 0]  # the left border: outside the centre crop of the resized image
    Image.fromarray(im).save(tmp_path / "a.png")
    ds = FileGroupDataset([tmp_path / "a.png"], [0], [0], 2, 2, size=224, resize=256)
    assert (ds.load_image(0)[0] < 0.5).all()  # the classifier's crop has no red
    whole = images_of(ds, np.array([0]), 512)[0]
    assert whole.shape == (512, 512, 3) and (whole[:, :10, 0] > 200).all() and (whole[:, -10:, 0] < 50).all()


def test_swap_never_keeps_the_class_and_masks():
    assert target_classes(np.array([0, 1]), 2).tolist() == [1, 0]
    y = np.arange(100) % 4
    assert (target_classes(y, 4, seed=3) != y).all()
    with pytest.raises(ValueError):
        target_classes(y, 1)
    m = np.zeros((1, 10, 10), bool)
    m[0, 2:4, 5] = True
    assert inpaint_masks(m, "box", 1).sum() == 4 * 3
    with pytest.raises(ValueError, match="unknown mask"):
        inpaint_masks(m, "ellipse")


class _CountingPipe:
    "Stands in for an inpainting pipeline: returns the image inverted and counts the images it was asked for."

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, image, mask_image, generator, output_type, **kw):
        from types import SimpleNamespace

        self.calls += len(prompts)
        return SimpleNamespace(images=1 - image.permute(0, 2, 3, 1).numpy())


def test_inpainting_resumes_from_finished_chunks(tmp_path):
    imgs, masks = _images(10), np.ones((10, 32, 32), bool)
    pipe = _CountingPipe()
    a = inpaint_resumable(pipe, imgs, masks, ["p"] * 10, tmp_path, batch_size=4, chunk=4)
    assert pipe.calls == 10 and sorted(p.name for p in tmp_path.glob("part_*.npz")) == [
        "part_000000.npz", "part_000004.npz", "part_000008.npz"]
    (tmp_path / "part_000004.npz").unlink()  # as if the run had been killed during the second chunk
    pipe2 = _CountingPipe()
    b = inpaint_resumable(pipe2, imgs, masks, ["p"] * 10, tmp_path, batch_size=4, chunk=4)
    assert pipe2.calls == 4 and (a == b).all() and (a == 255 - imgs).all()


def test_digest_tracks_content():
    assert digest({"x": np.zeros(3)}) != digest({"x": np.zeros(4)}) != digest({"y": np.zeros(4)})


def test_psi_and_decision():
    p = np.array([[0.9, 0.1], [0.4, 0.6]])
    assert np.allclose(psi_scores(p, np.array([0, 1])), [0.9, 0.6])
    assert psi_thresholds(p, np.array([0, 0])) == {0: pytest.approx(0.65)}
    d = prune_decision(np.array([0.1, 0.1, 0.7]), np.array([0.5, 0.5, 0.5]), np.array([0.3, 0.31, 0.9]), 0.3)
    assert d["keep"].tolist() == [False, True, False]


def test_rho_is_the_attribution_inside_the_mask():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    x0, x1 = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    full, half = np.ones((3, 8, 8), bool), np.zeros((3, 8, 8), bool)
    half[:, :4] = True
    target = np.array([1, 0, 1])
    r_full, delta, maps = rho_scores(model, x1, x0, full, target, steps=100, batch_size=2, keep_maps=True)
    gain = (F.softmax(model(x1), 1) - F.softmax(model(x0), 1))[np.arange(3), target].detach().numpy()
    assert np.allclose(r_full, gain, atol=1e-3) and np.abs(delta).max() < 1e-3  # completeness
    r_half, _, _ = rho_scores(model, x1, x0, half, target, steps=100)
    assert np.allclose(r_half, maps[:, :4].sum((1, 2)), atol=1e-5)
    small, _, _ = rho_scores(model, x1, x0, np.ones((3, 4, 4), bool), target, steps=20)  # masks at another size
    assert small.shape == (3,)


def test_ddb_loss_has_no_nan_on_missing_parts():
    logits = torch.randn(4, 2, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1])
    for gc in ([-1, -1, -1, -1], [0, 0, 0, 0], [1, -1, 1, -1], [-1, 0, -1, 0]):
        loss = ddb_loss(logits, y, torch.tensor(gc), [6.0, 10.0])
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(logits.grad).all()
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.isclose(ddb_loss(logits, y, torch.tensor([-1, 0, 1, -1]), [2.0, 3.0]),
                         (ce[0] + ce[3]) / 2 + 2 * ce[1] + 3 * ce[2])


def test_joined_dataset_orders_real_then_generated():
    real = ArrayGroupDataset(_images(3), [0, 1, 0], [0, 1, 0], 2, 2, name="t", split="train")
    gen = _images(2, 5)
    j = JoinedDataset(real, gen, np.array([1, 0]), np.array([0, 1]))
    assert len(j) == 5 and j.y.tolist() == [0, 1, 0, 1, 0] and j.gen_class.tolist() == [-1, -1, -1, 1, 0]
    assert j.g.tolist() == [0, 3, 0, 2, 1]
    assert torch.allclose(j[3][0], torch.from_numpy(gen[0]).permute(2, 0, 1).float() / 255)
    empty = JoinedDataset(real, gen[:0], np.zeros(0, int), np.zeros(0, int))
    assert len(empty) == 3


def test_score_generated_gives_both_heads_per_image():
    from spurnb.prune import score_generated, softmax_of, to_input

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    rng = np.random.default_rng(0)
    gen, src = (rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8) for _ in range(2))
    src_y = np.array([0, 0, 1, 1])
    rcfg = {"ig_steps": 20, "batch_size": 2, "internal_batch_size": 40}
    a, Psi = score_generated(model, gen, src, np.ones((4, 8, 8), bool), src_y, 1 - src_y, rcfg, 8)
    assert Psi == psi_thresholds(softmax_of(model, to_input(src, 8)), src_y)
    assert np.allclose(a["psi"], psi_scores(softmax_of(model, to_input(gen, 8)), src_y))
    assert a["Psi"].tolist() == [Psi[0], Psi[0], Psi[1], Psi[1]] and a["rho"].shape == a["delta"].shape == (4,)
    assert np.allclose(a["psi"] + a["p_new"], 1)  # two classes: old and new probabilities add up


def test_inversion_memory_settings_learn_the_same_words(folder, icfg):
    "Gradient checkpointing and accumulation change memory, not what is learned; bf16 learns nearly the same (issue 19)."
    images = {0: _images(3), 1: _images(3, 1)}
    plain, meta = learn_tokens(folder, images, {**icfg, "precision": "fp32", "grad_checkpointing": False, "accumulate": 1})
    ckpt, meta_c = learn_tokens(folder, images, {**icfg, "grad_checkpointing": True, "accumulate": 3})
    assert meta_c["history"] == pytest.approx(meta["history"], rel=1e-5)
    assert all(torch.allclose(plain[t], ckpt[t], atol=1e-6) for t in plain)
    half, meta_h = learn_tokens(folder, images, {**icfg, "precision": "bf16"})
    assert all(torch.isfinite(half[t]).all() for t in half) and len(meta_h["history"]) == icfg["steps"]
    assert meta_h["history"] == pytest.approx(meta["history"], rel=0.05)  # bf16's rounding: close, not equal
    with pytest.raises(ValueError, match="accumulate must be at least 1"):
        learn_tokens(folder, images, {**icfg, "accumulate": 0})
