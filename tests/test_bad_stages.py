"Bad input to the DDB stages (metrics, 05-09) is refused at the door with a one-line error naming what is wrong."
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from spurnb.config import CacheWarning, get_config
from spurnb.data import ArrayGroupDataset
from spurnb.generator import load_generator
from spurnb.inpaint import inpaint_masks, inpaint_resumable, target_classes
from spurnb.inversion import images_of, inversion_images, learn_tokens, load_tokens, save_tokens
from spurnb.metrics import bootstrap_ci, group_report
from spurnb.prune import prune_decision, psi_scores, psi_thresholds, rho_scores, score_generated, softmax_of, to_input
from spurnb.retrain import JoinedDataset, ddb_loss, retrain
from test_ddb import _CountingPipe  # an inpainting stand-in that inverts the image
from spurnb.segment import EmbeddedSegmenter, Segmenter, TinyUNet, background_images, fit_segmenter, mask_boxes, segment


def _images(n, side=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def _one_line(e):
    assert "\n" not in str(e.value), str(e.value)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


# --- metrics -------------------------------------------------------------------------------------------------------

Y, G = np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3])


@pytest.mark.parametrize("arg", ["pred", "y", "g"])
def test_group_report_refuses_nan(arg):
    bad = np.array([0, np.nan, 1, 1])
    kw = {"pred": Y, "y": Y, "g": G, arg: bad}
    with pytest.raises(ValueError, match=f"^{arg} must be integer.*NaN") as e:
        group_report(kw["pred"], kw["y"], kw["g"])
    _one_line(e)


def test_group_report_refuses_fractions_negatives_and_bad_train_g():
    with pytest.raises(ValueError, match=r"^g must be integer.*float64"):
        group_report(Y, Y, np.array([0, 1.5, 2, 3]))
    with pytest.raises(ValueError, match=r"^g must be integer.*float64"):  # whole floats are not ids either
        group_report(Y, Y, G.astype(float))
    with pytest.raises(ValueError, match=r"^g must be non-negative.*-1"):
        group_report(Y, Y, np.array([0, -1, 2, 3]))
    with pytest.raises(ValueError, match=r"^y must be non-negative"):
        group_report(Y, np.array([0, -1, 1, 1]), G)
    with pytest.raises(ValueError, match=r"^train_g must be integer.*NaN"):
        group_report(Y, Y, G, train_g=np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match=r"pred, y and g must have the same length, got 4, 3, 4"):
        group_report(Y, Y[:3], G)


def test_group_report_valid_inputs_unchanged():
    r = group_report(np.array([True, False, True, True]), np.array([1, 0, 0, 1]), G.astype(np.int32))
    assert r["per_group"] == [1.0, 1.0, 0.0, 1.0] and r["avg"] == 0.75


def test_bootstrap_ci_refuses_bad_input():
    with pytest.raises(ValueError, match="^g must be integer.*NaN"):
        bootstrap_ci(Y, Y, np.array([0, np.nan, 1, 1]))
    with pytest.raises(ValueError, match="same non-zero length, got 4, 3, 4"):
        bootstrap_ci(Y, Y[:3], G)
    with pytest.raises(ValueError, match="n_boot must be >= 1.*n_boot=0"):
        bootstrap_ci(Y, Y, G, n_boot=0)
    with pytest.raises(ValueError, match="level=1.5"):
        bootstrap_ci(Y, Y, G, level=1.5)
    with pytest.raises(ValueError, match="stat must be one of.*'weighted'"):
        bootstrap_ci(Y, Y, G, stat="weighted")


# --- prune ---------------------------------------------------------------------------------------------------------

