"""Bad input to the `spurnb reproduce` command: each is a one-line error naming the key, value, variable or path,
given before any notebook runs, and no file under figures/ changes."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "spurnb.reproduce"]


def _nb(cells):
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags},
                       "outputs": [], "source": src} for i, (src, tags) in enumerate(cells)],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def project(tmp_path):
    "A throw-away project with one notebook that records that it ran, and a tracked figures/smoke/results.json."
    proj = tmp_path / "proj"
    (proj / "nbs").mkdir(parents=True)
    (proj / "settings.ini").write_text("[DEFAULT]\n")
    params = ('profile: str = "cpu"\nseeds: list = [0]\noverrides: dict = {}', ["parameters"])
    (proj / "nbs" / "01_ran.ipynb").write_text(json.dumps(_nb([params, ("open('ran.txt', 'w').write(str(seeds))", [])])))
    (proj / "figures" / "smoke").mkdir(parents=True)
    (proj / "figures" / "smoke" / "results.json").write_text('{"profile": "smoke", "seeds": [0, 1, 2]}\n')
    return proj


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(args, cwd, **env):
    e = {**os.environ, **env}
    e.pop("SPURNB_PROFILE", None)
    e = {k: v for k, v in e.items() if v is not None}
    return subprocess.run([*CLI, *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=300)


def _one_line_error(r, *words):
    "The command failed with exactly one stderr line that names every one of `words`."
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert r.returncode in (1, 2) and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("spurnb: error:") and all(w in lines[0] for w in words), (words, lines[0])


BAD_ARGS = {
    "negative seed": (["--only", "01", "--seeds", "-1"], ["'seeds'", "-1"]),
    "huge seed": (["--seeds", str(2**32)], ["'seeds'"]),
    "text for a size": (["--set", "data.size=abc"], ["'data.size'", "whole number", "'abc'"]),
    "fractional epochs": (["--set", "erm.epochs=2.5"], ["'erm.epochs'", "2.5"]),
    "negative epochs": (["--set", "erm.epochs=-3"], ["'erm.epochs'", "at least 1"]),
    "unknown key": (["--set", "erm.epoch=3"], ["unknown config key 'erm.epoch'"]),
    "unknown choice": (["--set", "erm.arch=vgg"], ["'erm.arch'", "resnet_small"]),
    "share above 1": (["--set", "ddb.prune.P=2"], ["'ddb.prune.P'", "between 0 and 1"]),
    "malformed override": (["--set", "erm.epochs"], ["key=value"]),
    "unknown notebook": (["--only", "99"], ["unknown notebook number(s) 99"]),
    "unknown profile": (["--profile", "gpu"], ["gpu"]),
}


@pytest.mark.parametrize("case", BAD_ARGS)
def test_bad_arguments(project, case):
    args, words = BAD_ARGS[case]
    before = _snapshot(project / "figures")
    r = _run(["reproduce", "--profile", "smoke", *args], project)
    _one_line_error(r, *words)
    assert _snapshot(project / "figures") == before and not (project / "nbs" / "ran.txt").exists()


BAD_ENV = {
    "empty cache": ({"SPURNB_CACHE": ""}, ["SPURNB_CACHE", "empty"]),
    "jobs not a number": ({"SPURNB_JOBS": "two"}, ["SPURNB_JOBS", "'two'"]),
    "misspelt variable": ({"SPURNB_JOB": "2"}, ["SPURNB_JOB;", "SPURNB_JOBS"]),
    "unknown profile variable": ({"SPURNB_PROFILE_": "x"}, ["SPURNB_PROFILE_"]),
}


@pytest.mark.parametrize("case", BAD_ENV)
def test_bad_environment(project, case):
    env, words = BAD_ENV[case]
    before = _snapshot(project / "figures")
    r = _run(["reproduce", "--profile", "smoke"], project, **env)
    _one_line_error(r, *words)
    assert _snapshot(project / "figures") == before and not (project / "nbs" / "ran.txt").exists()


def test_outside_a_project_is_an_error_and_writes_nothing(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _run(["reproduce", "--profile", "smoke"], elsewhere)
    _one_line_error(r, "no spurnb project at or above", str(elsewhere))
    assert list(elsewhere.iterdir()) == []


def test_truncated_results_json_is_named(project):
    f = project / "figures" / "smoke" / "results.json"
    f.write_text('{"profile": "smo')
    r = _run(["reproduce", "--profile", "smoke", "--only", "01"], project)
    _one_line_error(r, str(f), "not valid JSON")
    assert f.read_text() == '{"profile": "smo'


def test_relative_data_root_is_read_from_the_current_folder(project):
    sub = project / "somewhere"
    sub.mkdir()
    r = _run(["reproduce", "--profile", "paper", "--set", "data.name=celeba", "data.root=my/celeba"], sub)
    _one_line_error(r, "data.root", str(sub / "my" / "celeba"))


def test_python_m_works_like_the_command_and_seeds_are_honoured(project):
    r = _run(["reproduce", "--profile", "smoke", "--seeds", "3", "4"], project)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (project / "nbs" / "ran.txt").read_text() == "[3, 4]"
    doc = json.loads((project / "figures" / "smoke" / "results.json").read_text())
    assert doc["seeds"] == [3, 4] and "01_ran" in doc["timings_s"]
    r = _run(["--help"], project)
    assert r.returncode == 0 and "reproduce" in r.stdout
