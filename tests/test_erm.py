"ERM stage on the smoke profile: caching, per-sample losses, and the majority set."
from unittest.mock import patch

import numpy as np
import pytest
import torch

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


# ---------------------------------------------------------------- paper-scale settings: loader processes, precision
def _toy_fit(**knobs):
    from test_baselines import TOY_ECFG, linear, toy

    from spurnb.erm import fit

    ecfg = {**TOY_ECFG, "epochs": 3, "augment": "pad_crop", "batch_size": 16, **knobs}
    return fit(linear(0), toy(96, 0.9, 0), toy(48, 0.5, 1), ecfg, seed=0)


def test_loader_processes_decode_every_batch_reproducibly(monkeypatch):
    "Loader processes decode every training image; the same seed gives the same model (they need the epoch's batches up front, so not the in-process one)."
    real, used = erm._decoded, []

    def decoded(*args):
        for x in real(*args):
            used.append(len(x))
            yield x

    monkeypatch.setattr(erm, "_decoded", decoded)
    first, hist = _toy_fit(loader_workers=2)
    assert sum(used) == 3 * 96  # every training image came from the loader processes
    again, hist2 = _toy_fit(loader_workers=2)
    assert hist2 == hist
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_half_precision_trains_close_to_fp32():
    _, fp32 = _toy_fit()
    for precision in ("bf16", "fp16"):
        _, half = _toy_fit(precision=precision)
        assert [h["train_loss"] for h in half] == pytest.approx([h["train_loss"] for h in fp32], rel=0.05), precision


def test_train_dtype():
    from spurnb.erm import train_dtype

    assert train_dtype("bf16") == torch.bfloat16 and train_dtype("fp16", "cpu") == torch.float16
    with patch("spurnb.erm.native_bf16_cpu", return_value=True):  # an AVX512-BF16 or AMX CPU
        assert train_dtype("auto", "cpu") == torch.bfloat16
    with patch("spurnb.erm.native_bf16_cpu", return_value=False):  # one that would only emulate bf16
        assert train_dtype("auto", "cpu") == torch.float32
    with pytest.raises(ValueError, match="erm.precision must be auto, fp32, fp16 or bf16, got 'fp8'"):
        train_dtype("fp8")


def test_default_precision_and_loaders_keep_the_cache_keys():
    from spurnb.erm import erm_key, training_knobs

    assert erm_key({"epochs": 2, "K": 5, "precision": "fp32", "loader_workers": 0}) == {"epochs": 2, "K": 5}

    ecfg = {"epochs": 2, "lr": 1e-3, "K": 5}
    assert training_knobs({**ecfg, "precision": "fp32", "loader_workers": 0}) == {"epochs": 2, "lr": 1e-3}
    assert training_knobs({**ecfg, "precision": "bf16", "loader_workers": 4}) == {
        "epochs": 2, "lr": 1e-3, "precision": "bf16", "loader_workers": 4}


def test_auto_precision_is_keyed_by_what_it_resolves_to():
    "`auto` is bf16 on one CPU and fp32 on another: the key names the dtype, so neither machine reads the other's models."
    from spurnb.erm import erm_key

    ecfg = {"epochs": 2, "K": 5, "device": "cpu", "precision": "auto"}
    with patch("spurnb.erm.native_bf16_cpu", return_value=True):
        assert erm_key(ecfg) == {"epochs": 2, "K": 5, "device": "cpu", "precision": "bf16"}
    with patch("spurnb.erm.native_bf16_cpu", return_value=False):  # the very key of an fp32 run
        assert erm_key(ecfg) == erm_key({**ecfg, "precision": "fp32"}) == {"epochs": 2, "K": 5, "device": "cpu"}


# ---------------------------------------------------------------- per-epoch histories and selection rules
@pytest.mark.parametrize("select", ["avg", "worst", "worst_class", "last"])
def test_history_scores_the_kept_epoch_and_test_never_selects(select):
    "The model fit returns is the epoch its rule picks from the history, and the test set only ever gets recorded."
    from test_baselines import TOY_ECFG, linear, toy

    from spurnb.erm import fit
    from spurnb.metrics import FIT_SELECT, epoch_scores, selected

    train, val, test = toy(96, 0.9, 0), toy(48, 0.5, 1), toy(64, 0.5, 2)
    ecfg = {**TOY_ECFG, "epochs": 4}
    model, hist = fit(linear(0), train, val, ecfg, seed=0, select=select, test=test)
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    assert {"val_worst", "val_worst_class", "val_avg", "test_worst", "test_worst_class", "test_avg"} <= set(hist[0])
    kept = selected(hist, FIT_SELECT[select])
    pred = erm.predict(model, test).argmax(1)
    assert epoch_scores(pred, test.y, test.g, 4, "test")["test_worst"] == kept["test_worst"]
    # the same training without a test set keeps the same weights (scoring test draws no random numbers)
    model2, hist2 = fit(linear(0), train, val, ecfg, seed=0, select=select)
    assert "test_worst" not in hist2[0] and [h["val_avg"] for h in hist2] == [h["val_avg"] for h in hist]
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    if select == "last":
        assert kept["index"] == 3


def test_fit_rejects_an_unknown_rule():
    from test_baselines import TOY_ECFG, linear, toy

    from spurnb.erm import fit

    with pytest.raises(ValueError, match="select must be one of worst, worst_class, avg, last"):
        fit(linear(0), toy(32, 0.9, 0), toy(16, 0.5, 1), TOY_ECFG, seed=0, select="best")
