"Waterbirds-lite: determinism, disjoint digits, the 95/5 train split, balanced val/test."
import numpy as np
import pytest

from spurnb.config import get_config
from spurnb.data import load, load_split, waterbirds_lite


def test_deterministic_and_disjoint():
    kw = dict(n_digits=400, train_copies=2)
    a, b = waterbirds_lite("train", **kw), waterbirds_lite("train", **kw)
    np.testing.assert_array_equal(a.images, b.images)
    splits = {s: set(waterbirds_lite(s, **kw).source) for s in ("world", "train", "val", "test")}
    names = list(splits)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not splits[names[i]] & splits[names[j]]
    assert len(a) == 2 * len(splits["train"])


def test_group_structure_smoke_profile():
    d = get_config("smoke")["data"]
    tr, te = load_split(d, "train"), load_split(d, "test")
    c = tr.group_counts()
    assert abs((c[0] + c[3]) / c.sum() - 0.95) < 0.02 and c[1] > 0 and c[2] > 0
    assert (abs(te.group_counts()[[0, 2]] - te.group_counts()[[1, 3]]) <= 1).all()
    x, y, a = te[0]
    assert x.shape == (3, 32, 32) and y == int(te.digit[0] >= 5) and te.masks[0].any()


def test_bad_names():
    with pytest.raises(ValueError, match="unknown dataset"):
        load("imagenet", "train")
    with pytest.raises(ValueError, match="needs root"):
        load("waterbirds", "train")
    with pytest.raises(ValueError, match="p_majority"):
        waterbirds_lite("train", p_majority=0.2)
