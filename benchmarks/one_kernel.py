"""`spurnb reproduce --one-kernel` against a kernel per notebook: the paper-profile test's Waterbirds notebooks (tiny
random models, real-format fixture data; tests/test_paper_profile.py), one thread, run one way and then the other.
Prints CPU and wall seconds of each and whether their results.json numbers and figure files agree.
Usage: python benchmarks/one_kernel.py [WORK_DIR] >> benchmarks/one_kernel.txt   (about 10 minutes on 2 cores)"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from paper_fixtures import build_all  # noqa: E402
from test_paper_profile import NOTEBOOKS, TINY  # noqa: E402

work = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/spurnb-one-kernel")
shutil.rmtree(work, ignore_errors=True)
built = build_all(work / "fixtures", n=3)
ds = "waterbirds"
sets = [f"{k}={json.dumps(v)}" for k, v in {**TINY, "data.name": ds, "data.root": built[f"{ds.upper()}_ROOT"]}.items()]


def run(name: str, extra: list[str]) -> tuple[Path, str]:
    "The notebooks in a fresh copy of the project with an empty cache; its figures folder and a line of costs."
    proj = work / name
    for part in ("nbs", "spurnb"):
        shutil.copytree(ROOT / part, proj / part, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "settings.ini", proj / "settings.ini")
    env = {**os.environ, **{k: built[k] for k in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TORCH_HOME")},
           "SPURNB_JOBS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(proj), "SPURNB_CACHE": str(work / f"cache-{name}")}
    env.pop("SPURNB_PROFILE", None)
    before = os.times()
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "spurnb.reproduce", "reproduce", "--profile", "paper", "--seeds", "0",
                        "--only", *NOTEBOOKS[ds], *extra, "--set", *sets], cwd=proj, env=env, capture_output=True, text=True)
    wall, after = time.perf_counter() - t0, os.times()
    assert r.returncode == 0, r.stderr[-3000:]
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return proj / "figures" / "paper" / ds, f"{name:<12} {cpu:6.0f} CPU-s {wall:6.0f} s wall"


def numbers(figures: Path) -> dict:
    "results.json without what differs between runs of the same code (timings, commit, measured seconds)."
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("timings_s", "commit", "seconds", "load_s")}
        return x
    return strip(json.loads((figures / "results.json").read_text()))


fresh, line_fresh = run("per-notebook", [])
one, line_one = run("one-kernel", ["--one-kernel"])
files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file() and p.name != "results.json")
same = [f for f in files if (fresh / f).read_bytes() == (one / f).read_bytes()]
cpu = subprocess.run(["grep", "-m1", "model name", "/proc/cpuinfo"], capture_output=True, text=True).stdout.split(":")[-1].strip()
print(f"# {time.strftime('%F %H:%M', time.gmtime())} UTC, commit "
      f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}, "
      f"{os.cpu_count()} cores ({cpu}); {len(NOTEBOOKS[ds])} notebooks of the paper test on {ds}, one thread")
print(line_fresh)
print(line_one)
print(f"results.json numbers equal: {numbers(fresh) == numbers(one)}; figure files byte-identical: {len(same)} of {len(files)}")
