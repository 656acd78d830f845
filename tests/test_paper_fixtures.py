"""Tests of tests/paper_fixtures.py: the real-format dataset folders load through `spurnb.data.load`, and spurnb's
own loaders (generator, inpainting, textual inversion, LangSAM, ResNet-50) work offline on the tiny models under the
real ids.

The model checks run in one subprocess (`python tests/test_paper_fixtures.py RESULT.json`) because HF_HOME,
HF_HUB_OFFLINE and TORCH_HOME must be set before huggingface_hub is imported.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import paper_fixtures as PF

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="session")
def paper_env(tmp_path_factory):
    "Everything built once into a temporary folder; the environment dict of `build_all` plus the build time."
    t0 = time.perf_counter()
    env = PF.build_all(tmp_path_factory.mktemp("paper"))
    return {**env, "build_s": time.perf_counter() - t0}


@pytest.fixture(scope="session")
def checks(paper_env, tmp_path_factory):
    "Results of `run_checks`, run in a subprocess whose environment points at the build."
    out = tmp_path_factory.mktemp("checks") / "checks.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_CACHE", "DIFFUSERS_CACHE", "TORCH_HUB")}
    env.update({k: v for k, v in paper_env.items() if k != "build_s"})
    r = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and out.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text())


def ok(result: dict) -> dict:
    "Fail with the recorded traceback when a check raised; else return its record."
    assert "error" not in result, result["error"]
    return result


# --------------------------------------------------------------------------------------- build and datasets
def test_build_time_and_sizes(paper_env):
    "The build is quick and lays out the hub and torchvision caches with tiny models and a full-size ResNet-50."
    assert paper_env["build_s"] < 60  # well under 30 s on 2 idle cores; slack for a loaded machine
    hub = Path(paper_env["HF_HUB_CACHE"])
    assert Path(paper_env["HF_HOME"]) / "hub" == hub and paper_env["HF_HUB_OFFLINE"] == "1"
    for repo in (PF.SD_BASE, PF.SD_INPAINT, *PF.DINO_IDS, *PF.SAM_IDS):
        folder = hub / f"models--{repo.replace('/', '--')}"
        commit = (folder / "refs" / "main").read_text()
        assert len(commit) == 40 and int(commit, 16) >= 0 and commit == PF.commit_of(repo)
        assert [p.name for p in (folder / "snapshots").iterdir()] == [commit]
        assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 20e6  # tiny
    ckpt = Path(paper_env["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert 90e6 < ckpt.stat().st_size < 110e6


@pytest.mark.parametrize("name", ["waterbirds", "celeba", "metashift"])
def test_datasets_load(paper_env, name):
    "Every split of each dataset loads through `spurnb.data.load` with the expected groups."
    from spurnb.data import load

    root = paper_env[f"{name.upper()}_ROOT"]
    for split in SPLITS:
        ds = load(name, split, root)
        counts = {(y, a): int(((ds.y == y) & (ds.a == a)).sum()) for y in (0, 1) for a in (0, 1)}
        expected = PF.group_counts(name, split)
        if name == "metashift" and split != "train":  # val is a 15% draw of each class of test/, test the rest
            assert all(counts[g] > 0 for g in expected) and sum(counts.values()) < sum(expected.values())
        else:
            assert {g: c for g, c in counts.items() if c} == expected
        x = ds.load_image(0)
        assert tuple(x.shape) == (3, 224, 224) and 0 <= float(x.min()) <= float(x.max()) <= 1
    if name == "metashift":
        val, test = load(name, "val", root), load(name, "test", root)
        assert len(val) + len(test) == sum(PF.group_counts(name, "test").values())


def test_dataset_formats(paper_env):
    "The files follow the published formats: metadata.csv, the CelebA txt files, MetaShift folders, JPEG sizes."
    import pandas as pd

    wb = Path(paper_env["WATERBIRDS_ROOT"])
    assert wb.name == "waterbird_complete95_forest2water2"
    meta = pd.read_csv(wb / "metadata.csv")
    assert list(meta.columns) == ["img_id", "img_filename", "y", "split", "place", "place_filename"]
    assert meta["img_id"].tolist() == list(range(1, len(meta) + 1)) and meta["img_filename"].is_unique
    first = meta.iloc[0]
    assert first["img_filename"].startswith("001.Black_footed_Albatross/Black_Footed_Albatross_0001_")
    sizes = {Image.open(wb / f).size for f in meta["img_filename"]}
    assert len(sizes) > 2 and sizes <= set(PF.PHOTO_SIZES)
    with Image.open(wb / first["img_filename"]) as im:
        assert im.format == "JPEG" and (wb / first["img_filename"]).stat().st_size > 10_000

    ce = Path(paper_env["CELEBA_ROOT"])
    lines = (ce / "list_attr_celeba.txt").read_text().splitlines()
    assert int(lines[0]) == len(lines) - 2 and lines[1].split() == list(PF.CELEBA_ATTRIBUTES)
    assert len(PF.CELEBA_ATTRIBUTES) == 40 and lines[2].startswith("000001.jpg ")
    assert all(len(line.split()) == 41 for line in lines[2:])
    parts = [int(line.split()[1]) for line in (ce / "list_eval_partition.txt").read_text().splitlines()]
    assert parts == sorted(parts) and set(parts) == {0, 1, 2}
    with Image.open(ce / "img_align_celeba" / "000001.jpg") as im:
        assert im.size == (178, 218) and im.format == "JPEG"

    ms = Path(paper_env["METASHIFT_ROOT"])
    from spurnb.realdata import METASHIFT_CONTEXTS

    for part, classes in METASHIFT_CONTEXTS.items():
        for c, contexts in classes.items():
            for ctx in contexts:
                files = list((ms / part / c / f"{c}({ctx})").glob("*.jpg"))
                assert files and all(f.stem.isdigit() for f in files)


def test_build_is_deterministic(tmp_path):
    "Two builds write byte-identical datasets and hub snapshots."
    def digest(root):
        "SHA-256 of every file under `root`, by relative path."
        return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in sorted(root.rglob("*")) if f.is_file()}

    for d in ("a", "b", "a"):  # the second build of a/ replaces the first
        PF.build_datasets(tmp_path / d / "data", n=1)
        with PF._quiet_saves():
            PF.build_sd(tmp_path / d / "hf")
            PF.build_grounding_dino(tmp_path / d / "hf")
            PF.build_sam(tmp_path / d / "hf")
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert a == b and len(a) > 40


def test_build_keeps_foreign_folders(tmp_path):
    "A dataset folder or hub repo that the module did not make is never deleted."
    (tmp_path / "data" / "celeba").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not made by paper_fixtures"):
        PF.build_celeba(tmp_path / "data", n=1)
    assert (tmp_path / "data" / "celeba").is_dir()
    real = tmp_path / "hf" / "hub" / f"models--{PF.SAM.replace('/', '--')}"
    (real / "refs").mkdir(parents=True)
    (real / "refs" / "main").write_text("0" * 40)
    with pytest.raises(FileExistsError, match="did not make"):
        PF.hub_snapshot(tmp_path / "hf", PF.SAM)
    assert (real / "refs" / "main").read_text() == "0" * 40


@pytest.mark.parametrize("name", ["waterbirds", "celeba", "metashift"])
def test_paper_config_is_covered(name):
    "Every model id the paper profile names is built, and its init word and segment prompt are whole words."
    from spurnb.config import get_config

    cfg = get_config("paper", {"data.name": name})
    built = {PF.SD_BASE, PF.SD_INPAINT, *PF.DINO_IDS, *PF.SAM_IDS}
    ids = [cfg["generator"]["model"], cfg["generator"]["inpaint_model"], cfg["segment"]["detector"],
           cfg["segment"]["sam"]]
    assert set(ids) <= built, set(ids) - built
    assert cfg["erm"]["arch"] == "resnet50" and cfg["erm"]["weights"] == "imagenet"
    tok = PF.clip_tokenizer()
    assert len(tok(cfg["ddb"]["inversion"]["init_word"], add_special_tokens=False).input_ids) == 1
    vocab = set(PF.bert_vocab())
    assert all(w in vocab for w in cfg["segment"]["prompt"].lower().rstrip(".").split())


def test_clip_tokenizer():
    "The tiny CLIP tokenizer has single-token words, byte fallback for anything else, and takes new tokens."
    tok = PF.clip_tokenizer()
    assert tok.model_max_length == 77 and tok.pad_token == "!"
    for w in PF.CLIP_WORDS:
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    for prompt in ("a photo of a <c0> bird", "animal", "hair", "person", "Zebra-crossing #42 ünïcode!"):
        ids = tok(prompt).input_ids
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids[1:-1]
    n = len(tok)
    assert tok.add_tokens(["<c0>", "<c1>"]) == 2 and len(tok) == n + 2
    assert tok("a photo of a <c0> bird", add_special_tokens=False).input_ids[4] == n


# --------------------------------------------------------------------------------------- spurnb loaders, offline
def test_hub_cache_resolves(checks):
    "huggingface_hub finds every real id's snapshot offline."
    r = ok(checks["hub"])
    assert all(r["snapshots"].values())


def test_text_to_image_generator(checks):
    "load_generator gives an SD2-base-like pipeline that draws a 512 px image."
    r = ok(checks["text2img"])
    assert r["cls"] == "StableDiffusionPipeline" and r["scheduler"] == "PNDMScheduler"
    assert r["text_dtype"] == "torch.float32" and r["max_length"] == 77
    assert r["latent_shape"] == [1, 4, 64, 64] and r["image_shape"] == [1, 512, 512, 3]


def test_inpaint_generator(checks):
    "load_generator gives a 9-channel inpainting pipeline sharing the base's text side; inpaint keeps unmasked pixels."
    r = ok(checks["inpaint"])
    assert r["cls"] == "StableDiffusionInpaintPipeline" and r["in_channels"] == 9
    assert r["same_text_encoder"] and r["same_tokenizer"]
    assert r["shape"] == [2, 512, 512, 3] and r["dtype"] == "uint8" and r["outside_kept"] and r["inside_changed"]
    assert r["seconds"] < 30


def test_textual_inversion(checks):
    "learn_tokens runs on the base and its words load into the inpainting pipeline."
    r = ok(checks["inversion"])
    assert r["tokens"] == ["<c0>", "<c1>"] and r["width"] == PF.TEXT_WIDTH
    assert len(r["history"]) == 2 and np.isfinite(r["history"]).all()
    assert r["inpaint_token_id"] == r["inpaint_vocab"] - 2 and r["inpaint_embedding_matches"]
    assert r["prompt_embeds_shape"] == [1, 77, PF.TEXT_WIDTH]


def test_langsam(checks):
    "load_langsam loads both models; boxes are found and SAM masks come back at 512 px."
    r = ok(checks["langsam"])
    assert r["mask_shape"] == [2, 512, 512] and r["detected"] == [True, True] and r["mask_share"][0] > 0
    assert r["paper_thresholds_mask_shape"] == [2, 512, 512]


def test_resnet50_imagenet(checks):
    "make_model('resnet50', weights='imagenet') loads the cached checkpoint."
    r = ok(checks["resnet50"])
    assert r["fc_out"] == 2 and r["body_matches_file"]


# --------------------------------------------------------------------------------------- the subprocess
def _timed(results: dict, name: str, fn) -> None:
    "Run `fn()` into `results[name]` with its wall time; a raised error is recorded as its traceback."
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception:
        results[name] = {"error": traceback.format_exc()}
    results[name]["wall_s"] = round(time.perf_counter() - t0, 2)


def run_checks(out: Path) -> dict:
    "Exercise spurnb's loaders on the build the environment points at; write the results as JSON to `out`."
    import tempfile

    import torch
    from huggingface_hub import snapshot_download

    from spurnb.config import get_config
    from spurnb.data import load
    from spurnb.generator import inpaint, load_generator, text_to_image
    from spurnb.inversion import images_of, learn_tokens, load_tokens, save_tokens

    torch.manual_seed(0)
    train = load("waterbirds", "train", os.environ["WATERBIRDS_ROOT"])
    imgs = images_of(train, np.array([0, len(train) - 1]), 512)  # two real-format JPEGs at the generator's size
    masks = np.zeros((2, 512, 512), bool)
    masks[:, 128:384, 96:416] = True
    res: dict = {}

    def hub():
        "Each real id resolves to its fixture snapshot through huggingface_hub, offline."
        return {"snapshots": {r: Path(snapshot_download(r, local_files_only=True)).name == PF.commit_of(r)
                              for r in (PF.SD_BASE, PF.SD_INPAINT, *PF.DINO_IDS, *PF.SAM_IDS)}}

    def text2img():
        "SD2-base loads as a text-to-image pipeline; 512 px maps to 64×64 latents; a 2-step image comes out."
        pipe = load_generator(PF.SD_BASE, "text2img")
        with torch.no_grad():
            lat = pipe.vae.encode(torch.zeros(1, 3, 512, 512)).latent_dist.mean
        t0 = time.perf_counter()
        image = text_to_image(pipe, ["a photo of a bird"], steps=2, guidance=7.5)
        return {"cls": type(pipe).__name__, "scheduler": type(pipe.scheduler).__name__,
                "text_dtype": str(pipe.text_encoder.dtype), "max_length": pipe.tokenizer.model_max_length,
                "latent_shape": list(lat.shape), "image_shape": list(image.shape),
                "seconds": round(time.perf_counter() - t0, 2)}

    def inpainting():
        "SD2-inpainting loads with a 9-channel UNet and the base's text encoder; 2 images × 2 steps at 512 px."
        base = load_generator(PF.SD_BASE, "text2img")
        pipe = load_generator(PF.SD_INPAINT, "inpaint")
        te = pipe.text_encoder.state_dict()
        same_te = all(torch.equal(v, te[k]) for k, v in base.text_encoder.state_dict().items())
        t0 = time.perf_counter()
        out = inpaint(pipe, imgs, masks, ["a photo of a bird"] * 2, steps=2, guidance=7.5, batch_size=2)
        secs = time.perf_counter() - t0
        return {"cls": type(pipe).__name__, "in_channels": pipe.unet.config.in_channels, "same_text_encoder": same_te,
                "same_tokenizer": base.tokenizer.get_vocab() == pipe.tokenizer.get_vocab(),
                "shape": list(out.shape), "dtype": str(out.dtype),
                "outside_kept": bool((out[~masks] == imgs[~masks]).all()),
                "inside_changed": bool((out[masks] != imgs[masks]).any()), "seconds": round(secs, 2)}

    def inversion():
        "2 steps of textual inversion on the base; the learned words then load into the inpainting pipeline."
        icfg = {**get_config("paper")["ddb"]["inversion"], "steps": 2, "batch_size": 1}
        t0 = time.perf_counter()
        learned, meta = learn_tokens(PF.SD_BASE, {0: imgs[:1], 1: imgs[1:]}, icfg, seed=0)
        secs = time.perf_counter() - t0
        pipe = load_generator(PF.SD_INPAINT, "inpaint")
        with tempfile.TemporaryDirectory() as d:
            load_tokens(pipe, save_tokens(learned, d))
        tid = pipe.tokenizer.convert_tokens_to_ids("<c0>")
        emb = pipe.text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            pe = pipe.encode_prompt("a photo of a <c0> bird", "cpu", 1, False)[0]
        return {"tokens": meta["tokens"], "width": int(learned["<c0>"].shape[-1]), "history": meta["history"],
                "inpaint_token_id": tid, "inpaint_vocab": len(pipe.tokenizer),
                "inpaint_embedding_matches": bool(torch.allclose(emb[tid], learned["<c0>"])),
                "prompt_embeds_shape": list(pe.shape), "seconds": round(secs, 2)}

    def langsam():
        "LangSAM on two 512 px images at thresholds 0/0 (the brief ids) and with the paper config's ids and thresholds."
        from spurnb.segment import load_langsam, segment

        seg = load_langsam(PF.DINO, PF.SAM, box_threshold=0.0, text_threshold=0.0)
        t0 = time.perf_counter()
        r = segment(imgs, "bird", seg)
        secs = time.perf_counter() - t0
        cfg = get_config("paper")["segment"]  # the ids, prompt and thresholds the paper profile uses now
        paper_seg = load_langsam(cfg["detector"], cfg["sam"], box_threshold=cfg["box_threshold"],
                                 text_threshold=cfg["text_threshold"])
        paper = segment(imgs, cfg["prompt"], paper_seg)
        return {"mask_shape": list(r.masks.shape), "detected": r.detected.tolist(), "scores": r.scores.tolist(),
                "boxes": np.nan_to_num(r.boxes, nan=-1).tolist(), "mask_share": r.masks.mean((1, 2)).tolist(),
                "paper_thresholds_mask_shape": list(paper.masks.shape),
                "paper_thresholds_detected": paper.detected.tolist(),
                "seconds": round(secs, 2), "processor": type(seg.detector_processor).__name__,
                "tokenizer": type(seg.detector_processor.tokenizer).__name__}

    def resnet50():
        "erm.make_model loads the fixture checkpoint as IMAGENET1K_V1 weights."
        from spurnb.erm import _imagenet_resnet50_file, make_model

        model = make_model("resnet50", 2, weights="imagenet")
        state = torch.load(_imagenet_resnet50_file(), map_location="cpu", weights_only=True)
        own = model.state_dict()
        return {"fc_out": model.fc.out_features,
                "body_matches_file": all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith("fc."))}

    for name, fn in (("hub", hub), ("text2img", text2img), ("inpaint", inpainting), ("inversion", inversion),
                     ("langsam", langsam), ("resnet50", resnet50)):
        _timed(res, name, fn)
    Path(out).write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    print(json.dumps(run_checks(Path(sys.argv[1])), indent=1, default=str)[:5000])
