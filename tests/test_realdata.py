"""Tests of the real-dataset loaders (spurnb.realdata) through the public dispatcher `spurnb.data.load`."""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spurnb.data import load

CELEBA_NAMES = ["5_o_Clock_Shadow", "Blond_Hair", "Male", "Young"]
MS_CONTEXTS = {"train": {"cat": ("sofa", "bed"), "dog": ("bench", "bike")},
               "test": {"cat": ("shelf",), "dog": ("shelf",)}}


# ---------------------------------------------------------------- fixture builders
def png(path, colour=(200, 30, 30), size=(8, 8)):
    "Write a small one-colour image to `path` (format from the suffix), creating folders."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")


def waterbirds_tree(root, n=2):
    "Waterbirds folder: `n` images per (split, y, place) and metadata.csv; returns the metadata."
    rows = []
    for s in range(3):
        for y in range(2):
            for a in range(2):
                for k in range(n):
                    f = f"{y:03d}.Species_{y}/img_{s}_{a}_{k}.jpg"
                    png(Path(root) / f, (255 * a, 100, 255 * y), size=(10, 12))
                    rows.append(dict(img_id=len(rows) + 1, img_filename=f, y=y, split=s, place=a,
                                     place_filename=f"/{'o/ocean' if a else 'f/forest'}/{k:08d}.jpg"))
    meta = pd.DataFrame(rows)
    meta.to_csv(Path(root) / "metadata.csv", index=False)
    return meta


def celeba_tree(root, fmt="txt", kaggle=False, n=2):
    "CelebA folder: `n` images per (partition, y, a) in the official txt or the Kaggle csv format."
    root = Path(root)
    images = root / "img_align_celeba" / ("img_align_celeba" if kaggle else "")
    rows = []
    for s in range(3):
        for y in range(2):
            for a in range(2):
                for _ in range(n):
                    f = f"{len(rows) + 1:06d}.jpg"
                    png(images / f, (255 * y, 100, 255 * a), size=(9, 11))
                    rows.append((f, s, [1, y, a, 0]))
    if fmt == "txt":
        pm = lambda v: "  ".join(f"{2 * b - 1:2d}" for b in v)
        lines = [str(len(rows)), " ".join(CELEBA_NAMES) + " "] + [f"{f} {pm(v)}" for f, _, v in rows]
        (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        (root / "list_eval_partition.txt").write_text("".join(f"{f} {s}\n" for f, s, _ in rows))
    else:
        pd.DataFrame([[f, *(2 * np.array(v) - 1)] for f, _, v in rows], columns=["image_id", *CELEBA_NAMES]).to_csv(
            root / "list_attr_celeba.csv", index=False)
        pd.DataFrame([[f, s] for f, s, _ in rows], columns=["image_id", "partition"]).to_csv(
            root / "list_eval_partition.csv", index=False)
    return rows


def metashift_tree(root, n_train=3, n_test=20, suffixes=(".jpg",)):
    "MetaDatasetCatDog folder: `n_train` images per train context, `n_test` per test class."
    for s, classes in MS_CONTEXTS.items():
        for c, contexts in classes.items():
            for ctx in contexts:
                for k in range(n_train if s == "train" else n_test):
                    sfx = suffixes[k % len(suffixes)]
                    png(Path(root, s, c, f"{c}({ctx})", f"{ctx}_{k:03d}{sfx}"), (10 * k, 100, 255 * (c == "dog")))


def listing(root):
    "Every file under `root` with its size and mtime, to check that loaders write nothing."
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob("*"))


def check_item(ds, i, y, a, size=16):
    x, yi, ai = ds[i]
    assert x.shape == (3, size, size) and x.dtype.is_floating_point
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert (yi, ai) == (y, a)


# ---------------------------------------------------------------- happy paths
def test_waterbirds(tmp_path):
    meta = waterbirds_tree(tmp_path)
    for code, split in enumerate(["train", "val", "test"]):
        ds = load("waterbirds", split, tmp_path, size=16)
        m = meta[meta.split == code]
        assert ds.name == "waterbirds" and ds.split == split and len(ds) == 8
        assert ds.y.tolist() == m.y.tolist() and ds.a.tolist() == m.place.tolist()
        assert ds.g.tolist() == (2 * m.y + m.place).tolist() and ds.group_counts().tolist() == [2, 2, 2, 2]
        assert [Path(p) for p in ds.paths] == [tmp_path / f for f in m.img_filename]
        for i in range(len(ds)):
            check_item(ds, i, int(ds.y[i]), int(ds.a[i]))
    ds = load("waterbirds", "train", str(tmp_path), size=16, transform=lambda t: t * 0)
    assert float(ds[0][0].sum()) == 0