def test_rho_scores_refuses_count_mismatches_and_zero_knobs():
    model, x0, x1 = _model(), torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    m, t = np.ones((3, 8, 8), bool), np.array([1, 0, 1])
    with pytest.raises(ValueError, match="generated has 3, masks has 2, target has 3") as e:
        rho_scores(model, x1, x0, m[:2], t, steps=5)
    _one_line(e)
    with pytest.raises(ValueError, match="target has 2"):
        rho_scores(model, x1, x0, m, t[:2], steps=5)
    with pytest.raises(ValueError, match=r"generated and original.*\(3, 3, 8, 8\) and \(2, 3, 8, 8\)"):
        rho_scores(model, x1, x0[:2], m, t, steps=5)
    with pytest.raises(ValueError, match=r"masks must be bool N×H×W, got shape \(3, 8, 8, 3\)"):
        rho_scores(model, x1, x0, np.ones((3, 8, 8, 3), bool), t, steps=5)
    for kw, name in (({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"),
                     ({"internal_batch_size": 0}, "internal_batch_size")):
        with pytest.raises(ValueError, match=f"^{name} must be at least 1, got 0"):
            rho_scores(model, x1, x0, m, t, **{"steps": 5, **kw})


def test_psi_and_decision_refuse_mismatches():
    p = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="probs_generated has 3, src_y has 2"):
        psi_scores(p, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"src_y must be .*class indices in \[0, 2\).*\[0, 2\]"):
        psi_scores(p, np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="probs_source has 3, src_y has 2"):
        psi_thresholds(p, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"psi has shape \(3,\), Psi \(2,\), rho \(3,\)"):
        prune_decision(np.ones(3), np.ones(2), np.ones(3), 0.1)
    with pytest.raises(ValueError, match="^rho must be finite"):
        prune_decision(np.ones(2), np.ones(2), np.array([0.1, np.nan]), 0.1)
    with pytest.raises(ValueError, match="^P must be finite"):
        prune_decision(np.ones(2), np.ones(2), np.ones(2), float("nan"))
    with pytest.raises(ValueError, match="^batch_size must be at least 1"):
        softmax_of(_model(), torch.rand(2, 3, 8, 8), batch_size=0)
    with pytest.raises(ValueError, match=r"^images must be uint8 N×H×W×3, got uint8 \(2, 8, 8\)"):
        to_input(np.zeros((2, 8, 8), np.uint8), 8)


def test_score_generated_refuses_mismatches_before_work():
    gen, src, m = _images(4), _images(4, seed=1), np.ones((4, 8, 8), bool)
    sy, rcfg = np.array([0, 0, 1, 1]), {"ig_steps": 5, "batch_size": 2, "internal_batch_size": 40}
    model = _model()
    with pytest.raises(ValueError, match=r"src_images \(3, 8, 8, 3\)"):
        score_generated(model, gen, src[:3], m, sy, 1 - sy, rcfg, 8)
    with pytest.raises(ValueError, match=r"masks \(3, 8, 8\)"):
        score_generated(model, gen, src, m[:3], sy, 1 - sy, rcfg, 8)
    with pytest.raises(ValueError, match=r"masks \(4, 6, 6\)"):
        score_generated(model, gen, src, np.ones((4, 6, 6), bool), sy, 1 - sy, rcfg, 8)
    with pytest.raises(ValueError, match="gen_images has 4, src_y has 3, y has 4"):
        score_generated(model, gen, src, m, sy[:3], 1 - sy, rcfg, 8)
    with pytest.raises(ValueError, match="^gen_images must be uint8"):
        score_generated(model, gen.astype(float), src, m, sy, 1 - sy, rcfg, 8)
    for k in rcfg:
        with pytest.raises(ValueError, match=f"^ddb.prune.{k} must be at least 1, got 0"):
            score_generated(model, gen, src, m, sy, 1 - sy, {**rcfg, k: 0}, 8)


# --- inversion -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def icfg():
    return {**get_config("smoke")["ddb"]["inversion"], "steps": 3, "batch_size": 2, "tokens_per_class": 1}


def _raw_token(folder, vec):
    "Write a token file directly (save_tokens refuses non-finite vectors)."
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"<c0>": vec}, folder / "learned_embeds.safetensors")
    return {"<c0>": folder}


