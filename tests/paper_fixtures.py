"""Offline stand-ins for the paper profile's inputs: real-format Waterbirds, CelebA and MetaShift folders of drawn
JPEGs, and tiny randomly initialised models of the real classes in the Hugging Face and torchvision caches under
the real ids.

Use from tests (`from paper_fixtures import build_all`) or from a shell: `python tests/paper_fixtures.py OUT [--n N]`
builds everything into OUT and prints the environment variables that point spurnb at it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# ------------------------------------------------------------------------------------------------ datasets
JPEG_QUALITY = 90
PHOTO_SIZES = ((500, 375), (375, 500), (480, 360), (500, 333), (333, 500), (500, 400))  # (w, h), like CUB / VG photos
CELEBA_SIZE = (178, 218)  # (w, h) of img_align_celeba
WATERBIRDS_FOLDER = "waterbird_complete95_forest2water2"
WATERBIRD_SPECIES = {  # y -> CUB species folders (y = 1: waterbird)
    0: ("004.Groove_billed_Ani", "026.Bronzed_Cowbird", "029.American_Crow", "094.White_breasted_Nuthatch",
        "118.House_Sparrow"),
    1: ("001.Black_footed_Albatross", "002.Laysan_Albatross", "045.Northern_Fulmar", "059.California_Gull",
        "086.Pacific_Loon"),
}
WATERBIRD_PLACES = {0: ("b/bamboo_forest", "f/forest/broadleaf"), 1: ("o/ocean", "l/lake/natural")}  # place -> Places
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young")
METASHIFT_TRAIN = {"cat": ("sofa", "bed"), "dog": ("bench", "bike")}  # same as spurnb.realdata.METASHIFT_CONTEXTS
METASHIFT_TEST = {"cat": ("shelf",), "dog": ("shelf",)}
BACKGROUNDS = {  # context -> (base colour, stripe colour, stripe period in px, stripe angle in degrees)
    "land": ((70, 110, 50), (95, 70, 40), 38, 0), "water": ((40, 90, 150), (150, 190, 215), 22, 86),
    "sofa": ((130, 45, 40), (90, 30, 30), 60, 90), "bed": ((215, 210, 200), (170, 180, 205), 45, 80),
    "bench": ((110, 150, 70), (140, 100, 60), 18, 90), "bike": ((120, 120, 125), (60, 60, 65), 70, 35),
    "shelf": ((150, 110, 70), (70, 50, 30), 55, 0),
}


def group_counts(name: str, split: str, n: int = 6) -> dict[tuple[int, int], int]:
    "Images per (y, a) group that `build_datasets` writes for one split (MetaShift val/test: before the 15% draw)."
    if name == "waterbirds":  # train imbalanced like the real one (95% of each class on its usual place)
        return {(0, 0): 4 * n, (0, 1): n, (1, 0): n, (1, 1): 4 * n} if split == "train" else \
            {g: n for g in ((0, 0), (0, 1), (1, 0), (1, 1))}
    if name == "celeba":  # blond men rarest in train, as in the real data
        return {(0, 0): 3 * n, (0, 1): 3 * n, (1, 0): 2 * n, (1, 1): n} if split == "train" else \
            {g: n for g in ((0, 0), (0, 1), (1, 0), (1, 1))}
    if name == "metashift":  # train: n per context folder; test folder: max(2n, 4) per class
        return {(0, 0): 2 * n, (1, 1): 2 * n} if split == "train" else {(0, 0): max(2 * n, 4), (1, 0): max(2 * n, 4)}
    raise ValueError(f"unknown dataset {name!r}")


def _blotches(rng: np.random.Generator, w: int, h: int, sd: float = 18) -> np.ndarray:
    "Smooth random light/colour variation, float h×w×3 around 0 (mostly brightness, a little hue)."
    low = rng.normal(0, sd, (h // 24 + 2, w // 24 + 2, 1)) + rng.normal(0, sd / 3, (h // 24 + 2, w // 24 + 2, 3))
    up = Image.fromarray(np.clip(low + 128, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    return np.asarray(up, np.float32) - 128


def _background(rng: np.random.Generator, w: int, h: int, context: str) -> Image.Image:
    "A textured background: blotchy noise around the context's colour plus soft stripes."
    base, stripe, period, angle = BACKGROUNDS[context]
    blotch = _blotches(rng, w, h)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.deg2rad(angle + rng.uniform(-8, 8))
    phase = (xx * np.cos(t) + yy * np.sin(t)) * 2 * np.pi / (period * rng.uniform(0.8, 1.25)) + rng.uniform(0, 6.3)
    s = (0.5 + 0.5 * np.sin(phase + 0.6 * np.sin(yy / 31.0)))[..., None] ** 2
    img = (1 - s) * np.array(base, np.float32) + s * np.array(stripe, np.float32) + blotch
    img += rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _jitter(rng: np.random.Generator, colour: tuple, amount: int = 25) -> tuple:
    "`colour` with each channel moved by up to `amount`."
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _draw_bird(rng: np.random.Generator, img: Image.Image, waterbird: bool) -> None:
    "Draw a bird (body, wing, head, beak): white/grey/black seabird colours or warm landbird colours."
    w, h = img.size
    d = ImageDraw.Draw(img)
    palette = [(235, 235, 230), (120, 120, 125), (35, 35, 40)] if waterbird else [(200, 160, 40), (150, 60, 30),
                                                                                (90, 60, 35)]
    body, wing = _jitter(rng, palette[rng.integers(3)]), _jitter(rng, palette[rng.integers(3)])
    rx, ry = rng.uniform(0.16, 0.24) * w, rng.uniform(0.11, 0.16) * h
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.45, 0.65) * h
    side = 1 if rng.random() < 0.5 else -1
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=body)
    d.ellipse([cx - 0.7 * rx, cy - 0.5 * ry, cx + 0.5 * rx, cy + 0.6 * ry], fill=wing)
    hr = 0.45 * ry
    hx, hy = cx + side * 0.95 * rx, cy - 0.9 * ry
    d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=body)
    ex, ey = hx + side * 0.3 * hr, hy - 0.3 * hr
    d.ellipse([ex - 3, ey - 3, ex + 3, ey + 3], fill=(10, 10, 10))
    beak = (220, 150, 40) if waterbird else (60, 50, 40)
    d.polygon([(hx + side * 0.8 * hr, hy - 0.25 * hr), (hx + side * 0.8 * hr, hy + 0.25 * hr),
               (hx + side * (hr + rng.uniform(0.5, 1.2) * hr), hy)], fill=beak)


def _draw_face(rng: np.random.Generator, img: Image.Image, blond: bool, male: bool) -> None:
    "Draw an aligned face: hair (blond or dark; short for men), skin, eyes, mouth and for some men a beard shadow."
    w, h = img.size
    d = ImageDraw.Draw(img)
    hair = _jitter(rng, (225, 195, 120) if blond else [(40, 30, 25), (95, 60, 35), (20, 20, 20)][rng.integers(3)], 15)
    skin = _jitter(rng, [(235, 200, 175), (200, 150, 115), (140, 95, 70)][rng.integers(3)], 12)
    cx, cy = w / 2 + rng.uniform(-4, 4), h * 0.55 + rng.uniform(-4, 4)
    fw, fh = w * rng.uniform(0.27, 0.32), h * rng.uniform(0.30, 0.34)
    if male:
        d.ellipse([cx - 1.08 * fw, cy - 1.25 * fh, cx + 1.08 * fw, cy + 0.1 * fh], fill=hair)
    else:
        d.rectangle([cx - 1.25 * fw, cy - 0.6 * fh, cx + 1.25 * fw, h], fill=hair)
        d.ellipse([cx - 1.25 * fw, cy - 1.35 * fh, cx + 1.25 * fw, cy + 0.2 * fh], fill=hair)
    d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=skin)
    if male and rng.random() < 0.6:
        shadow = tuple(int(c * 0.75) for c in skin)
        d.chord([cx - fw, cy - 0.2 * fh, cx + fw, cy + fh], 0, 180, fill=shadow)
    for ex in (cx - 0.4 * fw, cx + 0.4 * fw):
        d.ellipse([ex - 7, cy - 0.25 * fh - 4, ex + 7, cy - 0.25 * fh + 4], fill=(250, 250, 250))
        d.ellipse([ex - 3, cy - 0.25 * fh - 3, ex + 3, cy - 0.25 * fh + 3], fill=(50, 35, 25))
    lips = (170, 70, 70) if not male else tuple(int(c * 0.7) for c in skin)
    d.chord([cx - 0.35 * fw, cy + 0.35 * fh, cx + 0.35 * fw, cy + 0.6 * fh], 0, 180, fill=lips)


def _draw_pet(rng: np.random.Generator, img: Image.Image, dog: bool) -> None:
    "Draw a cat (pointed ears) or a dog (long snout, hanging ears) in a random fur colour."
    w, h = img.size
    d = ImageDraw.Draw(img)
    furs = [(210, 130, 50), (130, 130, 130), (40, 35, 30), (230, 225, 215), (150, 100, 60)]
    fur = _jitter(rng, furs[rng.integers(len(furs))])
    dark = tuple(int(c * 0.6) for c in fur)
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.5, 0.7) * h
    rx, ry = rng.uniform(0.18, 0.26) * w, rng.uniform(0.12, 0.17) * h
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fur)
    hr = 0.6 * ry
    hx, hy = cx + 0.8 * rx, cy - 1.0 * ry
    d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=fur)
    if dog:
        d.ellipse([hx, hy - 0.2 * hr, hx + 1.6 * hr, hy + 0.5 * hr], fill=fur)
        for ex in (hx - 0.9 * hr, hx + 0.5 * hr):
            d.ellipse([ex, hy - 0.6 * hr, ex + 0.45 * hr, hy + 0.9 * hr], fill=dark)
    else:
        for ex in (hx - 0.7 * hr, hx + 0.25 * hr):
            d.polygon([(ex, hy - 0.5 * hr), (ex + 0.45 * hr, hy - 0.5 * hr), (ex + 0.2 * hr, hy - 1.4 * hr)], fill=fur)
    d.ellipse([hx + 0.1 * hr, hy - 0.3 * hr, hx + 0.3 * hr, hy - 0.1 * hr], fill=(15, 15, 15))
    d.rectangle([cx + 0.8 * rx - 1.5 * hr, cy + 0.4 * ry, cx + 0.8 * rx - 1.2 * hr, cy + 1.5 * ry], fill=fur)
    d.rectangle([cx - 0.8 * rx, cy + 0.4 * ry, cx - 0.8 * rx + 0.3 * hr, cy + 1.5 * ry], fill=fur)


MARKER = ".spurnb-fixture"  # written into every dataset folder this module makes


def _fresh_folder(folder: Path) -> Path:
    "Empty `folder` for a rebuild (made here before: it holds `MARKER`); refuse to delete anything else."
    if folder.exists():
        if not (folder / MARKER).is_file():
            raise FileExistsError(f"{folder} exists and was not made by paper_fixtures; not deleting it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by tests/paper_fixtures.py: drawn images, not the real dataset\n")
    return folder


def _save_jpeg(img: Image.Image, path: Path) -> None:
    "Soften `img` slightly (as a photo) and save it as a quality-90 JPEG at `path`, creating folders."
    path.parent.mkdir(parents=True, exist_ok=True)
    img.filter(ImageFilter.GaussianBlur(0.8)).save(path, format="JPEG", quality=JPEG_QUALITY)


def _title(folder: str) -> str:
    "CUB file stem of a species folder: `001.Black_footed_Albatross` -> `Black_Footed_Albatross`."
    return "_".join(p[:1].upper() + p[1:] for p in folder.split(".", 1)[1].split("_"))


def build_waterbirds(root: Path, n: int = 6, seed: int = 0) -> Path:
    "Waterbirds in its published layout (metadata.csv + CUB species folders) under `root`; returns the dataset folder."
    import pandas as pd

    folder = _fresh_folder(Path(root) / WATERBIRDS_FOLDER)
    rng = np.random.default_rng([seed, 101])
    items = [(s, y, a) for s, split in enumerate(("train", "val", "test"))
             for (y, a), k in group_counts("waterbirds", split, n).items() for _ in range(k)]
    items = [items[i] for i in rng.permutation(len(items))]  # real img_ids mix splits and groups
    per_species: dict[str, int] = {}
    rows = []
    for s, y, a in items:
        species = WATERBIRD_SPECIES[y][rng.integers(len(WATERBIRD_SPECIES[y]))]
        per_species[species] = per_species.get(species, 0) + 1
        rel = f"{species}/{_title(species)}_{per_species[species]:04d}_{rng.integers(100000, 800000)}.jpg"
        place = WATERBIRD_PLACES[a][rng.integers(2)]
        rows.append(dict(img_filename=rel, y=y, split=s, place=a,
                         place_filename=f"/{place}/{rng.integers(1, 5000):08d}.jpg"))
        w, h = PHOTO_SIZES[rng.integers(len(PHOTO_SIZES))]
        img = _background(rng, w, h, ("land", "water")[a])
        _draw_bird(rng, img, bool(y))
        _save_jpeg(img, folder / rel)
    meta = pd.DataFrame(rows).sort_values("img_filename", kind="stable").reset_index(drop=True)
    meta.insert(0, "img_id", np.arange(1, len(meta) + 1))
    meta.to_csv(folder / "metadata.csv", index=False)
    return folder


def build_celeba(root: Path, n: int = 6, seed: int = 0) -> Path:
    "CelebA: official list_attr_celeba.txt and list_eval_partition.txt, 178×218 aligned JPEGs; returns its folder."
    folder = _fresh_folder(Path(root) / "celeba")
    rng = np.random.default_rng([seed, 102])
    col = {name: i for i, name in enumerate(CELEBA_ATTRIBUTES)}
    lines, parts = [], []
    for s, split in enumerate(("train", "val", "test")):  # official ids: train first, then val, then test
        items = [g for g, k in group_counts("celeba", split, n).items() for _ in range(k)]
        for y, a in (items[i] for i in rng.permutation(len(items))):
            name = f"{len(lines) + 1:06d}.jpg"
            attrs = np.where(rng.random(len(CELEBA_ATTRIBUTES)) < 0.3, 1, -1)
            attrs[col["Blond_Hair"]], attrs[col["Male"]] = 2 * y - 1, 2 * a - 1
            if y:
                attrs[[col["Black_Hair"], col["Brown_Hair"], col["Gray_Hair"]]] = -1
            if not a:
                attrs[[col["Goatee"], col["Mustache"], col["5_o_Clock_Shadow"], col["Sideburns"]]] = -1
                attrs[col["No_Beard"]] = 1
            lines.append(name + "".join(f" {v:2d}" for v in attrs))
            parts.append(f"{name} {s}")
            wall = np.array(_jitter(rng, (128, 128, 128), 100), np.float32) + _blotches(rng, *CELEBA_SIZE, 10)
            img = Image.fromarray(np.clip(wall, 0, 255).astype(np.uint8))
            _draw_face(rng, img, bool(y), bool(a))
            _save_jpeg(img, folder / "img_align_celeba" / name)
    (folder / "list_attr_celeba.txt").write_text(
        "\n".join([str(len(lines)), " ".join(CELEBA_ATTRIBUTES) + " ", *lines]) + "\n")
    (folder / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return folder


def build_metashift(root: Path, n: int = 6, seed: int = 0) -> Path:
    "MetaShift's MetaDatasetCatDog (train/ and test/ class/context folders of Visual Genome-named JPEGs); returns it."
    folder = _fresh_folder(Path(root) / "metashift") / "MetaDatasetCatDog"
    rng = np.random.default_rng([seed, 103])
    ids = iter(rng.choice(np.arange(2300000, 2420000), 10000, replace=False))
    for part, classes, per in (("train", METASHIFT_TRAIN, n), ("test", METASHIFT_TEST, max(2 * n, 4))):
        for c, contexts in classes.items():
            for ctx in contexts:
                for _ in range(per):
                    w, h = PHOTO_SIZES[rng.integers(len(PHOTO_SIZES))]
                    img = _background(rng, w, h, ctx)
                    _draw_pet(rng, img, c == "dog")
                    _save_jpeg(img, folder / part / c / f"{c}({ctx})" / f"{next(ids)}.jpg")
    return folder


def build_datasets(root: Path, n: int = 6) -> dict[str, Path]:
    "Write the three datasets under `root` (`n` images per group and split, see `group_counts`); return each data.root."
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    root = Path(root)
    return {"waterbirds": build_waterbirds(root, n), "celeba": build_celeba(root, n),
            "metashift": build_metashift(root, n)}


# ------------------------------------------------------------------------------------------------ models
SD_BASE = "stabilityai/stable-diffusion-2-base"
SD_INPAINT = "stabilityai/stable-diffusion-2-inpainting"
DINO = "IDEA-Research/grounding-dino-tiny"
SAM = "facebook/sam-vit-base"
DINO_IDS = (DINO, "IDEA-Research/grounding-dino-base")  # every GroundingDINO id a paper config may name
SAM_IDS = (SAM, "facebook/sam-vit-large", "facebook/sam-vit-huge")  # every SAM id a paper config may name
TEXT_WIDTH = 32  # tiny stand-in for OpenCLIP-H's 1024
CLIP_WORDS = (  # single tokens of the tiny CLIP tokenizer (init words, template words, group words)
    "a", "an", "the", "of", "on", "in", "with", "and", "my", "one", "photo", "rendering", "cropped", "close", "up",
    "clean", "dirty", "dark", "bright", "good", "cool", "bird", "birds", "animal", "pet", "cat", "dog", "hair",
    "blond", "blonde", "person", "people", "man", "woman", "face", "celebrity", "land", "water", "forest", "ocean",
    "lake", "bamboo", "sofa", "bed", "bench", "bike", "shelf", "indoors", "outdoors", "background", "object", "digit")
BERT_WORDS = ("a", "an", "the", "of", "on", "in", "photo", "bird", "birds", "animal", "animals", "cat", "dog", "hair",
              "person", "people", "man", "woman", "face", "water", "land", "object", "digit")


def commit_of(repo_id: str) -> str:
    "The fixed 40-hex commit under which `repo_id`'s fixture snapshot is stored."
    return hashlib.sha1(f"spurnb paper fixture {repo_id}".encode()).hexdigest()


def hub_snapshot(hf_home: Path, repo_id: str) -> Path:
    "An empty snapshot folder for `repo_id` in the hub cache under `hf_home` (refs/main names its commit)."
    repo = Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = commit_of(repo_id)
    if repo.exists():
        ref = repo / "refs" / "main"
        if not (ref.is_file() and ref.read_text() == commit):
            raise FileExistsError(f"{repo} holds a download that paper_fixtures did not make; not deleting it")
        shutil.rmtree(repo)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)  # no newline: huggingface_hub reads the file verbatim
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    return snap


def clip_tokenizer():
    "spurnb's byte-level `build_tokenizer` at 77 tokens with SD2's '!' padding; each of `CLIP_WORDS` is one token."
    from spurnb.generator import GRAMMAR_WORDS, build_tokenizer

    words = tuple(dict.fromkeys(CLIP_WORDS + GRAMMAR_WORDS))
    for _ in range(50):  # BPE merges of one word can split another: move the split words first until none is
        tok = build_tokenizer(words, max_length=77)
        split = [w for w in words if len(tok(w, add_special_tokens=False).input_ids) != 1]
        if not split:
            tok.pad_token = "!"
            return tok
        words = tuple(split) + tuple(w for w in words if w not in split)
    raise RuntimeError(f"could not make {split} single tokens with build_tokenizer")


def sd_components(seed: int = 0) -> dict:
    "Tiny random SD2-style parts both pipelines share: vae, text_encoder (float32), tokenizer, feature_extractor."
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    tok = clip_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16),
                        layers_per_block=1, norm_num_groups=4, sample_size=512, act_fn="silu", scaling_factor=0.18215)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=TEXT_WIDTH, hidden_act="gelu",
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).float()
    return {"vae": vae.eval(), "text_encoder": text_encoder.eval(), "tokenizer": tok,
            "feature_extractor": CLIPImageProcessor()}


def sd_unet(in_channels: int, seed: int):
    """A tiny random SD2-style UNet (linear projections) on 64×64 latents, cross-attention at 32×32 and 16×16 only:
    SD2's attention over the 4096 positions of 64×64 latents made these runs 7× slower on a CPU and tests no code."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=64, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 2 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 2 + ("UpBlock2D",), cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=2, use_linear_projection=True, norm_num_groups=8, flip_sin_to_cos=True, freq_shift=0).eval()


