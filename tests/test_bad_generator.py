"Generator faults and bad input: stock loading of the shipped folders, model cards, resumable random streams, door checks."
import json
import re
import shutil

import numpy as np
import pytest
import torch

import spurnb.generator as G
from spurnb.config import assets_dir, get_config
from spurnb.generator import build_mini_sd, inpaint, load_generator, model_card, model_fingerprint, text_to_image

SHIPPED = {"mini-sd": "text2img", "mini-sd-inpaint": "inpaint"}
PROMPTS = ["a photo of a seven on water", "a photo of a two"]


def stock_images(pipe, steps: int = 1, **extra) -> np.ndarray:
    "A stock pipeline call with text_to_image's seeds, as uint8."
    gens = [torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]
    r = pipe(PROMPTS, num_inference_steps=steps, guidance_scale=3.0, generator=gens, output_type="np", **extra)
    return (r.images * 255).round().astype(np.uint8)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_folders_load_with_stock_diffusers(name):
    "No dtype, float32 and float16 (CPU too); with no dtype the images are spurnb's (load_generator) exactly."
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    folder = assets_dir() / name
    cls = StableDiffusionPipeline if SHIPPED[name] == "text2img" else StableDiffusionInpaintPipeline
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    masks = np.zeros((2, 32, 32), bool)
    masks[:, 8:20, 10:22] = True
    extra = {} if cls is StableDiffusionPipeline else {
        "image": torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255,
        "mask_image": torch.from_numpy(masks).float()[:, None], "height": 32, "width": 32}
    for kw, dtype in (({}, torch.float32), ({"dtype": torch.float32}, torch.float32),
                      ({"dtype": torch.float16}, torch.float16)):
        pipe = cls.from_pretrained(folder, **kw)
        pipe.set_progress_bar_config(disable=True)
        assert {getattr(pipe, m).dtype for m in ("vae", "text_encoder", "unet")} == {dtype}
        out = stock_images(pipe, **extra)
        assert out.shape == (2, 32, 32, 3)
        if not kw:
            ours = load_generator(folder, SHIPPED[name])
            want = (text_to_image(ours, PROMPTS, steps=1) if cls is StableDiffusionPipeline
                    else inpaint(ours, images, masks, PROMPTS, steps=1))
            if cls is StableDiffusionInpaintPipeline:
                out = G.paste_back(out, images, masks)
            assert np.array_equal(out, want)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_folders_store_float16_with_float32_configs_and_a_checked_card(name):
    from safetensors import safe_open

    folder = assets_dir() / name
    for f in folder.glob("*/*.safetensors"):
        with safe_open(f, "pt") as s:
            for k in s.keys():
                v = s.get_tensor(k)
                assert v.dtype == torch.float16, (f, k)  # half the size; the configs make loaders compute in float32
    assert json.loads((folder / "text_encoder" / "config.json").read_text())["dtype"] == "float32"
    card = (folder / "README.md").read_text()
    assert card == model_card(folder, name)  # the card is what save_generator would write
    assert "  README.md\n" in (folder / "SHA256SUMS").read_text()
    G.verify_folder(folder)


def test_save_generator_writes_float16_weights_float32_configs_and_a_model_card(folder):
    "The conftest folder went through save_generator: float16 weights, a text encoder config saying float32, a README."
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    w = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(v.dtype == torch.float16 for v in w.values())
    assert json.loads((folder / "text_encoder" / "config.json").read_text())["dtype"] == "float32"
    card = (folder / "README.md").read_text()
    assert "tiny teaching model, not Stable Diffusion" in card and "32×32 RGB" in card and "untrained" in card
    assert "  README.md\n" in (folder / "SHA256SUMS").read_text()
    pipe = StableDiffusionPipeline.from_pretrained(folder)  # stock, no dtype
    pipe.set_progress_bar_config(disable=True)
    assert stock_images(pipe).shape == (2, 32, 32, 3)