@pytest.mark.parametrize("fmt,kaggle", [("txt", False), ("csv", True), ("csv", False), ("txt", True)])
def test_celeba(tmp_path, fmt, kaggle):
    rows = celeba_tree(tmp_path, fmt, kaggle)
    for code, split in enumerate(["train", "val", "test"]):
        ds = load("celeba", split, tmp_path, size=16)
        r = [row for row in rows if row[1] == code]
        assert ds.name == "celeba" and len(ds) == 8 and ds.group_counts().tolist() == [2, 2, 2, 2]
        assert ds.y.tolist() == [v[1] for _, _, v in r] and ds.a.tolist() == [v[2] for _, _, v in r]
        nested = "img_align_celeba/img_align_celeba/" if kaggle else "img_align_celeba/"
        assert all(p.endswith(nested + f) for p, (f, _, _) in zip(ds.paths, r))
        check_item(ds, 7, 1, 1)
        assert float(ds[7][0][0].mean()) > 0.95  # blond = red channel 255


def test_celeba_zero_one_values(tmp_path):
    celeba_tree(tmp_path, "csv")
    attrs = pd.read_csv(tmp_path / "list_attr_celeba.csv")
    attrs[CELEBA_NAMES] = (attrs[CELEBA_NAMES] == 1).astype(int)
    attrs.to_csv(tmp_path / "list_attr_celeba.csv", index=False)
    ds = load("celeba", "val", tmp_path, size=16)
    assert ds.y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and ds.a.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]


def test_metashift(tmp_path):
    metashift_tree(tmp_path, suffixes=(".jpg", ".JPG", ".jpeg", ".png"))
    (tmp_path / "test/cat/cat(shelf)/Thumbs.db").write_bytes(b"x")
    (tmp_path / "train/cat/cat(tv)").mkdir()  # other contexts are ignored
    png(tmp_path / "train/cat/cat(tv)/x.jpg")
    tr = load("metashift", "train", tmp_path, size=16)
    assert tr.name == "metashift" and len(tr) == 12 and tr.group_counts().tolist() == [6, 0, 0, 6]
    assert not any("cat(tv)" in p for p in tr.paths)
    check_item(tr, 0, 0, 0)
    check_item(tr, 11, 1, 1)
    va, te = load("metashift", "val", tmp_path, size=16), load("metashift", "test", tmp_path, size=16)
    assert va.group_counts().tolist() == [3, 0, 3, 0] and te.group_counts().tolist() == [17, 0, 17, 0]
    check_item(va, 0, 0, 0)
    check_item(te, len(te) - 1, 1, 0)
    assert not any(p.endswith("Thumbs.db") for p in [*va.paths, *te.paths])


def test_metashift_val_split(tmp_path):
    metashift_tree(tmp_path, n_test=40)
    va, te = load("metashift", "val", tmp_path, size=16), load("metashift", "test", tmp_path, size=16)
    test_files = sorted(str(p) for p in (tmp_path / "test").rglob("*.jpg"))
    assert not set(va.paths) & set(te.paths)  # disjoint
    assert sorted([*va.paths, *te.paths]) == test_files  # together, the whole test folder
    for c, folder in enumerate(["cat(shelf)", "dog(shelf)"]):  # stratified: 15% of each class
        assert (va.y == c).sum() == 6 and all((folder in p) == (y == c) for p, y in zip(va.paths, va.y))
    again = load("metashift", "val", tmp_path, size=16)
    assert list(again.paths) == list(va.paths)  # deterministic
    other = load("metashift", "val", tmp_path, size=16, seed=1)
    assert set(other.paths) != set(va.paths) and len(other) == len(va)
    assert len(load("metashift", "val", tmp_path, size=16, val_frac=0.25)) == 20


