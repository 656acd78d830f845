"Mini Stable Diffusion: save/load round trip, sha256 check, placeholder tokens, paste-back (tiny random models)."
import numpy as np
import pytest
import torch

from spurnb.generator import build_tokenizer, inpaint, load_generator, text_to_image



def test_round_trip_with_both_pipelines(folder):
    pipe = load_generator(folder, "text2img")
    a = text_to_image(pipe, ["a photo of a seven on water"] * 2, seed=0, steps=2)
    b = text_to_image(load_generator(folder, "text2img"), ["a photo of a seven on water"] * 2, seed=0, steps=2)
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.uint8 and (a == b).all()
    assert type(load_generator(folder, "text2img-inpaint")).__name__ == "StableDiffusionInpaintPipeline"


def test_paste_back_keeps_every_unmasked_pixel(folder):
    pipe = load_generator(folder, "text2img-inpaint")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    masks = np.zeros((3, 32, 32), bool)
    masks[:, 8:20, 10:22] = True
    out = inpaint(pipe, images, masks, ["a photo of a two"] * 3, steps=2)
    assert (out[~masks] == images[~masks]).all() and (out[masks] != images[masks]).any()
    with pytest.raises(ValueError, match="differ in length"):
        inpaint(pipe, images, masks, ["a photo of a two"], steps=2)


def test_corrupted_or_missing_weights_are_refused(folder, tmp_path):
    import shutil

    bad = shutil.copytree(folder, tmp_path / "bad")
    f = bad / "unet" / "diffusion_pytorch_model.safetensors"
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="corrupted"):
        load_generator(bad)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_generator(tmp_path / "nowhere")


def test_placeholder_token_and_textual_inversion(folder):
    tok = build_tokenizer()
    n = len(tok)
    tok.add_tokens("<c0>")
    assert len(tok) == n + 1 and tok.convert_tokens_to_ids("<c0>") == n
    pipe = load_generator(folder, "text2img")
    emb = torch.randn(pipe.text_encoder.config.hidden_size)
    pipe.load_textual_inversion({"<c0>": emb})
    row = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids("<c0>")]
    assert torch.allclose(row, emb)
    assert text_to_image(pipe, ["a photo of a <c0>"], steps=2).shape == (1, 32, 32, 3)


def test_inpainter_fine_tunes_resumes_and_keeps_the_text_encoder(folder, tmp_path):
    from spurnb.config import get_config
    from spurnb.generator import get_inpainter, train_inpainter

    cfg = get_config("smoke")
    gcfg = {**cfg["generator"], "inpaint_steps": 2, "ckpt_every": 1}
    out = train_inpainter(folder, cfg["data"], gcfg, tmp_path / "w")
    pipe = load_generator(out, "inpaint")
    assert pipe.unet.config.in_channels == 9 and (tmp_path / "w" / "ckpt-inpaint" / "state.json").exists()
    base = load_generator(folder, "text2img")
    for a, b in zip(base.text_encoder.state_dict().values(), pipe.text_encoder.state_dict().values()):
        assert torch.equal(a, b)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    masks = np.zeros((2, 32, 32), bool)
    masks[:, 8:20, 10:22] = True
    edited = inpaint(pipe, images, masks, ["a photo of a two"] * 2, steps=2)
    assert (edited[~masks] == images[~masks]).all() and (edited[masks] != images[masks]).any()
    assert train_inpainter(folder, cfg["data"], {**gcfg, "inpaint_steps": 99}, tmp_path / "w") == out  # cached
    assert get_inpainter(cfg["data"], {**gcfg, "inpaint_model": str(folder)}, tmp_path) == str(folder)


def test_model_fingerprint_follows_the_manifest(folder, tmp_path):
    import shutil

    from spurnb.generator import model_fingerprint

    assert model_fingerprint("some/hub-id") == "some/hub-id"
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert model_fingerprint(copy) == model_fingerprint(folder)
    (copy / "SHA256SUMS").write_text((copy / "SHA256SUMS").read_text() + "0  extra\n")
    assert model_fingerprint(copy) != model_fingerprint(folder)


def test_inpainter_with_no_steps_is_refused(folder, tmp_path):
    from spurnb.config import get_config
    from spurnb.generator import train_inpainter

    cfg = get_config("smoke")
    with pytest.raises(ValueError, match="inpaint_steps is 0.*generator.inpaint_model"):
        train_inpainter(folder, cfg["data"], {**cfg["generator"], "inpaint_steps": 0}, tmp_path / "w")
    assert not (tmp_path / "w" / "mini-sd-inpaint").exists()  # nothing untrained was saved
