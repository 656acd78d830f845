"Cross-stage tests of the `spurnb reproduce` runner on throw-away notebooks."
import json
import os
import subprocess
import sys

import pytest

from spurnb.reproduce import NotebookFailed, notebook_parameters, reproduce, stage_notebooks


def _nb(cells):
    "A minimal notebook from (source, tags) pairs."
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags},
                       "outputs": [], "source": src} for i, (src, tags) in enumerate(cells)],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "settings.ini").write_text("[DEFAULT]\n")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    params = ('profile: str = "cpu"  # profile\nseeds: list = [0]  # seeds', ["parameters"])
    (nbs / "00_index.ipynb").write_text(json.dumps(_nb([("print('no parameters')", [])])))
    (nbs / "03_ok.ipynb").write_text(json.dumps(_nb([params, ("open('ran_ok.txt', 'w').write(profile + str(seeds))", [])])))
    (nbs / "02_fail.ipynb").write_text(json.dumps(_nb([params, ("x = 1", []), ("raise RuntimeError('boom')", [])])))
    return tmp_path


def test_stage_discovery(project):
    stages = stage_notebooks(project / "nbs")
    assert list(stages) == ["02", "03"]  # 00_index has no parameters cell
    assert notebook_parameters(stages["03"]) == ["profile", "seeds"]


def test_runs_in_order_and_passes_parameters(project):
    times = reproduce("smoke", only=["03"], seeds=[4, 5], root=project)
    assert list(times) == ["03_ok"]
    assert (project / "nbs" / "ran_ok.txt").read_text() == "smoke[4, 5]"
    assert (project / "runs" / "smoke" / "03_ok.ipynb").exists()
    res = json.loads((project / "figures" / "smoke" / "results.json").read_text())
    assert res["profile"] == "smoke" and res["seeds"] == [4, 5] and "03_ok" in res["timings_s"]


def test_failure_names_notebook_and_cell(project):
    with pytest.raises(NotebookFailed) as e:
        reproduce("smoke", root=project)
    msg = str(e.value)
    assert "02_fail.ipynb" in msg and "cell 3 (\"raise RuntimeError('boom')\")" in msg and "RuntimeError: boom" in msg


def test_bad_arguments_are_one_line_errors(project):
    for args in (["reproduce", "--profile", "gpu"], ["reproduce", "--only"], ["frobnicate"]):
        r = subprocess.run([sys.executable, "-c", "from spurnb.reproduce import main; raise SystemExit(main())", *args],
                           capture_output=True, text=True, cwd=project)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    r = subprocess.run([sys.executable, "-c", "from spurnb.reproduce import main; raise SystemExit(main())",
                        "reproduce", "--profile", "smoke", "--only", "07"], capture_output=True, text=True, cwd=project)
    assert r.returncode == 1 and "unknown notebook number(s) 07" in r.stderr


def test_kernels_run_quiet_and_at_144_dpi(project):
    nb = project / "nbs" / "04_env.ipynb"
    params = ('profile: str = "cpu"  # profile', ["parameters"])
    nb.write_text(json.dumps(_nb([params, ("import os, matplotlib\nfrom tqdm.auto import tqdm\n"
                                           "print(os.environ.get('TQDM_DISABLE'), matplotlib.rcParams['figure.dpi'])", [])])))
    before = {k: os.environ.get(k) for k in ("TQDM_DISABLE", "MATPLOTLIBRC")}
    reproduce("smoke", only=["04"], root=project)
    out = json.loads((project / "runs" / "smoke" / "04_env.ipynb").read_text())["cells"][-1]["outputs"]
    assert len(out) == 1 and "".join(out[0]["text"]).strip() == "1 144.0", out  # no "IProgress not found" on stderr
    assert {k: os.environ.get(k) for k in before} == before  # restored: the runner's own bar still shows


def test_no_ablations_flag_is_a_config_override(monkeypatch):
    import spurnb.reproduce as rp

    seen = {}
    monkeypatch.setattr(rp, "reproduce", lambda profile, only, seeds, overrides, one_kernel: seen.update(
        profile=profile, overrides=overrides, one_kernel=one_kernel) or {})
    assert rp.main(["reproduce", "--profile", "cpu", "--no-ablations", "--set", "erm.epochs=3"]) == 0
    assert seen == {"profile": "cpu", "overrides": {"erm.epochs": 3, "ddb.ablations": False}, "one_kernel": False}
    assert rp.main(["reproduce", "--profile", "cpu", "--one-kernel"]) == 0 and seen["one_kernel"] is True


def test_lesson_profile_turns_ablations_off_and_others_keep_them():
    from spurnb.config import get_config

    assert get_config("lesson")["ddb"]["ablations"] is False
    assert all(get_config(p)["ddb"]["ablations"] is True for p in ("smoke", "cpu", "paper"))
    from pathlib import Path

    src = json.dumps(json.load(open(Path(__file__).resolve().parents[1] / "nbs" / "09_retrain.ipynb")))
    assert 'ablations = dd[\\"ablations\\"] if ablations is None else ablations' in src