def test_loaders_write_nothing(tmp_path):
    waterbirds_tree(tmp_path / "wb")
    celeba_tree(tmp_path / "ce")
    metashift_tree(tmp_path / "ms")
    before = listing(tmp_path)
    for name, sub in [("waterbirds", "wb"), ("celeba", "ce"), ("metashift", "ms")]:
        for split in ["train", "val", "test"]:
            ds = load(name, split, tmp_path / sub, size=16)
            ds[0]
        with pytest.raises(ValueError):
            load(name, "validation", tmp_path / sub, size=16)
    assert listing(tmp_path) == before


# ---------------------------------------------------------------- errors common to all loaders
@pytest.mark.parametrize("name", ["waterbirds", "celeba", "metashift"])
def test_unknown_split(tmp_path, name):
    with pytest.raises(ValueError, match=r"'valid'.*train, val, test"):
        load(name, "valid", tmp_path, size=16)


@pytest.mark.parametrize("name,holds", [("waterbirds", "metadata.csv"), ("celeba", "list_attr_celeba"),
                                        ("metashift", "train/")])
def test_missing_root(tmp_path, name, holds):
    with pytest.raises(FileNotFoundError) as e:
        load(name, "train", tmp_path / "missing", size=16)
    assert str(tmp_path / "missing") in str(e.value) and holds in str(e.value)


@pytest.mark.parametrize("name,build", [("waterbirds", waterbirds_tree), ("celeba", celeba_tree),
                                        ("metashift", metashift_tree)])
def test_corrupt_image(tmp_path, name, build):
    build(tmp_path)
    ds = load(name, "test", tmp_path, size=16)
    Path(ds.paths[1]).write_bytes(b"this is not an image")
    ds[0]
    with pytest.raises(ValueError, match="cannot read image") as e:
        ds[1]
    assert ds.paths[1] in str(e.value)


# ---------------------------------------------------------------- Waterbirds errors
def test_waterbirds_missing_metadata(tmp_path):
    waterbirds_tree(tmp_path)
    (tmp_path / "metadata.csv").rename(tmp_path / "meta.csv")
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        load("waterbirds", "train", tmp_path, size=16)


@pytest.mark.parametrize("col", ["place", "y", "split", "img_filename"])
def test_waterbirds_missing_column(tmp_path, col):
    meta = waterbirds_tree(tmp_path)
    meta.rename(columns={col: col + "_x"}).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(ValueError) as e:
        load("waterbirds", "train", tmp_path, size=16)
    msg = str(e.value)
    assert "metadata.csv" in msg and f"missing column(s) {col};" in msg and "img_filename, y, split, place" in msg


@pytest.mark.parametrize("col,bad", [("split", 3), ("y", 2), ("place", -1), ("y", "bird")])
def test_waterbirds_bad_values(tmp_path, col, bad):
    meta = waterbirds_tree(tmp_path)
    meta[col] = meta[col].astype(object)
    meta.loc[5, col] = bad
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(ValueError, match=rf"metadata.csv: column {col} must hold .*found {bad} in 1 row"):
        load("waterbirds", "val", tmp_path, size=16)  # row 5 is train: the whole file is checked


def test_waterbirds_missing_images(tmp_path):
    meta = waterbirds_tree(tmp_path)
    for f in meta.img_filename[[9, 12, 13]]:
        os.remove(tmp_path / f)
    load("waterbirds", "train", tmp_path, size=16)  # the missing files are all in val
    with pytest.raises(FileNotFoundError) as e:
        load("waterbirds", "val", tmp_path, size=16)
    msg = str(e.value)
    assert "3 of 8 val images" in msg and "metadata.csv" in msg and meta.img_filename[9] in msg


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_waterbirds_empty_group(tmp_path, split):
    meta = waterbirds_tree(tmp_path)
    code = ["train", "val", "test"].index(split)
    meta[~((meta.split == code) & (meta.y == 1) & (meta.place == 0))].to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(ValueError, match=rf"waterbirds/{split}: empty group\(s\) y=1,a=0 \(waterbird on land\);"):
        load("waterbirds", split, tmp_path, size=16)


# ---------------------------------------------------------------- CelebA errors
@pytest.mark.parametrize("stem", ["list_attr_celeba", "list_eval_partition"])
@pytest.mark.parametrize("fmt", ["txt", "csv"])
def test_celeba_missing_annotation(tmp_path, stem, fmt):
    celeba_tree(tmp_path, fmt)
    os.remove(tmp_path / f"{stem}.{fmt}")
    with pytest.raises(FileNotFoundError) as e:
        load("celeba", "train", tmp_path, size=16)
    assert f"{stem}.txt" in str(e.value) and f"{stem}.csv" in str(e.value)


