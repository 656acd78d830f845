"""Resumable training: a computation killed in the middle of `fit` goes on from its last finished epoch's checkpoint
(in its cache entry's `.work` folder) to the very model and history an uninterrupted run makes, with what the loss
keeps between batches (GroupDRO's group weights, LISA's random pairing and counts); a damaged checkpoint is ignored
with a warning and the training starts afresh."""
import numpy as np
import pytest
import torch

import spurnb.baselines as bl
import spurnb.erm as erm
from spurnb.config import CacheWarning, cached
from test_baselines import TOY_ECFG, linear, toy

ECFG = {**TOY_ECFG, "epochs": 4, "schedule": "cosine", "augment": "pad_crop", "batch_size": 16}
BCFG = {"groupdro_eta": 0.1, "lisa_p_sel": 0.5, "lisa_alpha": 2.0}
TRAIN, VAL = toy(96, 0.9, 0), toy(48, 0.5, 1)


class Killed(Exception):
    "Stands in for a kill: raised in the middle of the third epoch."


def train(kind: str, cache) -> dict:
    "One cached training of `kind` (erm, erm-fp16: with a loss scaler, groupdro or lisa) on the toy data."
    def compute():
        if kind.startswith("erm"):
            ecfg = {**ECFG, "precision": "fp16"} if kind == "erm-fp16" else ECFG
            model, meta = erm.fit(linear(0), TRAIN, VAL, ecfg, 0, desc="erm(seed=0)")
            meta = {"history": meta}
        else:
            model, meta = getattr(bl, f"train_{kind}")(lambda: linear(0), TRAIN, VAL, ECFG, BCFG, 0)
        return {"tensors": model.state_dict(), "meta": meta}

    return cached("toy_fit", {"kind": kind}, compute, cache)


def kill_in_epoch_3(monkeypatch):
    "The third validation (after the third epoch's batches, before its checkpoint) raises `Killed`."
    real, calls = erm.epoch_scores, []

    def scores(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Killed()
        return real(*args, **kwargs)

    monkeypatch.setattr(erm, "epoch_scores", scores)


@pytest.mark.parametrize("kind", ["erm", "erm-fp16", "groupdro", "lisa"])
def test_a_killed_training_resumes_to_the_uninterrupted_model(tmp_path, monkeypatch, capfd, kind):
    if kind == "erm-fp16":  # a loss scale that starts far too high: it halves at every overflowing step (skipped), so
        class Scaler(torch.amp.GradScaler):  # a resume that forgot the scale would skip other steps
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **{**kwargs, "init_scale": 2.0 ** 40})

        monkeypatch.setattr(torch.amp, "GradScaler", Scaler)
    whole = train(kind, tmp_path / "whole")
    with monkeypatch.context() as m:
        kill_in_epoch_3(m)
        with pytest.raises(Killed):
            train(kind, tmp_path / "killed")
    assert len(list((tmp_path / "killed" / "toy_fit").glob("*.work/fit-*.pt"))) == 1  # epochs 1-2 kept
    resumed = train(kind, tmp_path / "killed")
    assert "resuming after epoch 2" in capfd.readouterr().err
    assert resumed["meta"] == whole["meta"]  # histories, GroupDRO's q, LISA's batch counts
    for k, v in whole["tensors"].items():
        assert torch.equal(resumed["tensors"][k], v), k  # bit for bit
    assert not list((tmp_path / "killed" / "toy_fit").glob("*.work"))  # the checkpoint goes once the entry is stored


def test_a_damaged_checkpoint_is_ignored_with_a_warning(tmp_path, monkeypatch):
    whole = train("erm", tmp_path / "whole")
    with monkeypatch.context() as m:
        kill_in_epoch_3(m)
        with pytest.raises(Killed):
            train("erm", tmp_path / "killed")
    ckpt = next((tmp_path / "killed" / "toy_fit").glob("*.work/fit-*.pt"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.warns(CacheWarning, match="is unreadable and is ignored"):
        again = train("erm", tmp_path / "killed")
    assert again["meta"] == whole["meta"]
    assert all(torch.equal(again["tensors"][k], v) for k, v in whole["tensors"].items())


def test_fit_outside_a_cache_entry_keeps_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    erm.fit(linear(0), TRAIN, VAL, {**ECFG, "epochs": 2}, 0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_killed_textual_inversion_resumes_to_the_uninterrupted_words(tmp_path, monkeypatch, capfd, folder, precision):
    import spurnb.inversion as inv
    from spurnb.config import get_config

    icfg = {**get_config("smoke")["ddb"]["inversion"], "steps": 6, "batch_size": 2, "tokens_per_class": 1,
            "precision": precision}
    if precision == "fp16":  # a loss scale too high at first, halved at each overflowing step (skipped) until the
        # gradients fit: a resume that forgot the scale would skip other steps (checked: it fails without it)
        class Scaler(torch.amp.GradScaler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **{**kwargs, "init_scale": 2.0 ** 24})

        monkeypatch.setattr(torch.amp, "GradScaler", Scaler)
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8) for c in (0, 1)}

    def run(cache):
        def compute():
            learned, meta = inv.learn_tokens(folder, images, icfg, seed=0)
            return {"tensors": learned, "meta": {"history": meta["history"]}}

        return cached("toy_inversion", {"k": 1}, compute, cache)

    whole = run(tmp_path / "whole")  # 6 steps, a checkpoint after each of the first 5
    real, calls = inv._save_inversion_state, []

    def save(*args, **kwargs):  # killed in step 4, before its checkpoint: the last one is step 3's
        calls.append(1)
        if len(calls) == 4:
            raise Killed()
        real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(inv, "_save_inversion_state", save)
        with pytest.raises(Killed):
            run(tmp_path / "killed")
    resumed = run(tmp_path / "killed")
    assert "resuming after step 3" in capfd.readouterr().err
    assert resumed["meta"] == whole["meta"] and len(whole["meta"]["history"]) == 6
    assert all(torch.equal(resumed["tensors"][k], v) for k, v in whole["tensors"].items())
    assert not list((tmp_path / "killed" / "toy_inversion").glob("*.work"))
