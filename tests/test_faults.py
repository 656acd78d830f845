"""Faults: killed runs, dead kernels and failed notebooks leave no process running and no tracked file changed; two
runs at once on one project and cache compute each entry once and keep both runs' keys; a smoke run under `accelerate
launch` with two processes makes what one process makes, and one killed with -9 in ERM, inversion and DDB retraining
resumes to the same results; a damaged cache entry is recomputed."""
import hashlib
import json
import os
import re
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


def _start(proj: Path, args: list, tag: str, launcher: list | None = None, **env) -> subprocess.Popen:
    "`spurnb reproduce ...` (after `launcher`, e.g. `accelerate launch ...`) in its own process group, every process it starts tagged with `tag`; output to a log file."
    e = {**os.environ, "FAULT_TAG": tag, "PYTHONPATH": str(proj), **env}
    e.pop("SPURNB_PROFILE", None)
    log = proj.parent / f"{proj.name}-{tag}.log"  # a file, not a pipe: a full pipe would stall a slow run's progress bars
    with open(log, "w") as f:
        run = subprocess.Popen([*(launcher or CLI), "reproduce", *args], cwd=proj, env=e, stdout=f, stderr=subprocess.STDOUT,
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
    assert not list((project / "runs" / "smoke").glob(".staging*"))


def test_two_concurrent_runs_compute_each_entry_once_and_keep_both_runs_keys(project):
    "Two `spurnb reproduce --profile smoke` runs at once on one project and cache: each wants the same slow cache entry."
    def stage(name):
        return ("import os, time\nfrom spurnb.config import cached, get_config, run_paths, update_results\n"
                "paths = run_paths(get_config('smoke'))\n"
                "def compute():\n"
                "    open('../computed', 'a').write(f'{os.getpid()}\\n')\n"
                "    time.sleep(3)\n"
                "    return {'meta': {'value': 7}}\n"
                "art = cached('shared', {'k': 1}, compute, paths['cache'])\n"
                f"update_results(paths['figures'] / 'results.json', {{'{name}': art['meta']['value']}})", [])

    for nb in (project / "nbs").glob("*.ipynb"):
        nb.unlink()
    (project / "nbs" / "02_a.ipynb").write_text(json.dumps(_nb([PARAMS, stage("a")])))
    (project / "nbs" / "03_b.ipynb").write_text(json.dumps(_nb([PARAMS, stage("b")])))
    cache = project / "cache"
    runs = [_start(project, ["--profile", "smoke", "--only", only], uuid.uuid4().hex, SPURNB_CACHE=str(cache))
            for only in ("02", "03")]
    for r in runs:
        err = _finish(r)
        assert r.returncode == 0, err[-3000:]
    assert len((project / "computed").read_text().split()) == 1  # one run computed the entry, the other read it
    res = json.loads((project / "figures" / "smoke" / "results.json").read_text())
    assert res["a"] == res["b"] == 7 and res["kept"] == 1  # both runs' keys, and what was there before
    assert {"02_a", "03_b"} <= set(res["timings_s"])
    assert not list((project / "runs" / "smoke").glob(".staging*"))


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


# ---------------------------------------------------------------- real smoke runs: two processes, and killed ones
# ERM and the oracle (03), textual inversion (05), inpainting (07: it also makes the segmenter's masks), DDB (09: it
# also makes the pruning scores); one seed, no ablations; one kernel per process (a kernel each would import torch and
# spurnb again for every notebook). 06 and 08 only draw their stages' figures: left out, make test's budget is tight
SMOKE = ["--profile", "smoke", "--only", "03", "05", "07", "09", "--seeds", "0", "--no-ablations", "--one-kernel"]
# the stages killed and resumed below, and where each keeps its checkpoint while it computes
KILLS = {"erm": "erm/*.work/fit-*.pt", "inversion": "inversion/*.work/inversion-*.pt", "ddb": "ddb/*.work/fit-*.pt"}
# the cache entries the one-process runs make again (the rest, trained once and not under test, is copied)
REMADE = ["erm", "inversion", "majority_masks", "generated", "inpaint_parts", "prune_scores", "ddb"]


def _copy_project(dest: Path) -> Path:
    "The notebooks and package in `dest`, so that runs write nothing into the checkout."
    for part in ("nbs", "spurnb"):
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "settings.ini", dest / "settings.ini")
    return dest


TIMING = re.compile(r"^(timings_s|commit|seconds)$|_s$|_minutes$|_s_per_image$")  # what differs between runs


def _numbers(proj: Path) -> dict:
    "results.json without what differs between runs of the same code: the commit, and timings at any depth."
    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if not TIMING.search(k)}

    return strip(json.loads((proj / "figures" / "smoke" / "results.json").read_text()))


def _accelerate(port: int) -> list[str]:
    "`accelerate launch` with two processes (through torchrun: --multi_gpu; without GPUs they share the CPU over gloo)."
    return [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
            "-m", "spurnb.reproduce"]