def test_celeba_missing_image_folder(tmp_path):
    celeba_tree(tmp_path)
    (tmp_path / "img_align_celeba").rename(tmp_path / "images")
    with pytest.raises(FileNotFoundError, match="img_align_celeba"):
        load("celeba", "train", tmp_path, size=16)


@pytest.mark.parametrize("fmt", ["txt", "csv"])
@pytest.mark.parametrize("col", ["Blond_Hair", "Male"])
def test_celeba_missing_column(tmp_path, fmt, col):
    celeba_tree(tmp_path, fmt)
    f = tmp_path / f"list_attr_celeba.{fmt}"
    f.write_text(f.read_text().replace(col, "Renamed"))
    with pytest.raises(ValueError) as e:
        load("celeba", "train", tmp_path, size=16)
    msg = str(e.value)
    assert f.name in msg and f"missing column(s) {col};" in msg and "image_id, Blond_Hair, Male" in msg


def test_celeba_partition_column(tmp_path):
    celeba_tree(tmp_path, "csv")
    f = tmp_path / "list_eval_partition.csv"
    f.write_text(f.read_text().replace("partition", "split"))
    with pytest.raises(ValueError, match="list_eval_partition.csv: missing column.s. partition"):
        load("celeba", "train", tmp_path, size=16)


@pytest.mark.parametrize("col,bad", [("Male", 2), ("Blond_Hair", 5)])
def test_celeba_bad_attribute(tmp_path, col, bad):
    celeba_tree(tmp_path, "csv")
    attrs = pd.read_csv(tmp_path / "list_attr_celeba.csv")
    attrs.loc[0, col] = bad
    attrs.to_csv(tmp_path / "list_attr_celeba.csv", index=False)
    with pytest.raises(ValueError, match=rf"list_attr_celeba.csv: column {col} must hold -1/0/1; found {bad}"):
        load("celeba", "test", tmp_path, size=16)


def test_celeba_bad_attribute_txt(tmp_path):
    celeba_tree(tmp_path, "txt")
    f = tmp_path / "list_attr_celeba.txt"
    lines = f.read_text().splitlines()
    row = lines[3].split()
    row[CELEBA_NAMES.index("Male") + 1] = "7"
    lines[3] = " ".join(row)
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt: column Male must hold -1/0/1; found 7 in 1 row"):
        load("celeba", "val", tmp_path, size=16)


def test_celeba_bad_partition(tmp_path):
    celeba_tree(tmp_path, "txt")
    f = tmp_path / "list_eval_partition.txt"
    f.write_text(f.read_text().replace("000001.jpg 0", "000001.jpg 3"))
    with pytest.raises(ValueError, match=r"list_eval_partition.txt: column partition must hold 0/1/2; found 3"):
        load("celeba", "val", tmp_path, size=16)


