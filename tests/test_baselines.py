"Baselines: each method's core rule on a toy problem with a known answer, and `run_baseline` on the smoke profile."
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import spurnb.baselines as bl
from spurnb.config import get_config
from spurnb.data import ArrayGroupDataset

TOY_ECFG = {"epochs": 5, "lr": 0.02, "schedule": "constant", "weight_decay": 0.0, "batch_size": 32, "augment": "none"}


def toy(n, p_major, seed, flip=0):
    "8×8 images: red channel shows y, blue channel shows a; the first `flip` labels are wrong."
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < p_major, y, 1 - y)
    img = rng.integers(0, 40, (n, 8, 8, 3))
    img[..., 0] += 60 + 120 * y[:, None, None]
    img[..., 2] += 60 + 120 * a[:, None, None]
    y = y.copy()
    y[:flip] = 1 - y[:flip]
    return ArrayGroupDataset(img.astype(np.uint8), y, a, 2, 2)


def linear(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 2))


def test_groupdro_weights_move_to_worst_group():
    # a fixed model: its logits are right with high confidence except on group 2
    y = torch.tensor([0, 0, 1, 1, 0, 1, 1, 0])
    g = torch.tensor([0, 0, 2, 2, 1, 3, 3, 1])
    logits = torch.where(F.one_hot(y, 2).bool(), 3.0, -3.0)
    logits[g == 2] = -logits[g == 2]  # group 2 is misclassified
    gl, present = bl.group_mean_losses(F.cross_entropy(logits, y, reduction="none"), g, 4)
    assert gl.argmax() == 2 and present.all()
    q = torch.full((4,), 0.25)
    for _ in range(5):
        q = bl.groupdro_update(q, gl, present, eta=0.1)
    assert q.argmax() == 2 and torch.isclose(q.sum(), torch.tensor(1.0))
    assert q[2] > 0.25 and (q[[0, 1, 3]] < 0.25).all()
    # a group absent from the batch keeps its unnormalised weight, whatever its (stale) loss
    q_abs = bl.groupdro_update(torch.full((4,), 0.25), torch.tensor([0.0, 0.0, 9.0, 0.0]),
                               torch.tensor([True, True, False, True]), eta=1.0)
    assert torch.allclose(q_abs, torch.full((4,), 0.25))


def test_jtt_upweights_exactly_the_error_set():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    pred = np.where(rng.random(50) < 0.2, 1 - y, y)
    w = bl.jtt_weights(pred, y, 7)
    assert set(np.nonzero(w == 7)[0]) == set(np.nonzero(pred != y)[0]) and set(np.unique(w)) <= {1.0, 7.0}


def test_jtt_stage1_error_set_on_separable_toy():
    torch.set_num_threads(1)
    train = toy(200, 0.5, 2, flip=5)  # separable by the red channel, except 5 mislabelled images
    pred, hist = bl.jtt_stage1(linear(), train, toy(80, 0.5, 1), TOY_ECFG, 5, seed=0)
    assert len(hist) == 5
    assert np.nonzero(pred != train.y)[0].tolist() == [0, 1, 2, 3, 4]


def test_balanced_subset_is_balanced():
    g = np.repeat([0, 1, 2, 3], [30, 4, 9, 17])
    for seed in range(3):
        idx = bl.balanced_subset(g, np.random.default_rng(seed))
        assert np.bincount(g[idx]).tolist() == [4, 4, 4, 4] and len(np.unique(idx)) == len(idx)
    h1, h2 = bl.stratified_halves(g, np.random.default_rng(0))
    assert sorted(np.concatenate([h1, h2]).tolist()) == list(range(len(g)))
    assert (np.abs(np.bincount(g[h1], minlength=4) - np.bincount(g[h2], minlength=4)) <= 1).all()


