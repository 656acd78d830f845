"Segmentation stage: the embedded U-Net at smoke size, IoU and dilation, and LangSAM built from tiny random models."
import numpy as np
import pytest
import torch

import spurnb.segment as S
from spurnb.config import get_config
from spurnb.data import load_split


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    "Tiny convolutions run fastest on one thread, and many times slower on two busy cores; restored afterwards."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- the embedded segmenter -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    "A smoke-size segmenter trained for a few dozen steps, its config and cache folder."
    cfg = get_config("smoke")
    scfg = {**cfg["segment"], "epochs": 20, "negatives": 0.5}
    cache = tmp_path_factory.mktemp("cache")
    return cfg, scfg, cache, S.train_embedded_segmenter(cfg["data"], scfg, cache, "cpu")


def test_embedded_returns_image_sized_bool_masks(embedded):
    cfg, scfg, _, seg = embedded
    test = load_split(cfg["data"], "test")
    r = S.segment(test.images, "digit", seg, batch_size=40)
    assert r.masks.shape == test.masks.shape and r.masks.dtype == bool
    assert r.detected.shape == (len(test),) and r.detected.dtype == bool
    assert (r.masks.any((1, 2)) == r.detected).all()
    assert r.detected.mean() > 0.8 and S.mean_iou(r.masks, test.masks) > 0.5  # it learned something in ~80 steps
    boxed = r.boxes[r.detected]
    assert (boxed[:, 0] < boxed[:, 2]).all() and (boxed[:, 1] < boxed[:, 3]).all()
    big = S.segment(np.repeat(np.repeat(test.images[:3], 2, 1), 2, 2), "seven", seg)  # other sizes are resized
    assert big.masks.shape == (3, 64, 64)
    with pytest.raises(ValueError, match="uint8"):
        S.segment(test.images.astype(np.float32), "digit", seg)


def test_embedded_unknown_prompt_raises(embedded):
    seg = embedded[-1]
    imgs = np.zeros((1, 32, 32, 3), np.uint8)
    for ok in ("digit", "A number.", "seven", "objects"):
        S.segment(imgs, ok, seg)
    with pytest.raises(ValueError, match="digit, number, object") as e:
        S.segment(imgs, "water", seg)
    assert "\n" not in str(e.value)


def test_embedded_background_images_are_not_detected_silently(embedded, capsys):
    seg = embedded[-1]
    bg = S.background_images(16, 32, seed=11)
    capsys.readouterr()
    r = S.segment(bg, "digit", seg)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert r.detected.sum() <= 4  # a net trained for ~100 steps seldom sees a digit in a background
    assert not r.masks[~r.detected].any() and (r.scores[~r.detected] == 0).all() and np.isnan(r.boxes[~r.detected]).all()
    # the same net with a threshold nothing passes, and one everything passes
    none = S.segment(bg, "digit", S.EmbeddedSegmenter(seg.net, threshold=1.0))
    assert capsys.readouterr().out == ""
    assert not none.detected.any() and not none.masks.any() and (none.scores == 0).all() and np.isnan(none.boxes).all()
    every = S.segment(bg, "digit", S.EmbeddedSegmenter(seg.net, threshold=0.0, min_pixels=1))
    assert every.detected.all() and every.masks.all()
    empty = S.segment(bg[:0], "digit", seg)
    assert empty.masks.shape == (0, 32, 32) and len(empty) == 0


def test_embedded_segmenter_is_cached(embedded, monkeypatch):
    cfg, scfg, cache, seg = embedded

    def boom(*a, **k):
        raise AssertionError("a cached segmenter must not be retrained")

    monkeypatch.setattr(S, "fit_segmenter", boom)
    again = S.train_embedded_segmenter(cfg["data"], {**scfg, "threshold": 0.7}, cache, "cpu")  # prediction-time knob
    for k, v in seg.net.state_dict().items():
        assert torch.equal(v, again.net.state_dict()[k])
    assert again.threshold == 0.7 and again.meta["train_s"] == seg.meta["train_s"]
    with pytest.raises(ValueError, match="waterbirds_lite"):
        S.train_embedded_segmenter({**cfg["data"], "name": "waterbirds"}, scfg, cache)


# --- pure functions ---------------------------------------------------------------------------------------------------

def test_mean_iou_hand_computed():
    a, b = np.zeros((3, 4, 4), bool), np.zeros((3, 4, 4), bool)
    a[0, 0, :2] = True  # 2 pixels
    b[0, 0, 1:4] = True  # 3 pixels, 1 shared, union 4 -> 0.25
    a[1, :2, :2] = True  # disjoint from an empty truth -> 0
    # image 2: both empty -> 1
    assert np.allclose(S.iou(a, b), [0.25, 0.0, 1.0])
    assert S.mean_iou(a, b) == pytest.approx(1.25 / 3)
    assert S.mean_iou(a[0], a[0]) == 1.0
    with pytest.raises(ValueError):
        S.mean_iou(a, b[:2])