def test_celeba_txt_count_and_header(tmp_path):
    celeba_tree(tmp_path, "txt")
    f = tmp_path / "list_attr_celeba.txt"
    text = f.read_text()
    f.write_text("\n".join(text.splitlines()[:-2]) + "\n")
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt: first line says 24 images but 22 rows follow"):
        load("celeba", "train", tmp_path, size=16)
    f.write_text("\n".join(text.splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt: first line must be the image count"):
        load("celeba", "train", tmp_path, size=16)


def test_celeba_image_without_partition(tmp_path):
    celeba_tree(tmp_path, "txt")
    f = tmp_path / "list_eval_partition.txt"
    f.write_text("".join(f.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(ValueError, match=r"list_eval_partition.txt: no partition for 1 image.*000001.jpg"):
        load("celeba", "test", tmp_path, size=16)


def test_celeba_missing_images(tmp_path):
    celeba_tree(tmp_path, "csv", kaggle=True)
    for f in ["000017.jpg", "000020.jpg"]:
        os.remove(tmp_path / "img_align_celeba" / "img_align_celeba" / f)
    with pytest.raises(FileNotFoundError) as e:
        load("celeba", "test", tmp_path, size=16)
    msg = str(e.value)
    assert "2 of 8 test images" in msg and "000017.jpg" in msg and "list_attr_celeba.csv" in msg


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_celeba_empty_group(tmp_path, split):
    rows = celeba_tree(tmp_path, "csv")
    code = ["train", "val", "test"].index(split)
    parts = pd.read_csv(tmp_path / "list_eval_partition.csv")
    blond_men = [f for f, s, v in rows if s == code and v[1] == 1 and v[2] == 1]
    parts.loc[parts.image_id.isin(blond_men), "partition"] = (code + 1) % 3
    parts.to_csv(tmp_path / "list_eval_partition.csv", index=False)
    with pytest.raises(ValueError, match=rf"celeba/{split}: empty group\(s\) y=1,a=1 \(blond man\);"):
        load("celeba", split, tmp_path, size=16)


# ---------------------------------------------------------------- MetaShift errors
@pytest.mark.parametrize("folder", ["train", "test"])
def test_metashift_missing_split_folder(tmp_path, folder):
    metashift_tree(tmp_path)
    shutil.rmtree(tmp_path / folder)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / folder} not found")):
        load("metashift", "train" if folder == "train" else "val", tmp_path, size=16)


@pytest.mark.parametrize("sub", ["train/cat", "train/dog", "test/cat", "test/dog"])
def test_metashift_missing_class_folder(tmp_path, sub):
    metashift_tree(tmp_path)
    shutil.rmtree(tmp_path / sub)
    with pytest.raises(FileNotFoundError, match=re.escape(f"class folder {tmp_path / sub} not found")):
        load("metashift", sub.split("/")[0], tmp_path, size=16)


@pytest.mark.parametrize("sub", ["train/cat/cat(sofa)", "train/cat/cat(bed)", "train/dog/dog(bench)",
                                 "train/dog/dog(bike)", "test/cat/cat(shelf)", "test/dog/dog(shelf)"])
def test_metashift_missing_context_folder(tmp_path, sub):
    metashift_tree(tmp_path)
    shutil.rmtree(tmp_path / sub)
    with pytest.raises(FileNotFoundError) as e:
        load("metashift", sub.split("/")[0], tmp_path, size=16)
    assert str(tmp_path / sub) in str(e.value)


def test_metashift_context_without_images(tmp_path):
    metashift_tree(tmp_path)
    for f in (tmp_path / "train/dog/dog(bike)").iterdir():
        f.rename(f.with_suffix(".txt"))
    with pytest.raises(ValueError, match=r"dog\(bike\) holds no .jpg/.jpeg/.png images"):
        load("metashift", "train", tmp_path, size=16)


def test_metashift_empty_group(tmp_path):
    metashift_tree(tmp_path, n_test=3)  # 15% of 3 rounds to 0: val would have no images
    with pytest.raises(ValueError, match=r"metashift/val: empty group\(s\) y=0,a=0 \(cat on shelf\); y=1,a=0"):
        load("metashift", "val", tmp_path, size=16)
    assert len(load("metashift", "test", tmp_path, size=16)) == 6


@pytest.mark.parametrize("val_frac", [0, 1, -0.1, 1.5])
def test_metashift_bad_val_frac(tmp_path, val_frac):
    metashift_tree(tmp_path)
    with pytest.raises(ValueError, match="val_frac"):
        load("metashift", "val", tmp_path, size=16, val_frac=val_frac)


def test_loader_processes_read_real_files(tmp_path):
    "`erm.loader_workers` on a real-format dataset: image files decoded and augmented in loader processes, reproducibly."
    import torch

    from spurnb.erm import _decoded, make_transform

    waterbirds_tree(tmp_path)
    ds = load("waterbirds", "train", tmp_path, size=16)
    batches = [np.array([0, 3, 5]), np.array([7, 1])]
    plain = list(_decoded(ds, batches, 2, 0, "cpu"))
    assert [tuple(x.shape) for x in plain] == [(3, 3, 16, 16), (2, 3, 16, 16)]
    assert all(torch.equal(x, torch.stack([ds[int(i)][0] for i in b])) for x, b in zip(plain, batches))
    aug = ds.with_transform(make_transform("rrc_flip", 16))  # the paper profile's random crops and flips
    first, again = (list(_decoded(aug, batches, 2, 7, "cpu")) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # the same seed: the same augmented batches