def test_dfr_recovers_the_core_feature():
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < 0.95, y, 1 - y)  # the spurious feature agrees with y 95% of the time
    X = np.stack([2 * y - 1 + rng.normal(0, 1.0, n), 2 * a - 1 + rng.normal(0, 0.1, n)], 1)  # [core, spurious]
    coef, _ = bl.dfr_fit(X, y, 2 * y + a, 1.0, 5, rng)
    assert abs(coef[0, 0]) > 3 * abs(coef[0, 1])
    head = bl.dfr_head(X, y, 2 * y + a, 4, [0.1, 1.0], 3, np.random.default_rng(1))
    assert abs(head["coef"][0, 0]) > 3 * abs(head["coef"][0, 1]) and head["C"] in (0.1, 1.0)


def test_features_with_and_without_features_method():
    class HeadNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.fc = nn.Sequential(nn.Flatten(), nn.Linear(192, 5)), nn.Linear(5, 2)

        def forward(self, x):
            return self.fc(self.body(x))

    ds = toy(20, 0.5, 0)
    assert bl.features(HeadNet(), ds).shape == (20, 5)
    assert bl.features(bl.make_model("resnet_small", 2, [4, 8, 8]), ds).shape == (20, 8)


def test_lisa_partners_follow_the_rule():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    a = np.where(rng.random(300) < 0.9, y, 1 - y)
    p = bl.lisa_partners(y, a, "intra_label", rng)
    assert (y[p] == y).all() and (a[p] != a).all()
    items = np.arange(0, 300, 7)
    p = bl.lisa_partners(y, a, "intra_domain", rng, items=items)
    assert (a[p] == a[items]).all() and (y[p] != y[items]).all()
    # no partner of the rule anywhere: fall back to random pool items
    p = bl.lisa_partners(np.zeros(5, int), np.zeros(5, int), "intra_domain", rng)
    assert p.shape == (5,) and ((p >= 0) & (p < 5)).all()
    with pytest.raises(ValueError, match="intra_label"):
        bl.lisa_partners(y, a, "cutmix", rng)


def test_run_baseline_smoke_and_cache(tmp_path, monkeypatch):
    from spurnb.data import load_split
    from spurnb.metrics import group_report, selected

    torch.set_num_threads(1)
    cfg = get_config("smoke", {"erm.epochs": 1})
    dcfg, ecfg, bcfg = cfg["data"], cfg["erm"], cfg["baselines"]
    arts = {m: bl.run_baseline(m, dcfg, ecfg, bcfg, 0, tmp_path) for m in bl.BASELINE_KNOBS}
    for m, art in arts.items():
        assert art["arrays"]["val_logits"].shape[1] == 2 and art["arrays"]["test_logits"].ndim == 2
        assert art["meta"]["group_labels"] == bl.GROUP_LABELS[m]
    assert np.isclose(sum(arts["groupdro"]["meta"]["q"]), 1)
    assert arts["dfr"]["meta"]["C"] in bcfg["dfr_C"]
    # every method's history holds the test scores of what it kept under its own rule (validation worst group)
    test = load_split(dcfg, "test")
    for m, art in arts.items():
        kept = selected(art["meta"]["history"], "val_worst_group")
        pred = art["arrays"]["test_logits"].argmax(1)
        assert kept["test_worst"] == group_report(pred, test.y, test.g, test.n_groups)["worst"], m
    assert [h["C"] for h in arts["dfr"]["meta"]["history"]] == bcfg["dfr_C"]
    assert [h["n"] for h in arts["self"]["meta"]["history"]] == bcfg["self_n"]
    assert arts["self"]["meta"]["n"] in bcfg["self_n"]

    def boom(*a, **k):
        raise AssertionError("a cached artifact must not be recomputed")

    for fn in ("fit", "train_erm", "features", "initial_weights"):
        monkeypatch.setattr(bl, fn, boom)
    for m, art in arts.items():
        again = bl.run_baseline(m, dcfg, ecfg, bcfg, 0, tmp_path)
        np.testing.assert_array_equal(again["arrays"]["test_logits"], art["arrays"]["test_logits"])
    with pytest.raises(ValueError, match="unknown baseline 'dac'; choose one of upsample"):
        bl.run_baseline("dac", dcfg, ecfg, bcfg, 0, tmp_path)