@pytest.mark.parametrize("p", [0, 1, 3])
def test_dilate_grows_a_pixel_into_a_square(p):
    m = np.zeros((2, 11, 11), bool)
    m[0, 5, 5] = True
    out = S.dilate(m, p)
    assert out.dtype == bool and out.shape == m.shape and out[0].sum() == (2 * p + 1) ** 2
    assert out[0, 5 - p : 6 + p, 5 - p : 6 + p].all() and not out[1].any()
    corner = np.zeros((5, 5), bool)
    corner[0, 0] = True
    assert S.dilate(corner, p).sum() == (p + 1) ** 2  # clipped at the border


# --- LangSAM from tiny random GroundingDINO + SAM ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_langsam(tmp_path_factory):
    "Folders holding a tiny random GroundingDINO and SAM with their processors (as `save_pretrained` writes them)."
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SamConfig, SamImageProcessor,
                              SamMaskDecoderConfig, SamModel, SamProcessor, SamPromptEncoderConfig, SamVisionConfig,
                              SwinConfig)

    root = tmp_path_factory.mktemp("langsam")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", "a", "bird", "digit"]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab=str(root / "vocab.txt"))
    assert tokenizer("bird.")["input_ids"] == [2, 8, 5, 3]
    torch.manual_seed(0)
    swin = SwinConfig(image_size=64, window_size=7, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                      out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=8, max_position_embeddings=16)
    det = GroundingDinoForObjectDetection(GroundingDinoConfig(
        backbone_config=swin, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, num_queries=5,
        num_feature_levels=4, encoder_n_points=2, decoder_n_points=2, max_text_len=16))
    det_proc = GroundingDinoProcessor(GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
                                      tokenizer)
    sam = SamModel(SamConfig(
        vision_config=SamVisionConfig(image_size=32, patch_size=4, hidden_size=16, output_channels=16,
                                      num_hidden_layers=1, num_attention_heads=2, window_size=4, global_attn_indexes=[0],
                                      num_pos_feats=8),
        prompt_encoder_config=SamPromptEncoderConfig(image_size=32, patch_size=4, hidden_size=16, mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=16, mlp_dim=16, num_attention_heads=2,
                                                 iou_head_hidden_dim=16)))
    sam_proc = SamProcessor(SamImageProcessor(size={"longest_edge": 32}, pad_size={"height": 32, "width": 32}))
    for model, proc, name in ((det, det_proc, "dino"), (sam, sam_proc, "sam")):
        model.save_pretrained(root / name)
        proc.save_pretrained(root / name)
    return root / "dino", root / "sam"


def test_langsam_tiny_models(tiny_langsam, capsys):
    dino, sam = tiny_langsam
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)

    never = S.load_langsam(dino, sam, box_threshold=1.01, text_threshold=1.01)
    capsys.readouterr()
    r = S.segment(images, "bird", never)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert r.masks.shape == (2, 40, 48) and r.masks.dtype == bool and r.detected.dtype == bool
    assert not r.detected.any() and not r.masks.any() and np.isnan(r.boxes).all()

    every = S.load_langsam(dino, sam, box_threshold=0.0, text_threshold=0.0, mask_threshold=float("-inf"))
    r = S.segment(images, "Bird", every, batch_size=1)
    assert r.masks.shape == (2, 40, 48) and r.detected.all() and r.masks.all()  # SAM's mask, every logit kept
    from PIL import Image

    dets = every.boxes([Image.fromarray(im) for im in images], "bird.", (40, 48))
    for i, d in enumerate(dets):  # the kept box is GroundingDINO's best, in pixels
        j = int(d["scores"].argmax())
        assert r.scores[i] == pytest.approx(float(d["scores"][j]))
        assert np.allclose(r.boxes[i], d["boxes"][j].clamp(min=0).numpy().clip(max=[48, 40, 48, 40]), atol=1e-4)
    masks0 = S.segment(images, "bird", S.load_langsam(dino, sam, box_threshold=0.0, text_threshold=0.0)).masks
    assert masks0.shape == (2, 40, 48) and masks0.dtype == bool  # SAM logits > 0: a real (random) mask
    assert every.check_prompt(" A Bird ") == "a bird."
    with pytest.raises(ValueError):
        every.check_prompt(" . ")


def test_load_langsam_names_the_missing_model(tiny_langsam, tmp_path):
    dino, sam = tiny_langsam
    with pytest.raises(FileNotFoundError, match="does/not-exist") as e:
        S.load_langsam("does/not-exist", sam)
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="SAM model .*nowhere"):
        S.load_langsam(dino, tmp_path / "nowhere")