def test_load_tokens_refuses_nan_and_inf_and_names_the_file(folder, tmp_path):
    pipe = load_generator(folder)
    width = pipe.text_encoder.get_input_embeddings().weight.shape[-1]
    for name, vec in (("nan", torch.full((width,), float("nan"))), ("inf", torch.full((1, width), float("inf")))):
        files = _raw_token(tmp_path / name / "c0", vec)
        with pytest.raises(ValueError, match=f"{name}/c0/learned_embeds.safetensors for token <c0> holds NaN or Inf") as e:
            load_tokens(pipe, files)
        _one_line(e)
    with pytest.raises(FileNotFoundError, match="absent/learned_embeds.safetensors for token <c0> is missing"):
        load_tokens(pipe, {"<c0>": tmp_path / "absent"})
    with pytest.raises(ValueError, match=f"wide/c0/learned_embeds.safetensors must hold one vector of width {width}"):
        load_tokens(pipe, _raw_token(tmp_path / "wide" / "c0", torch.zeros(width + 1)))
    with pytest.raises(ValueError, match="refusing to save tokens <c1>"):
        save_tokens({"<c0>": torch.zeros(width), "<c1>": torch.full((width,), float("nan"))}, tmp_path / "s")


def test_learn_tokens_refuses_bad_input_and_divergence(folder, icfg):
    im = _images(3, 32)
    with pytest.raises(ValueError, match=r"^images\[0\] must be uint8 N×H×W×3, got float64"):
        learn_tokens(folder, {0: im.astype(float)}, icfg)
    with pytest.raises(ValueError, match=r"^masks\[0\] must be bool N×H×W matching images\[0\] \(3, 32, 32\)"):
        learn_tokens(folder, {0: im}, icfg, masks={0: np.ones((2, 32, 32), bool)})
    with pytest.raises(ValueError, match="batch_size=0"):
        learn_tokens(folder, {0: im}, {**icfg, "batch_size": 0})
    with pytest.raises(ValueError, match="steps=-1"):
        learn_tokens(folder, {0: im}, {**icfg, "steps": -1})
    with pytest.raises(ValueError, match="lr=nan"):
        learn_tokens(folder, {0: im}, {**icfg, "lr": float("nan")})
    with pytest.raises(ValueError, match="the vectors of <c0> hold NaN or Inf.*ddb.inversion.lr") as e:
        learn_tokens(folder, {0: im}, {**icfg, "lr": 1e20, "weight_decay": 0.0})
    _one_line(e)


def test_inversion_images_and_images_of_refuse_bad_input():
    with pytest.raises(ValueError, match=r"losses and y .* shapes \(3,\) and \(2,\)"):
        inversion_images(np.array([1.0, 2, 3]), np.array([0, 1]), 1)
    with pytest.raises(ValueError, match="^losses must be finite, got 1 NaN"):
        inversion_images(np.array([1.0, np.nan, 3]), np.array([0, 1, 1]), 1)
    with pytest.raises(ValueError, match="^n .* must be >= 0, got -1"):
        inversion_images(np.array([1.0, 2, 3]), np.array([0, 1, 1]), -1)
    ds = ArrayGroupDataset(_images(3), [0, 1, 0], [0, 0, 1], 2, 2)
    with pytest.raises(ValueError, match=r"^idx must be .* 3 items, got int64 \(1,\) in \[5, 5\]"):
        images_of(ds, np.array([5]), 8)
    with pytest.raises(ValueError, match="^idx must be .*float64"):
        images_of(ds, np.array([0.5]), 8)
    with pytest.raises(ValueError, match="^size must be at least 1, got 0"):
        images_of(ds, np.array([0]), 0)


# --- segment -------------------------------------------------------------------------------------------------------

class _Square(Segmenter):
    def check_prompt(self, prompt):
        return prompt

    def predict(self, images, prompt):
        n, h, w = images.shape[:3]
        m = np.zeros((n, h, w), bool)
        m[:, 2:5, 2:5] = True
        return m, np.ones(n, np.float32), mask_boxes(m)


