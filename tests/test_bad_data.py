"""Bad input to the dataset loaders (spurnb.data, spurnb.realdata): each fails at once with one line naming the file,
image, split or config key."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import spurnb.data
from spurnb.config import get_config
from spurnb.data import FileGroupDataset, load, load_split, waterbirds_lite
from test_realdata import celeba_tree, metashift_tree, png, waterbirds_tree

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01" * 20  # binary, not UTF-8


def raises(err, pattern, fn, *args, **kw) -> str:
    "Call `fn`, check it raises `err` matching `pattern` with a one-line message; return the message."
    with pytest.raises(err, match=pattern) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


# ---------------------------------------------------------------- Waterbirds metadata.csv
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_waterbirds_duplicate_rows(tmp_path, split):
    meta = waterbirds_tree(tmp_path)
    pd.concat([meta, meta.iloc[[9, 9, 3]]]).to_csv(tmp_path / "metadata.csv", index=False)  # rows doubled
    raises(ValueError, rf"metadata.csv: 2 image\(s\) listed more than once in column img_filename \(3 extra row\(s\)\), "
           rf"first: {re.escape(meta.img_filename[3])} \(2 times\)", load, "waterbirds", split, tmp_path, size=16)


def test_waterbirds_image_in_two_splits(tmp_path):
    meta = waterbirds_tree(tmp_path)
    leak = meta.iloc[[20]].assign(split=0, img_id=99)  # a test image listed again as train
    pd.concat([meta, leak]).to_csv(tmp_path / "metadata.csv", index=False)
    raises(ValueError, rf"metadata.csv: .*first: {re.escape(meta.img_filename[20])} \(2 times\)",
           load, "waterbirds", "train", tmp_path, size=16)


def test_waterbirds_blank_filename(tmp_path):
    meta = waterbirds_tree(tmp_path)
    meta.loc[4, "img_filename"] = None
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    raises(ValueError, r"metadata.csv: column img_filename is blank in 1 row\(s\), first: data row 5",
           load, "waterbirds", "test", tmp_path, size=16)


@pytest.mark.parametrize("content,why", [(b"", "EmptyDataError"), (b"\n\n", "EmptyDataError"),
                                         (PNG_BYTES, "UnicodeDecodeError"),
                                         (b"img_filename,y,split,place\na.jpg,0,0,0\nb.jpg,0,0,0,7,8\n", "ParserError"),
                                         (b"img_filename,y,split,place\n", "the table has no rows")])
def test_waterbirds_unreadable_metadata(tmp_path, content, why):
    waterbirds_tree(tmp_path)
    (tmp_path / "metadata.csv").write_bytes(content)
    raises(ValueError, re.escape(str(tmp_path / "metadata.csv")) + ": .*" + why, load, "waterbirds", "train", tmp_path,
           size=16)


@pytest.mark.parametrize("col,bad,shown", [("y", None, "nan"), ("place", 0.5, "0.5"), ("split", -1, "-1"),
                                           ("place", "water", "water")])
def test_waterbirds_bad_label_values(tmp_path, col, bad, shown):
    meta = waterbirds_tree(tmp_path)
    meta[col] = meta[col].astype(object)
    meta.loc[2, col] = bad
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    raises(ValueError, rf"metadata.csv: column {col} must hold .*; found {shown} in 1 row", load, "waterbirds", "val",
           tmp_path, size=16)


@pytest.mark.parametrize("col", ["img_filename", "y", "split", "place"])
def test_waterbirds_renamed_column(tmp_path, col):
    meta = waterbirds_tree(tmp_path)
    meta.rename(columns={col: col.upper()}).to_csv(tmp_path / "metadata.csv", index=False)
    raises(ValueError, rf"metadata.csv: missing column\(s\) {col};", load, "waterbirds", "train", tmp_path, size=16)


def test_waterbirds_valid_unchanged(tmp_path):
    meta = waterbirds_tree(tmp_path)
    ds = load("waterbirds", "test", tmp_path, size=16)
    m = meta[meta.split == 2]
    assert [Path(p) for p in ds.paths] == [tmp_path / f for f in m.img_filename]
    assert ds.y.dtype == np.int64 and ds.y.tolist() == m.y.tolist() and ds.a.tolist() == m.place.tolist()


# ---------------------------------------------------------------- CelebA annotation files
@pytest.mark.parametrize("fmt", ["txt", "csv"])
def test_celeba_image_in_two_partitions(tmp_path, fmt):
    celeba_tree(tmp_path, fmt)
    f = tmp_path / f"list_eval_partition.{fmt}"
    extra = "000020.jpg 0\n" if fmt == "txt" else "000020.jpg,0\n"  # a test image also listed as train
    f.write_text(f.read_text() + extra)
    for split in ["train", "test"]:
        raises(ValueError, rf"list_eval_partition.{fmt}: 1 image\(s\) listed more than once in column image_id "
               r"\(1 extra row\(s\)\), first: 000020.jpg \(2 times\)", load, "celeba", split, tmp_path, size=16)


def test_celeba_duplicate_attribute_rows(tmp_path):
    celeba_tree(tmp_path, "csv", kaggle=True)
    attrs = pd.read_csv(tmp_path / "list_attr_celeba.csv")
    pd.concat([attrs, attrs.iloc[[5]]]).to_csv(tmp_path / "list_attr_celeba.csv", index=False)
    raises(ValueError, r"list_attr_celeba.csv: 1 image\(s\) listed more than once .*first: 000006.jpg",
           load, "celeba", "val", tmp_path, size=16)


def test_celeba_duplicate_attribute_rows_txt(tmp_path):
    celeba_tree(tmp_path, "txt")
    f = tmp_path / "list_attr_celeba.txt"
    lines = f.read_text().splitlines()
    lines = [str(int(lines[0]) + 1), *lines[1:], lines[4]]  # the count stays right
    f.write_text("\n".join(lines) + "\n")
    raises(ValueError, r"list_attr_celeba.txt: 1 image\(s\) listed more than once .*first: 000003.jpg \(2 times\)",
           load, "celeba", "test", tmp_path, size=16)


@pytest.mark.parametrize("stem,fmt,content,why", [
    ("list_attr_celeba", "txt", PNG_BYTES, "first line must be the image count"),
    ("list_attr_celeba", "txt", b"", "first line must be the image count"),
    ("list_attr_celeba", "txt", b"3\nBlond_Hair Male\n", "the table has no rows"),
    ("list_attr_celeba", "csv", PNG_BYTES, "cannot read it as a table .UnicodeDecodeError"),
    ("list_attr_celeba", "csv", b"", "cannot read it as a table .EmptyDataError"),
    ("list_eval_partition", "txt", b"", "the table has no rows"),
    ("list_eval_partition", "txt", PNG_BYTES, "cannot read it as a table"),
    ("list_eval_partition", "csv", b"image_id,partition\n", "the table has no rows"),
    ("list_eval_partition", "csv", PNG_BYTES, "cannot read it as a table .UnicodeDecodeError")])
def test_celeba_unreadable_tables(tmp_path, stem, fmt, content, why):
    celeba_tree(tmp_path, fmt)
    f = tmp_path / f"{stem}.{fmt}"
    f.write_bytes(content)
    raises(ValueError, re.escape(str(f)) + ": " + why, load, "celeba", "train", tmp_path, size=16)


def test_celeba_nan_values(tmp_path):
    celeba_tree(tmp_path, "csv")
    attrs = pd.read_csv(tmp_path / "list_attr_celeba.csv")
    attrs.loc[3, "Male"] = np.nan
    attrs.to_csv(tmp_path / "list_attr_celeba.csv", index=False)
    raises(ValueError, r"list_attr_celeba.csv: column Male must hold -1/0/1; found nan in 1 row", load, "celeba",
           "train", tmp_path, size=16)
    celeba_tree(tmp_path, "csv")
    parts = pd.read_csv(tmp_path / "list_eval_partition.csv")
    parts["partition"] = parts["partition"].astype(object)
    parts.loc[3, "partition"] = "train"
    parts.to_csv(tmp_path / "list_eval_partition.csv", index=False)
    raises(ValueError, r"list_eval_partition.csv: column partition must hold 0/1/2; found train in 1 row", load,
           "celeba", "test", tmp_path, size=16)


@pytest.mark.parametrize("stem", ["list_attr_celeba", "list_eval_partition"])
def test_celeba_renamed_image_id(tmp_path, stem):
    celeba_tree(tmp_path, "csv")
    f = tmp_path / f"{stem}.csv"
    f.write_text(f.read_text().replace("image_id", "file"))
    raises(ValueError, rf"{stem}.csv: missing column\(s\) image_id;", load, "celeba", "train", tmp_path, size=16)


# ---------------------------------------------------------------- MetaShift folders
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_metashift_image_in_train_and_test(tmp_path, split):
    metashift_tree(tmp_path)
    src = tmp_path / "train/cat/cat(sofa)/sofa_001.jpg"
    dst = tmp_path / "test/cat/cat(shelf)/sofa_001.jpg"
    shutil.copy(src, dst)
    msg = raises(ValueError, r"MetaShift image .*sofa_001.jpg is also .*sofa_001.jpg \(same bytes\)", load, "metashift",
                 split, tmp_path, size=16)
    assert str(src) in msg and str(dst) in msg


def test_metashift_image_under_both_classes(tmp_path):
    metashift_tree(tmp_path)
    shutil.copy(tmp_path / "test/dog/dog(shelf)/shelf_004.jpg", tmp_path / "test/cat/cat(shelf)/x.jpg")
    shutil.copy(tmp_path / "test/dog/dog(shelf)/shelf_004.jpg", tmp_path / "test/dog/dog(shelf)/x.jpg")
    with pytest.warns(UserWarning, match=r"cat\(shelf\)/x.jpg is also .*dog\(shelf\)/x.jpg .*both labels"):
        load("metashift", "val", tmp_path, size=16)  # a photo of both animals: kept, with a warning


def test_metashift_allowed_repeats(tmp_path):
    metashift_tree(tmp_path)  # cat(shelf)/shelf_000.jpg and dog(shelf)/shelf_000.jpg: same name, other images
    shutil.copy(tmp_path / "train/cat/cat(sofa)/sofa_000.jpg", tmp_path / "train/cat/cat(bed)/sofa_000.jpg")
    tr = load("metashift", "train", tmp_path, size=16)  # one cat in two cat contexts, as MetaShift publishes
    assert len(tr) == 13
    va, te = load("metashift", "val", tmp_path, size=16), load("metashift", "test", tmp_path, size=16)
    assert not set(va.paths) & set(te.paths) and not set(tr.paths) & (set(va.paths) | set(te.paths))


def test_metashift_other_folder_missing(tmp_path):
    metashift_tree(tmp_path)
    shutil.rmtree(tmp_path / "train")
    raises(FileNotFoundError, re.escape(f"MetaShift folder {tmp_path / 'train'} not found"), load, "metashift", "val",
           tmp_path, size=16)


# ---------------------------------------------------------------- image files
@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "folder", "deleted"])
def test_unreadable_image_names_file(tmp_path, damage):
    png(tmp_path / "ok.png", size=(20, 14))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / "bad.jpg")
    bad = tmp_path / "bad.jpg"
    data = bad.read_bytes()
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "text":
        bad.write_text("not an image")
    elif damage == "folder":
        bad.unlink()
        bad.mkdir()
    else:
        bad.unlink()
    ds = FileGroupDataset([tmp_path / "ok.png", bad], [0, 1], [0, 1], 2, 2, size=8, resize=10, name="x", split="val")
    assert ds[0][0].shape == (3, 8, 8) and ds.original_size(0) == (14, 20)
    pattern = rf"cannot read image {re.escape(str(bad))} \(x/val item 1\)"
    for call in (lambda: ds[1], lambda: ds.load_square(1, 8), lambda: ds.with_transform(lambda t: t)[1]):
        raises(ValueError, pattern, call)
    if damage in ("empty", "text", "folder", "deleted"):  # the header alone fails too
        raises(ValueError, pattern, ds.original_size, 1)


# ---------------------------------------------------------------- Waterbirds-lite
def lite_cfg(**lite) -> dict:
    "The smoke profile's data section with `lite` overrides."
    d = get_config("smoke")["data"]
    d["lite"].update(lite)
    return d


@pytest.mark.parametrize("split,groups", [("val", "y=0 \\(0-4\\), water; y=1 \\(5-9\\), land; y=1 \\(5-9\\), water"),
                                          ("test", "y=1 \\(5-9\\), land; y=1 \\(5-9\\), water"),
                                          ("train", "y=0 \\(0-4\\), water; y=1 \\(5-9\\), land")])
def test_lite_empty_groups(monkeypatch, split, groups):
    def no_drawing(*a, **k):
        raise AssertionError("images drawn before the group check")

    monkeypatch.setattr(spurnb.data, "composite", no_drawing)
    msg = raises(ValueError, rf"waterbirds_lite/{split}: empty group\(s\) {groups}; this split must have samples in "
                 rf"4 groups, but n_digits=12 gives it \d+ image\(s\): raise data.lite.n_digits", load_split,
                 lite_cfg(n_digits=12), split)
    assert ("data.lite.p_majority" in msg) == (split == "train")


def test_lite_p_majority_one_keeps_train():
    tr = load_split(lite_cfg(p_majority=1.0), "train")  # no minority groups in train, on purpose
    assert tr.group_counts()[[1, 2]].tolist() == [0, 0] and tr.group_counts()[[0, 3]].min() > 0
    raises(ValueError, r"waterbirds_lite/val: empty group", load_split, lite_cfg(p_majority=1.0, n_digits=12), "val")


@pytest.mark.parametrize("lite,split,key", [(dict(n_digits=6000), "train", "data.lite.n_digits"),
                                            (dict(n_digits=12.5), "train", "data.lite.n_digits"),
                                            (dict(train_copies=0), "train", "data.lite.train_copies"),
                                            (dict(world_copies=0), "world", "data.lite.world_copies"),
                                            (dict(fractions=[0.5, 0.5, 0.0, 0.1]), "val", "data.lite.fractions"),
                                            (dict(fractions=[1, 1, 1]), "test", "data.lite.fractions"),
                                            (dict(p_majority=0.3), "train", "data.lite.p_majority")])
def test_lite_bad_settings(lite, split, key):
    raises(ValueError, rf"waterbirds_lite .*\(config {re.escape(key)}\)", load_split, lite_cfg(**lite), split)


@pytest.mark.parametrize("kw,key", [(dict(seed=-1), "data.seed"), (dict(size=0), "data.size")])
def test_lite_bad_seed_size(kw, key):
    raises(ValueError, rf"waterbirds_lite .*\(config {re.escape(key)}\)", waterbirds_lite, "val", n_digits=600, **kw)