def test_model_card_says_what_the_model_is():
    t2i = model_card(assets_dir() / "mini-sd", "mini-sd")
    inp = model_card(assets_dir() / "mini-sd-inpaint", "mini-sd-inpaint")
    for card in (t2i, inp):
        assert "tiny teaching model, not Stable Diffusion" in card and "world split of Waterbirds-lite" in card
        assert "`a photo of a {digit} on {place}`" in card and "zero, one, two" in card and "land, water" in card
        assert "32×32 RGB" in card and "at most 16 tokens" in card and "load_generator(" in card
    assert "5000 steps" in t2i and 'StableDiffusionPipeline.from_pretrained("path/to/mini-sd")' in t2i
    assert "9 input channels" in inp and "4000 steps" in inp and "StableDiffusionInpaintPipeline.from_pretrained" in inp
    assert '"inpaint")' in inp


# ------------------------------------------------------------------ resumed training continues the random streams
class Interrupted(Exception):
    pass


def interrupt_after(monkeypatch, at: int) -> None:
    "Make the next training run stop right after writing its checkpoint of step `at`."
    save = G._save_state

    def save_then_stop(folder, modules, optimizer, step, *a, **k):
        save(folder, modules, optimizer, step, *a, **k)
        if step == at:
            monkeypatch.setattr(G, "_save_state", save)
            raise Interrupted

    monkeypatch.setattr(G, "_save_state", save_then_stop)


def smoke_comps() -> dict:
    torch.manual_seed(0)
    return build_mini_sd(get_config("smoke")["generator"])


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resumed_vae_training_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    gcfg = {**get_config("smoke")["generator"], "vae_steps": 3, "ckpt_every": 2, "vae_batch_size": 2}
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    whole = smoke_comps()["vae"]
    h_whole = G.train_vae(whole, images, gcfg, tmp_path / "a")
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        G.train_vae(smoke_comps()["vae"], images, gcfg, tmp_path / "b")
    resumed = smoke_comps()["vae"]
    h_resumed = G.train_vae(resumed, images, gcfg, tmp_path / "b")
    assert h_resumed == h_whole and same_weights(whole.state_dict(), resumed.state_dict())


def test_resumed_denoiser_training_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    gcfg = {**get_config("smoke")["generator"], "unet_steps": 3, "ckpt_every": 2, "batch_size": 2}
    g = torch.Generator().manual_seed(0)
    mean, std = torch.randn(10, 4, 8, 8, generator=g), torch.rand(10, 4, 8, 8, generator=g) * 0.1
    obj = (torch.rand(10, 1, 8, 8, generator=g) > 0.8).float()
    digit, place = np.array([0, 1, 2, 3, 4, 5, 6, 7, -1, -1]), np.array([0, 1] * 5)

    def run(ckpt):
        c = smoke_comps()
        hist, ema = G.train_denoiser(c["unet"], c["text_encoder"], c["tokenizer"], mean, std, obj, digit, place, gcfg,
                                     ckpt)
        return hist, ema, {**c["unet"].state_dict(), **c["text_encoder"].state_dict()}

    whole = run(tmp_path / "a")
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        run(tmp_path / "b")
    resumed = run(tmp_path / "b")
    assert resumed[0] == whole[0] and same_weights(resumed[1], whole[1]) and same_weights(resumed[2], whole[2])


def test_resumed_inpainter_training_matches_an_uninterrupted_run(folder, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    cfg = get_config("smoke")
    dcfg = {**cfg["data"], "lite": {**cfg["data"]["lite"], "n_digits": 60}}  # a world corpus of 24 + 4 images
    gcfg = {**cfg["generator"], "inpaint_steps": 2, "ckpt_every": 1, "batch_size": 2}
    a = G.train_inpainter(folder, dcfg, gcfg, tmp_path / "a")
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupted):
        G.train_inpainter(folder, dcfg, gcfg, tmp_path / "b")
    assert not (tmp_path / "b" / "mini-sd-inpaint").exists()
    b = G.train_inpainter(folder, dcfg, gcfg, tmp_path / "b")
    for f in ("unet.safetensors", "ema.safetensors"):  # the raw float32 weights of the last checkpoint
        assert same_weights(load_file(a.parent / "ckpt-inpaint" / f), load_file(b.parent / "ckpt-inpaint" / f))
    shipped = "unet/diffusion_pytorch_model.safetensors"
    assert same_weights(load_file(a / shipped), load_file(b / shipped))


