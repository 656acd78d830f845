"ERM stage on the smoke profile: caching, per-sample losses, and the majority set."
import numpy as np

import spurnb.erm as erm
from spurnb.config import get_config
from spurnb.data import load_split


def test_train_erm_is_cached_and_ranks_by_own_loss(tmp_path, monkeypatch):
    cfg = get_config("smoke", {"erm.epochs": 1})
    art = erm.train_erm(cfg["data"], cfg["erm"], 0, tmp_path)
    train = load_split(cfg["data"], "train")
    assert art["arrays"]["train_logits"].shape == (len(train), 2)

    def boom(*a, **k):
        raise AssertionError("a cached artifact must not be recomputed")

    monkeypatch.setattr(erm, "fit", boom)
    again = erm.train_erm(cfg["data"], cfg["erm"], 0, tmp_path)
    np.testing.assert_array_equal(again["arrays"]["test_logits"], art["arrays"]["test_logits"])

    losses = erm.per_sample_losses(art["arrays"]["train_logits"], train.y)
    chosen = erm.lowest_loss(losses, train.y, 5)
    for c, idx in chosen.items():
        assert (train.y[idx] == c).all() and len(idx) == 5
        others = np.setdiff1d(np.nonzero(train.y == c)[0], idx)
        assert losses[idx].max() <= losses[others].min()


def test_model_reloads_from_cached_weights(tmp_path):
    cfg = get_config("smoke", {"erm.epochs": 1})
    art = erm.train_erm(cfg["data"], cfg["erm"], 1, tmp_path)
    model = erm.make_model(cfg["erm"]["arch"], 2, cfg["erm"]["widths"])
    model.load_state_dict(art["tensors"])
    test = load_split(cfg["data"], "test")
    np.testing.assert_allclose(erm.predict(model, test), art["arrays"]["test_logits"], atol=1e-5)


def test_erm_does_not_depend_on_earlier_random_numbers(tmp_path):
    import torch

    cfg = get_config("smoke", {"erm.epochs": 1})
    a = erm.train_erm(cfg["data"], cfg["erm"], 0, tmp_path / "a")
    torch.rand(1000)  # whatever ran before in the process must not change the result
    b = erm.train_erm(cfg["data"], cfg["erm"], 0, tmp_path / "b")
    np.testing.assert_allclose(a["arrays"]["test_logits"], b["arrays"]["test_logits"], atol=1e-5)