def _kill_when(run: subprocess.Popen, tag: str, pattern: Path, seconds: float = 900) -> None:
    "kill -9 every process of `run` as soon as a file matching `pattern` exists (a checkpoint: the stage is under way)."
    end = time.time() + seconds
    while not list(pattern.parent.parent.glob(f"{pattern.parent.name}/{pattern.name}")):
        assert time.time() < end and run.poll() is None, f"the run ended before {pattern} appeared"
        time.sleep(0.1)
    for pid in [run.pid, *_tagged(tag)]:  # at once, as a job scheduler or the OOM killer does
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _finish(run)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """An uninterrupted smoke run under `accelerate launch` with two processes; then one process on a copy of its
    cache without the entries under test, killed with -9 in an ERM training, then in the textual inversion, then in
    the DDB retraining, each time rerun; the last rerun finishes."""
    import socket

    out = tmp_path_factory.mktemp("faults")
    # every training runs in its kernel (no worker pools: four runs of worker imports cost ~80 CPU-s, and killed
    # workers are tested above, on `project`'s busy workers)
    env = {"SPURNB_JOBS": "1"}
    whole = _copy_project(out / "whole")
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    r = _start(whole, SMOKE, uuid.uuid4().hex, launcher=_accelerate(port), SPURNB_CACHE=str(out / "cache-whole"), **env)
    whole_log = _finish(r)
    assert r.returncode == 0, whole_log[-3000:]
    whole_log += "".join(p.read_text() for p in (whole / "runs" / "smoke").rglob("*.ipynb"))
    killed, cache = _copy_project(out / "killed"), out / "cache-killed"
    shutil.copytree(out / "cache-whole", cache, ignore=lambda d, names: REMADE if Path(d) == out / "cache-whole" else [])
    survivors, published, logs = [], [], {}

    def shown(run) -> str:  # what a run printed, and its executed notebooks (the kernel's messages are in them)
        return run.log.read_text() + "".join(p.read_text() for p in sorted((killed / "runs" / "smoke").glob("*.ipynb")))

    for stage, pattern in KILLS.items():
        tag = uuid.uuid4().hex
        r = _start(killed, SMOKE, tag, SPURNB_CACHE=str(cache), **env)
        _kill_when(r, tag, cache / pattern)
        survivors += _wait_gone(tag)
        published.append((killed / "figures" / "smoke" / "results.json").exists())
        logs[f"killed in {stage}"] = shown(r)
    rerun = _start(killed, SMOKE, uuid.uuid4().hex, SPURNB_CACHE=str(cache), **env)
    err = _finish(rerun)
    assert rerun.returncode == 0, err[-3000:]
    logs["done"] = shown(rerun)
    return {"whole": whole, "killed": killed, "survivors": survivors, "published": published, "cache": cache,
            "env": env, "logs": logs, "whole_log": whole_log}


def test_two_processes_make_what_one_makes(smoke_runs):
    "`accelerate launch` with two processes against one process (the killed and resumed runs), number for number."
    log = smoke_runs["whole_log"]
    assert "oracle: process 0 of 2 computed job(s) [0] of 2" in log  # 03's two trainings, one per process
    assert "oracle: process 1 of 2 computed job(s) [1] of 2" in log
    assert "inpainting: process 0 of 2 generates" in log and "inpainting: process 1 of 2 generates" in log
    assert "inversion: process 0 of 2 learns class(es) [0] of [0, 1]" in log  # one class each
    assert "inversion: process 1 of 2 learns class(es) [1] of [0, 1]" in log
    assert not (smoke_runs["whole"] / "runs" / "smoke" / ".staging").exists()
    assert (smoke_runs["whole"] / "runs" / "smoke" / "process-1" / "09_retrain.ipynb").exists()
    # the same code on the same data, each training at one thread (OMP_NUM_THREADS=1 in make test) in either case:
    # equal to the last digit (with other thread counts, float sums in another order would differ in late digits)
    assert _numbers(smoke_runs["killed"]) == _numbers(smoke_runs["whole"])


def test_kill_mid_stage_then_rerun_gives_the_same_results(smoke_runs):
    assert smoke_runs["survivors"] == []
    assert smoke_runs["published"] == [False, False, False]  # no killed run published anything
    logs = smoke_runs["logs"]
    # each rerun went on from the killed computation's checkpoint (the next run, killed or not, resumed it)
    assert re.search(r"fit-erm_seed=0_\.pt: resuming after epoch [1-9]", logs["killed in inversion"])
    assert re.search(r"inversion-[0-9-]+\.pt: resuming after step [1-9]", logs["killed in ddb"])
    assert re.search(r"fit-ddb_seed=0_\.pt: resuming after epoch [1-9]", logs["done"])
    assert _numbers(smoke_runs["killed"]) == _numbers(smoke_runs["whole"])


def test_a_flipped_byte_in_a_cache_entry_is_recomputed(smoke_runs):
    proj, cache = smoke_runs["killed"], smoke_runs["cache"]
    entry = sorted((cache / "erm").glob("*/tensors.safetensors"))[0]
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x10
    entry.write_bytes(bytes(data))
    r = _start(proj, ["--profile", "smoke", "--only", "03", "--seeds", "0"], uuid.uuid4().hex, SPURNB_CACHE=str(cache), **smoke_runs["env"])
    err = _finish(r)
    assert r.returncode == 0, err
    # the warning shows in the executed notebook, or on the terminal when a worker process read the entry
    shown = (proj / "runs" / "smoke" / "03_erm.ipynb").read_text() + err
    assert "CacheWarning" in shown and f"cache entry {entry.parent} is broken and is recomputed" in shown
    assert hashlib.sha256(entry.read_bytes()).hexdigest() != hashlib.sha256(bytes(data)).hexdigest()  # rewritten
    assert _numbers(proj) == _numbers(smoke_runs["whole"])
