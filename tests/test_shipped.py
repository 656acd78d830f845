"Shipped artifacts: the cpu profile's world-pretrained classifier and embedded segmenter load from spurnb/assets."
import json
import shutil

import numpy as np
import pytest
import torch

import spurnb.config as C
import spurnb.erm as erm
import spurnb.segment as S
from spurnb.config import get_config


def no_training(*a, **k):
    raise AssertionError("a shipped artifact must not be trained again")


def test_cpu_profile_matches_what_is_shipped():
    "If a setting or CACHE_VERSION changes, the shipped files no longer match: re-ship them (make pretrained)."
    cfg = get_config("cpu")
    assert C.shipped_artifact("world-classifier", "pretrain_world", erm.world_key(cfg["data"], cfg["erm"])) is not None
    assert C.shipped_artifact("segmenter", "segmenter", S.segmenter_key(cfg["data"], cfg["segment"])) is not None


def test_pretrain_world_loads_the_shipped_weights(tmp_path, monkeypatch):
    cfg = get_config("cpu")
    monkeypatch.setattr(erm, "fit", no_training)
    art = erm.pretrain_world(cfg["data"], cfg["erm"], tmp_path)
    shipped = C.load_artifact(C.assets_dir() / "world-classifier")
    for k, v in shipped["tensors"].items():
        assert torch.equal(art["tensors"][k], v)
    assert (tmp_path / "pretrain_world" / C.artifact_hash("pretrain_world", erm.world_key(cfg["data"], cfg["erm"]))
            / "key.json").exists()  # and it is in the run's cache from then on
    with pytest.raises(AssertionError, match="must not be trained"):  # shipped=False trains
        erm.pretrain_world(cfg["data"], cfg["erm"], tmp_path / "other", shipped=False)
    with pytest.raises(AssertionError, match="must not be trained"):  # another setting trains
        erm.pretrain_world(cfg["data"], {**cfg["erm"], "pretrain_epochs": 3}, tmp_path / "other")


def test_embedded_segmenter_loads_the_shipped_net(tmp_path, monkeypatch):
    cfg = get_config("cpu")
    monkeypatch.setattr(S, "fit_segmenter", no_training)
    seg = S.train_embedded_segmenter(cfg["data"], cfg["segment"], tmp_path)
    assert seg.meta["params"] == sum(p.numel() for p in seg.net.parameters())
    test = S.load_split(cfg["data"], "test")
    masks, _, _ = seg.predict(test.images[:64], "digit")
    assert np.mean([S.iou(m, t) for m, t in zip(masks, test.masks[:64])]) > 0.8  # a trained net, not a fresh one
    with pytest.raises(AssertionError, match="must not be trained"):
        S.train_embedded_segmenter(cfg["data"], {**cfg["segment"], "epochs": 1}, tmp_path)


def make_toy():
    return {"tensors": {"w": torch.arange(3.0)}, "meta": {"made": "now"}}


def test_cached_prefers_cache_then_shipped_then_compute(tmp_path, monkeypatch):
    C.cached("toy", {"k": 1}, make_toy, tmp_path / "a")
    C.ship_artifact("toy", {"k": 1}, tmp_path / "a", "toy-net", tmp_path / "assets")
    sums = (tmp_path / "assets" / "toy-net" / "SHA256SUMS").read_text()
    assert "tensors.safetensors" in sums and "artifact.json" in sums
    assert json.loads((tmp_path / "assets" / "toy-net" / "artifact.json").read_text())["stage"] == "toy"
    monkeypatch.setattr(C, "assets_dir", lambda: tmp_path / "assets")
    art = C.cached("toy", {"k": 1}, no_training, tmp_path / "b", shipped="toy-net")
    assert art["meta"] == {"made": "now"}
    with pytest.raises(AssertionError):  # not shipped for this key
        C.cached("toy", {"k": 2}, no_training, tmp_path / "b", shipped="toy-net")
    with pytest.raises(AssertionError):  # no `shipped`: computed
        C.cached("toy", {"k": 1}, no_training, tmp_path / "c")
    with pytest.raises(AssertionError):  # shipped as another stage
        C.cached("other", {"k": 1}, no_training, tmp_path / "c", shipped="toy-net")


def test_changed_or_missing_shipped_file_is_refused(tmp_path):
    C.cached("toy", {"k": 1}, make_toy, tmp_path / "a")
    out = C.ship_artifact("toy", {"k": 1}, tmp_path / "a", "toy-net", tmp_path / "assets")
    (out / "meta.json").write_text('{"made": "later"}')
    with pytest.raises(ValueError, match="meta.json is corrupted.*make pretrained"):
        C.shipped_artifact("toy-net", "toy", {"k": 1}, tmp_path / "assets")
    (out / "meta.json").unlink()
    with pytest.raises(ValueError, match="meta.json is missing"):
        C.shipped_artifact("toy-net", "toy", {"k": 1}, tmp_path / "assets")
    for name in ("artifact.json", "SHA256SUMS"):  # deleting the stamp or the manifest does not switch the check off
        out = C.ship_artifact("toy", {"k": 1}, tmp_path / "a", "toy-net", tmp_path / "assets")
        (out / name).unlink()
        with pytest.raises((FileNotFoundError, ValueError), match=name):
            C.shipped_artifact("toy-net", "toy", {"k": 1}, tmp_path / "assets")
    shutil.rmtree(out)
    with pytest.raises(FileNotFoundError, match="toy-net is missing"):  # a shipped folder gone: an error, not training
        C.shipped_artifact("toy-net", "toy", {"k": 1}, tmp_path / "assets")


def test_ship_needs_a_finished_cache_entry(tmp_path):
    with pytest.raises(FileNotFoundError, match="compute it first"):
        C.ship_artifact("toy", {"k": 9}, tmp_path, "toy-net", tmp_path / "assets")