def sd_scheduler():
    "SD2-base's scheduler: PNDM, scaled-linear betas, epsilon prediction, PRK steps skipped."
    from diffusers import PNDMScheduler

    return PNDMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         prediction_type="epsilon", set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)


def build_sd(hf_home: Path, seed: int = 0) -> dict[str, Path]:
    "Save tiny SD2-base and SD2-inpainting pipelines (same vae, text encoder and tokenizer) into the hub cache."
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    comps = sd_components(seed)
    out = {}
    for repo, cls, channels in ((SD_BASE, StableDiffusionPipeline, 4), (SD_INPAINT, StableDiffusionInpaintPipeline, 9)):
        pipe = cls(**comps, unet=sd_unet(channels, seed + channels), scheduler=sd_scheduler(), safety_checker=None,
                   requires_safety_checker=False)
        snap = hub_snapshot(hf_home, repo)
        pipe.save_pretrained(snap, safe_serialization=True)
        out[repo] = snap
    return out


def bert_vocab() -> list[str]:
    "A small WordPiece vocabulary: BERT's special tokens, punctuation, digits, letters, ## letters and `BERT_WORDS`."
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,?!-'()", *map(str, range(10)), *letters,
            *(f"##{c}" for c in letters), *(w for w in BERT_WORDS if w not in letters)]