class _SmallMasks(_Square):
    def predict(self, images, prompt):
        m, s, b = super().predict(images, prompt)
        return m[:, :4, :4], s, b


class _TooFew(_Square):
    def predict(self, images, prompt):
        m, s, b = super().predict(images, prompt)
        return m[:1], s[:1], b[:1]


def test_segment_refuses_bad_batch_size_images_and_segmenter_output():
    im = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="^batch_size must be >= 1.*batch_size=0"):
        segment(im, "x", _Square(), batch_size=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        segment(im, "digit", EmbeddedSegmenter(TinyUNet([8, 16])), batch_size=0)
    with pytest.raises(ValueError, match="dilation=-1"):
        segment(im, "x", _Square(), dilation=-1)
    with pytest.raises(ValueError, match=r"^images must be uint8 N×H×W×3, got float64"):
        segment(im.astype(float), "x", _Square())
    with pytest.raises(ValueError, match=r"^_SmallMasks.predict gave masks \(3, 4, 4\).*expected \(3, 8, 8\)") as e:
        segment(im, "x", _SmallMasks())
    _one_line(e)
    with pytest.raises(ValueError, match=r"^_TooFew.predict gave masks \(1, 8, 8\), scores \(1,\)"):
        segment(im, "x", _TooFew(), batch_size=2)
    assert segment(im, "x", _Square(), batch_size=2).masks.sum() == 3 * 9  # valid input still works


def test_fit_segmenter_and_backgrounds_refuse_bad_input():
    scfg = {"epochs": 1, "lr": 1e-3, "weight_decay": 0, "batch_size": 0, "dice_weight": 1, "seed": 0}
    im, m = np.zeros((4, 8, 8, 3), np.uint8), np.zeros((4, 8, 8), bool)
    with pytest.raises(ValueError, match="^segment.batch_size must be >= 1.*got 0"):
        fit_segmenter(TinyUNet([8, 16]), im, m, im, m, scfg)
    with pytest.raises(ValueError, match=r"^images must be .*masks N×H×W.*\(3, 8, 8\)"):
        fit_segmenter(TinyUNet([8, 16]), im, m[:3], im, m, {**scfg, "batch_size": 2})
    with pytest.raises(ValueError, match=r"^val_images must be .*val_masks"):
        fit_segmenter(TinyUNet([8, 16]), im, m, im, m[:2], {**scfg, "batch_size": 2})
    with pytest.raises(ValueError, match="n=-1"):
        background_images(-1)


# --- inpaint -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape", "wrong_key", "wrong_dtype"])
def test_inpainting_recomputes_an_unusable_chunk_with_a_warning(tmp_path, damage):
    imgs, masks = _images(10, 32), np.ones((10, 32, 32), bool)
    a = inpaint_resumable(_CountingPipe(), imgs, masks, ["p"] * 10, tmp_path, batch_size=4, chunk=4)
    f = tmp_path / "part_000004.npz"
    if damage == "truncated":
        f.write_bytes(f.read_bytes()[:100])
    elif damage == "wrong_shape":
        np.savez(f, images=np.zeros((4, 16, 16, 3), np.uint8))
    elif damage == "wrong_key":
        np.savez(f, other=np.zeros((4, 32, 32, 3), np.uint8))
    else:
        np.savez(f, images=np.zeros((4, 32, 32, 3), np.float32))
    pipe = _CountingPipe()
    with pytest.warns(CacheWarning, match="part_000004.npz is unusable and is recomputed"):
        b = inpaint_resumable(pipe, imgs, masks, ["p"] * 10, tmp_path, batch_size=4, chunk=4)
    assert pipe.calls == 4 and (a == b).all()
    with np.load(f) as z:  # the chunk was replaced, so the next run reads it
        assert (z["images"] == a[4:8]).all()
    assert not list(tmp_path.glob(".part_*"))  # no temporary file left behind


def test_inpaint_resumable_and_masks_refuse_bad_input(tmp_path):
    imgs, masks, p = _images(10), np.ones((10, 8, 8), bool), ["p"] * 10
    with pytest.raises(ValueError, match=r"masks \(bool N×H×W\) and prompts must match images \(10, 8, 8, 3\): "
                                         r"got masks bool \(9, 8, 8\) and 10 prompts"):
        inpaint_resumable(_CountingPipe(), imgs, masks[:9], p, tmp_path)
    with pytest.raises(ValueError, match="and 9 prompts"):
        inpaint_resumable(_CountingPipe(), imgs, masks, p[:9], tmp_path)
    with pytest.raises(ValueError, match=r"got masks float64 \(10, 8, 8\)"):
        inpaint_resumable(_CountingPipe(), imgs, masks.astype(float), p, tmp_path)
    with pytest.raises(ValueError, match="^images must be uint8"):
        inpaint_resumable(_CountingPipe(), imgs.astype(float), masks, p, tmp_path)
    for kw, got in (({"batch_size": 0}, "25, 0, 256"), ({"chunk": 0}, "25, 64, 0"), ({"steps": 0}, "0, 64, 256")):
        with pytest.raises(ValueError, match=f"steps, batch_size and chunk must be at least 1, got {got}"):
            inpaint_resumable(_CountingPipe(), imgs, masks, p, tmp_path, **kw)
    with pytest.raises(ValueError, match="grow=-1"):
        inpaint_masks(masks, "segment", -1)
    with pytest.raises(ValueError, match=r"shape \(10, 8, 8, 3\)"):
        inpaint_masks(np.ones((10, 8, 8, 3), bool), "box")
    with pytest.raises(ValueError, match=r"^y must be 1-d class indices in \[0, 2\), got int64 \(2,\) in \[0, 2\]"):
        target_classes(np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="^y must be .*float64"):
        target_classes(np.array([0, 1.5]), 2)


# --- retrain -------------------------------------------------------------------------------------------------------

def test_ddb_loss_refuses_mismatches_and_bad_gamma():
    lg, y, gc = torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), torch.tensor([-1, 0, 1, -1])
    with pytest.raises(ValueError, match=r"logits \(4, 2\), y 4, gen_class 3"):
        ddb_loss(lg, y, gc[:3], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"logits \(4, 2\), y 3, gen_class 4"):
        ddb_loss(lg, y[:3], gc, [1.0, 2.0])
    for gamma in ([1.0, float("nan")], [1.0, -2.0], [1.0, 0.0]):
        with pytest.raises(ValueError, match="^gamma must be finite positive"):
            ddb_loss(lg, y, gc, gamma)
    with pytest.raises(ValueError, match="gen_class 1 has no weight: gamma has 1 entries"):
        ddb_loss(lg, y, gc, [1.0])


