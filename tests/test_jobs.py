"""`run_jobs`: independent cached jobs computed in worker processes, read back in order."""
import os

import pytest
import torch

import spurnb.config as C


def toy_artifact() -> dict:
    "An artifact that records which process made it."
    from tqdm.auto import tqdm

    bars = [tqdm(range(1)), tqdm(range(1), disable=False)]  # even a bar asked for explicitly stays off
    return {"meta": {"pid": os.getpid(), "threads": torch.get_num_threads(), "bars": any(not b.disable for b in bars)}}


def toy_failure() -> dict:
    raise ValueError("toy failure")


def test_workers_fill_the_cache_and_results_come_back_in_order(tmp_path):
    calls = [("toy", {"seed": s}, toy_artifact, tmp_path) for s in range(4)]
    got = C.run_jobs(C.cached, calls, jobs=2)
    assert len(got) == 4 and len(list((tmp_path / "toy").iterdir())) == 4
    assert all(a["meta"]["pid"] != os.getpid() for a in got)  # computed by the workers, read back here
    assert all(a["meta"]["threads"] == max(1, (os.cpu_count() or 1) // 2) for a in got)
    assert not any(a["meta"]["bars"] for a in got)  # only the parent draws a progress bar
    again = C.run_jobs(C.cached, calls, jobs=1)  # one process: the same artifacts, from the cache
    assert [a["meta"] for a in again] == [a["meta"] for a in got]


def test_an_incomplete_last_round_runs_here_with_every_thread(tmp_path):
    got = C.run_jobs(C.cached, [("toy", {"seed": s}, toy_artifact, tmp_path) for s in range(3)], jobs=2)
    assert [a["meta"]["pid"] == os.getpid() for a in got] == [False, False, True]
    assert got[2]["meta"]["threads"] == torch.get_num_threads()


def test_keyword_calls_and_shared_arguments(tmp_path):
    got = C.run_jobs(C.get_config, [{"profile": "smoke"}, {"profile": "cpu"}], jobs=2,
                     overrides={"erm.epochs": 7})
    assert [g["profile"] for g in got] == ["smoke", "cpu"] and all(g["erm"]["epochs"] == 7 for g in got)


def test_a_worker_error_is_raised_and_nothing_is_stored(tmp_path):
    with pytest.raises(ValueError, match="toy failure"):
        C.run_jobs(C.cached, [("toy", {"seed": s}, toy_failure, tmp_path) for s in range(2)], jobs=2)
    assert not (tmp_path / "toy").exists() or not any((tmp_path / "toy").iterdir())


def test_job_count(monkeypatch):
    monkeypatch.setenv("SPURNB_JOBS", "3")
    assert C.job_count("cpu") == 3
    monkeypatch.setenv("SPURNB_JOBS", "two")
    with pytest.raises(ValueError, match="SPURNB_JOBS"):
        C.job_count("cpu")
    monkeypatch.setenv("SPURNB_JOBS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        C.job_count("cpu")
    monkeypatch.setattr(C, "resolve_device", lambda name: torch.device("cuda"))
    assert C.job_count("auto") == 1  # one GPU: jobs run one after another