def build_grounding_dino(hf_home: Path, seed: int = 0, repo_id: str = DINO) -> Path:
    "Save a tiny random GroundingDinoForObjectDetection and its processor (small BERT vocab) as `repo_id`."
    import torch
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    snap = hub_snapshot(hf_home, repo_id)
    vocab = bert_vocab()
    (snap / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab=str(snap / "vocab.txt"), do_lower_case=True, model_max_length=512)
    swin = SwinConfig(image_size=224, patch_size=4, window_size=7, embed_dim=16, depths=[1, 1, 1, 1],
                      num_heads=[1, 1, 2, 2], out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=512)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(GroundingDinoConfig(
        backbone_config=swin, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=20,
        num_feature_levels=4, encoder_n_points=2, decoder_n_points=2, max_text_len=256)).eval()
    processor = GroundingDinoProcessor(
        GroundingDinoImageProcessor(size={"shortest_edge": 256, "longest_edge": 256}), tokenizer)
    model.save_pretrained(snap)
    processor.save_pretrained(snap)
    return snap


def build_sam(hf_home: Path, seed: int = 0, image_size: int = 256, repo_id: str = SAM) -> Path:
    "Save a tiny random SamModel (`image_size` input, 16-px patches) and a matching SamProcessor as `repo_id`."
    import torch
    from transformers import (SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel, SamProcessor,
                              SamPromptEncoderConfig, SamVisionConfig)

    snap = hub_snapshot(hf_home, repo_id)
    width = 32
    torch.manual_seed(seed)
    model = SamModel(SamConfig(
        vision_config=SamVisionConfig(image_size=image_size, patch_size=16, hidden_size=width, output_channels=width,
                                      num_hidden_layers=2, num_attention_heads=2, window_size=4,
                                      global_attn_indexes=[1], num_pos_feats=width // 2, mlp_dim=2 * width),
        prompt_encoder_config=SamPromptEncoderConfig(image_size=image_size, patch_size=16, hidden_size=width,
                                                     mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=width, mlp_dim=2 * width, num_attention_heads=2,
                                                 iou_head_hidden_dim=width))).eval()
    processor = SamProcessor(SamImageProcessor(
        size={"longest_edge": image_size}, pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": image_size // 4},
        mask_pad_size={"height": image_size // 4, "width": image_size // 4}))
    model.save_pretrained(snap)
    processor.save_pretrained(snap)
    return snap


def build_resnet50(torch_home: Path, seed: int = 0) -> Path:
    "Save a random torchvision ResNet-50 state dict where torchvision keeps IMAGENET1K_V1 under `torch_home`."
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    name = ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]  # resnet50-0676ba61.pth: sha256 prefix in the name
    f = Path(torch_home) / "hub" / "checkpoints" / name
    if f.exists() and hashlib.sha256(f.read_bytes()).hexdigest().startswith(name.rsplit("-", 1)[1].split(".")[0]):
        raise FileExistsError(f"{f} holds the real ImageNet weights; not overwriting them")
    f.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(resnet50(weights=None).state_dict(), f)
    return f


@contextmanager
def _quiet_saves():
    "Hide transformers' 'Writing model shards' progress bars while saving (restoring the setting after)."
    from transformers.utils import logging as tlog

    was = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tlog.enable_progress_bar()


def build_models(hf_home: Path, torch_home: Path) -> dict[str, Path]:
    "Build every tiny model; return {real id: snapshot folder} plus 'resnet50': the checkpoint file."
    with _quiet_saves():
        return {**build_sd(hf_home), **{r: build_grounding_dino(hf_home, repo_id=r) for r in DINO_IDS},
                **{r: build_sam(hf_home, repo_id=r) for r in SAM_IDS}, "resnet50": build_resnet50(torch_home)}


def build_all(out: Path, n: int = 6) -> dict[str, str]:
    "Datasets under out/data, HF cache under out/hf, torch cache under out/torch; return the environment to use them."
    # HF_HUB_CACHE is set too so that a hub cache configured elsewhere cannot shadow HF_HOME
    out = Path(out).resolve()
    roots = build_datasets(out / "data", n)
    build_models(out / "hf", out / "torch")
    return {"HF_HOME": str(out / "hf"), "HF_HUB_CACHE": str(out / "hf" / "hub"), "HF_HUB_OFFLINE": "1",
            "TORCH_HOME": str(out / "torch"),
            **{f"{k.upper()}_ROOT": str(v) for k, v in roots.items()}}


def main(argv: list[str] | None = None) -> dict[str, str]:
    "Command line: build everything into OUT and print `export` lines for the environment."
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to build into")
    p.add_argument("--n", type=int, default=6, help="images per group and split")
    p.add_argument("--json", action="store_true", help="print the environment as JSON")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    env = build_all(args.out, args.n)
    print(json.dumps(env, indent=1) if args.json else "\n".join(f"export {k}={v}" for k, v in env.items()))
    print(f"# built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return env


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # spurnb from the checkout when not installed
    main()