def test_joined_dataset_and_retrain_refuse_mismatches():
    real = ArrayGroupDataset(_images(3), [0, 1, 0], [0, 1, 0], 2, 2, name="t", split="train")
    gen = _images(2, seed=5)
    with pytest.raises(ValueError, match="images 2, y 1, a 2"):
        JoinedDataset(real, gen, np.array([1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="images 2, y 2, a 1"):
        JoinedDataset(real, gen, np.array([1, 0]), np.array([0]))
    with pytest.raises(ValueError, match=r"^generated y must be 1-d integers in \[0, 2\).*\[1, 2\]"):
        JoinedDataset(real, gen, np.array([1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="^generated a must be .*float64"):
        JoinedDataset(real, gen, np.array([1, 0]), np.array([0, 0.5]))
    cfg = get_config("smoke")
    for gamma in ([6.0], [6.0, float("inf")], [6.0, -1.0]):
        bad = {**cfg, "ddb": {**cfg["ddb"], "retrain": {**cfg["ddb"]["retrain"], "gamma": gamma}}}
        with pytest.raises(ValueError, match="^ddb.retrain.gamma needs one finite positive weight per class"):
            retrain(bad, 0, real, real, gen, np.array([1, 0]), np.array([0, 1]), "/nonexistent-cache")