# ------------------------------------------------------------------ door checks
@pytest.fixture(scope="module")
def pipes(folder):
    return load_generator(folder, "text2img"), load_generator(folder, "text2img-inpaint")


def test_steps_and_batch_size_below_one_are_refused(pipes):
    t2i, inp = pipes
    images = np.zeros((1, 32, 32, 3), np.uint8)
    masks = np.ones((1, 32, 32), bool)
    for bad, key in (({"steps": 0}, "steps"), ({"steps": -3}, "steps"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=f"^{key} must be at least 1") as e:
            text_to_image(t2i, ["a photo of a two"], **bad)
        assert "\n" not in str(e.value)
        with pytest.raises(ValueError, match=f"^{key} must be at least 1"):
            inpaint(inp, images, masks, ["a photo of a two"], **bad)


def test_inpaint_refuses_images_that_are_not_uint8(pipes):
    _, inp = pipes
    masks = np.ones((2, 32, 32), bool)
    for bad in (np.random.default_rng(0).random((2, 32, 32, 3)),  # floats in [0, 1]
                np.zeros((2, 32, 32), np.uint8), np.zeros((2, 32, 32, 4), np.uint8), [[0]]):
        with pytest.raises(ValueError, match="images must be uint8 N×H×W×3 with values 0-255, got") as e:
            inpaint(inp, bad, masks, ["a photo of a two"] * 2, steps=1)
        assert "\n" not in str(e.value)


def test_wrong_kind_of_folder_is_refused_before_loading(folder, monkeypatch):
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    def no_loading(*a, **k):
        raise AssertionError("loaded before checking the UNet")

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", no_loading)
    monkeypatch.setattr(StableDiffusionInpaintPipeline, "from_pretrained", no_loading)
    with pytest.raises(ValueError, match=re.escape(str(folder)) + r".*in_channels=4.*kind='inpaint' needs 9"):
        load_generator(folder, "inpaint")
    shipped = assets_dir() / "mini-sd-inpaint"
    for kind in ("text2img", "text2img-inpaint"):
        with pytest.raises(ValueError, match=re.escape(str(shipped)) + f".*in_channels=9.*kind='{kind}' needs 4"):
            load_generator(shipped, kind)
    with pytest.raises(ValueError, match="kind must be one of text2img, inpaint, text2img-inpaint, got 'img2img'"):
        load_generator(folder, "img2img")


def test_wrong_kind_from_the_hub_cache_or_found_after_loading(folder, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    snap = tmp_path / "hub" / "models--someone--tiny-sd" / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ValueError, match=r"someone/tiny-sd has a UNet with in_channels=4.*kind='inpaint' needs 9"):
        load_generator("someone/tiny-sd", "inpaint")
    monkeypatch.setattr(G, "_unet_in_channels", lambda name: None)  # no config to read first: checked once loaded
    with pytest.raises(ValueError, match=re.escape(str(folder)) + r".*in_channels=4.*kind='inpaint' needs 9"):
        load_generator(folder, "inpaint")


# ------------------------------------------------------------------ a spurnb folder without SHA256SUMS
def test_missing_manifest_of_a_spurnb_folder_is_an_error(folder, tmp_path, monkeypatch):
    trained = shutil.copytree(folder, tmp_path / "trained")  # has training.json: written by save_generator
    (trained / "SHA256SUMS").unlink()
    for call in (lambda: load_generator(trained), lambda: model_fingerprint(trained)):
        with pytest.raises(FileNotFoundError, match=re.escape(str(trained / "SHA256SUMS")) + " not found") as e:
            call()
        assert "\n" not in str(e.value)
    shipped = shutil.copytree(folder, tmp_path / "assets" / "mini-x")  # a folder shipped in spurnb/assets
    (shipped / "SHA256SUMS").unlink()
    (shipped / "training.json").unlink()
    monkeypatch.setattr(G, "assets_dir", lambda: tmp_path / "assets")
    with pytest.raises(FileNotFoundError, match=re.escape(str(shipped / "SHA256SUMS")) + " not found"):
        load_generator(shipped)
    monkeypatch.undo()
    user = shutil.copytree(shipped, tmp_path / "user")  # any other diffusers folder loads without one
    assert load_generator(user).unet.config.in_channels == 4 and model_fingerprint(user) == str(user)
