"""Faults: killed runs, dead kernels and failed notebooks leave no process running and no tracked file changed; a
killed smoke run resumes to the same results; a damaged cache entry is recomputed."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "spurnb.reproduce"]


def _nb(cells):
    "A minimal notebook from (source, tags) pairs."
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags},
                       "outputs": [], "source": src} for i, (src, tags) in enumerate(cells)],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


PARAMS = ('profile: str = "cpu"  # profile\nseeds: list = [0]  # seeds', ["parameters"])
WRITE = ("from spurnb.config import get_config, run_paths, update_results\n"
         "paths = run_paths(get_config('smoke'))\n"
         "update_results(paths['figures'] / 'results.json', {'written_by': 'notebook'})\n"
         "(paths['figures'] / 'table.md').write_text('new')\n"
         "from spurnb.config import output_path\n"
         "output_path('README.md').write_text('new readme')", [])


def _tagged(tag: str) -> list[int]:
    "PIDs of live processes whose environment holds FAULT_TAG=`tag` (everything a run started inherits it)."
    pids = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"FAULT_TAG={tag}".encode() in env.read_bytes().split(b"\0"):
                pids.append(int(env.parent.name))
        except OSError:
            pass
    return pids


def _wait_gone(tag: str, seconds: float = 120) -> list[int]:
    "Wait until no tagged process is left (`seconds` is a deadline for a stuck run); the survivors."
    end = time.time() + seconds
    while (left := _tagged(tag)) and time.time() < end:
        time.sleep(0.25)
    return left


def _snapshot(folder: Path) -> dict:
    "sha256 of every file below `folder`."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _as_on_a_terminal() -> None:
    "Give the command SIGINT's default action, as a terminal's foreground job has."
    # a suite started in the background (CI under `nohup ... &`) ignores SIGINT; every child inherits that, and
    # Ctrl-C would then do nothing
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(proj: Path, args: list, tag: str, **env) -> subprocess.Popen:
    "`spurnb reproduce ...` in its own process group, every process it starts tagged with `tag`; output to a log file."
    e = {**os.environ, "FAULT_TAG": tag, "PYTHONPATH": str(proj), **env}
    e.pop("SPURNB_PROFILE", None)
    log = proj.parent / f"{proj.name}-{tag}.log"  # a file, not a pipe: a full pipe would stall a slow run's progress bars
    with open(log, "w") as f:
        run = subprocess.Popen([*CLI, "reproduce", *args], cwd=proj, env=e, stdout=f, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True, preexec_fn=_as_on_a_terminal)
    run.log = log
    return run


def _finish(run: subprocess.Popen, seconds: float = 1200) -> str:
    "Wait for `run` (a deadline for a stuck run, not a wait) and return what it printed."
    run.wait(seconds)
    return run.log.read_text()


@pytest.fixture
def project(tmp_path):
    "A throw-away project whose notebook keeps two run_jobs workers busy, with a tracked figures/smoke."
    (tmp_path / "settings.ini").write_text("[DEFAULT]\n")
    (tmp_path / "nbs").mkdir()
    (tmp_path / "busyjob.py").write_text(  # importable by the workers (PYTHONPATH is the project)
        "import time\nfrom pathlib import Path\n\ndef work(marker):\n"
        "    Path(marker).write_text('1')\n    time.sleep(300)\n")
    busy = ("from spurnb.config import run_jobs\nfrom busyjob import work\n"
            f"run_jobs(work, [('{tmp_path}/working-0',), ('{tmp_path}/working-1',)], jobs=2)", [])
    (tmp_path / "nbs" / "01_write.ipynb").write_text(json.dumps(_nb([PARAMS, WRITE])))
    (tmp_path / "nbs" / "02_busy.ipynb").write_text(json.dumps(_nb([PARAMS, busy])))
    (tmp_path / "figures" / "smoke").mkdir(parents=True)
    (tmp_path / "figures" / "smoke" / "results.json").write_text('{"profile": "smoke", "kept": 1}\n')
    (tmp_path / "figures" / "smoke" / "table.md").write_text("old")
    (tmp_path / "README.md").write_text("old readme")
    return tmp_path


def _wait_for(path: Path, seconds: float = 600) -> None:
    "Return as soon as `path` exists; fail after `seconds` (a deadline for a stuck run, not a wait)."
    end = time.time() + seconds
    while not path.exists():
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.parametrize("how", ["group", "command", "ctrl-c", "kernel", "command --one-kernel", "kernel --one-kernel"])
def test_a_killed_run_leaves_no_process_and_no_changed_file(project, how):
    before = _snapshot(project / "figures"), (project / "README.md").read_text()
    tag = uuid.uuid4().hex
    how, *extra = how.split()
    run = _start(project, ["--profile", "smoke", "--seeds", "0", *extra], tag)
    for marker in ("working-0", "working-1"):  # the two workers are in their jobs
        _wait_for(project / marker)
    assert len(_tagged(tag)) >= 4  # the command, its kernel, two workers (and multiprocessing's resource tracker)
    if how == "group":  # kill -9 of the command's process group
        os.killpg(run.pid, signal.SIGKILL)
    elif how == "command":  # plain `kill`: stops like Ctrl-C
        run.send_signal(signal.SIGTERM)
    elif how == "ctrl-c":  # what a terminal sends its foreground process group
        os.killpg(run.pid, signal.SIGINT)
    else:  # the kernel alone dies (as when the machine runs out of memory)
        kernel = [p for p in _tagged(tag) if b"ipykernel" in Path(f"/proc/{p}/cmdline").read_bytes()]
        os.kill(kernel[0], signal.SIGKILL)
    err = _finish(run)
    assert _wait_gone(tag) == [], "processes outlived the run"
    # notebook 01 ran, but nothing is published from a failed run
    assert (_snapshot(project / "figures"), (project / "README.md").read_text()) == before
    if how == "kernel":
        ours = [l for l in err.splitlines() if l.startswith("spurnb: error:")]  # (the orphaned resource tracker
        assert run.returncode == 1 and len(ours) == 1 and ours[0].startswith(  # may warn after it, on the terminal)
            "spurnb: error: 02_busy.ipynb: the kernel died in cell 2 ('from spurnb.config import run_jobs')"), err
    if how in ("command", "ctrl-c"):
        assert run.returncode == 130 and "spurnb: interrupted; figures/ unchanged" in err, err[-3000:]


def test_failed_notebook_publishes_nothing_then_a_good_run_does(project):
    before = _snapshot(project / "figures")
    (project / "nbs" / "02_busy.ipynb").write_text(json.dumps(_nb([PARAMS, ("raise RuntimeError('boom')", [])])))
    r = subprocess.run([*CLI, "reproduce", "--profile", "smoke"], cwd=project, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(project)})
    assert r.returncode == 1 and "02_busy.ipynb failed in cell 2" in r.stderr and "figures/ unchanged" in r.stderr
    assert _snapshot(project / "figures") == before and (project / "README.md").read_text() == "old readme"
    (project / "nbs" / "02_busy.ipynb").unlink()
    r = subprocess.run([*CLI, "reproduce", "--profile", "smoke", "--only", "01"], cwd=project, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(project)})
    assert r.returncode == 0, r.stderr
    res = json.loads((project / "figures" / "smoke" / "results.json").read_text())
    assert res["kept"] == 1 and res["written_by"] == "notebook" and res["seeds"] == [0] and "01_write" in res["timings_s"]
    assert (project / "figures" / "smoke" / "table.md").read_text() == "new"
    assert (project / "README.md").read_text() == "new readme"
    assert not (project / "runs" / "smoke" / ".staging").exists()


def test_one_kernel_starts_every_notebook_as_a_fresh_kernel_would(project):
    "`--one-kernel`: one kernel process for the run, but no variable or working folder carried into the next notebook."
    first = ("import os\nleftover = 1\n"
             "open('../pids', 'a').write(f'{os.getpid()}\\n')\nos.chdir('/')", [])
    second = ("import os\nassert 'leftover' not in globals() and __spec__ is None  # (multiprocessing reads __spec__)\n"
              "assert os.path.basename(os.getcwd()) == 'nbs', os.getcwd()\nopen('../pids', 'a').write(f'{os.getpid()}\\n')", [])
    for nb in (project / "nbs").glob("*.ipynb"):
        nb.unlink()
    (project / "nbs" / "02_first.ipynb").write_text(json.dumps(_nb([PARAMS, first])))
    (project / "nbs" / "03_second.ipynb").write_text(json.dumps(_nb([PARAMS, second])))
    tag = uuid.uuid4().hex
    r = _start(project, ["--profile", "smoke", "--one-kernel"], tag)
    err = _finish(r)
    assert r.returncode == 0, err[-3000:]
    pids = (project / "pids").read_text().split()
    assert len(pids) == 2 and pids[0] == pids[1]  # one kernel ran both
    assert _wait_gone(tag) == []  # and was shut down with the run


# ---------------------------------------------------------------- a real smoke run, killed and resumed
SMOKE = ["--profile", "smoke", "--only", "03", "--seeds", "0"]  # ERM and the oracle: two trainings


def _copy_project(dest: Path) -> Path:
    "The notebooks and package in `dest`, so that runs write nothing into the checkout."
    for part in ("nbs", "spurnb"):
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "settings.ini", dest / "settings.ini")
    return dest


def _numbers(proj: Path) -> dict:
    "results.json without what differs between runs of the same code (timings, commit)."
    doc = json.loads((proj / "figures" / "smoke" / "results.json").read_text())
    return {k: v for k, v in doc.items() if k not in ("timings_s", "commit")}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    "An uninterrupted smoke run of 03 (ERM and oracle), and one killed in its training and rerun."
    out = tmp_path_factory.mktemp("faults")
    # the trainings run in the kernel, one after the other: four runs with two worker processes each cost ~80 CPU-s of
    # imports, and workers killed with their run are tested above (`project`'s busy workers)
    env = {"SPURNB_JOBS": "1"}
    whole = _copy_project(out / "whole")
    r = _start(whole, SMOKE, uuid.uuid4().hex, SPURNB_CACHE=str(out / "cache-whole"), **env)
    err = _finish(r)
    assert r.returncode == 0, err[-3000:]
    killed = _copy_project(out / "killed")
    tag, cache = uuid.uuid4().hex, out / "cache-killed"
    # the killed run starts with the whole run's world pretraining (not what is tested), without its two trainings
    shutil.copytree(out / "cache-whole", cache, ignore=lambda d, names: ["erm"] if Path(d) == out / "cache-whole" else [])
    r = _start(killed, SMOKE, tag, SPURNB_CACHE=str(cache), **env)
    end = time.time() + 600
    # a training has finished its first epoch (its checkpoint is written) and goes on with the second: kill -9 then,
    # every process of the run at once (as a job scheduler or the OOM killer does; the kernel runs in a session of its
    # own, so a kill of the command's group alone leaves it a moment to finish the epoch)
    while not list((cache / "erm").glob("*.work/fit-*.pt")):
        assert time.time() < end and r.poll() is None, "the run ended before a training checkpointed"
        time.sleep(0.1)
    for pid in [r.pid, *_tagged(tag)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _finish(r)
    survivors = _wait_gone(tag)
    figures_after_kill = (killed / "figures" / "smoke" / "results.json").exists()
    rerun = _start(killed, SMOKE, uuid.uuid4().hex, SPURNB_CACHE=str(cache), **env)
    err = _finish(rerun)
    assert rerun.returncode == 0, err[-3000:]
    return {"whole": whole, "killed": killed, "survivors": survivors, "figures_after_kill": figures_after_kill,
            "cache": cache, "env": env, "rerun_log": err + (killed / "runs" / "smoke" / "03_erm.ipynb").read_text()}


def test_kill_mid_training_then_rerun_gives_the_same_results(smoke_runs):
    assert smoke_runs["survivors"] == []
    assert not smoke_runs["figures_after_kill"]  # the killed run published nothing
    assert "resuming after epoch 1" in smoke_runs["rerun_log"]  # the rerun went on from the killed training's checkpoint
    assert _numbers(smoke_runs["killed"]) == _numbers(smoke_runs["whole"])


def test_a_flipped_byte_in_a_cache_entry_is_recomputed(smoke_runs):
    proj, cache = smoke_runs["killed"], smoke_runs["cache"]
    entry = sorted((cache / "erm").glob("*/tensors.safetensors"))[0]
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x10
    entry.write_bytes(bytes(data))
    r = _start(proj, SMOKE, uuid.uuid4().hex, SPURNB_CACHE=str(cache), **smoke_runs["env"])
    err = _finish(r)
    assert r.returncode == 0, err
    # the warning shows in the executed notebook, or on the terminal when a worker process read the entry
    shown = (proj / "runs" / "smoke" / "03_erm.ipynb").read_text() + err
    assert "CacheWarning" in shown and f"cache entry {entry.parent} is broken and is recomputed" in shown
    assert hashlib.sha256(entry.read_bytes()).hexdigest() != hashlib.sha256(bytes(data)).hexdigest()  # rewritten
    assert _numbers(proj) == _numbers(smoke_runs["whole"])
