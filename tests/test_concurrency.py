"""Several processes on one cache and one results.json (two runs, or run_jobs' workers): a cache entry is computed
once, the others wait for it and read it; concurrent results.json updates lose no key."""
import json
import subprocess
import sys
from pathlib import Path

COMPUTE_ONCE = """
import json, os, sys, time
import numpy as np
from spurnb.config import cached

def compute():
    with open(sys.argv[2], "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(1.5)  # long enough for the other processes to ask for the same entry meanwhile
    return {"arrays": {"x": np.arange(5) * os.getpid()}, "meta": {"pid": os.getpid()}}

art = cached("toy", {"k": 1}, compute, sys.argv[1])
print(json.dumps({"pid": art["meta"]["pid"], "x": art["arrays"]["x"].tolist()}))
"""

UPDATE = """
import sys
from spurnb.config import update_results
for j in range(25):
    update_results(sys.argv[1], {"by": {f"w{sys.argv[2]}": {f"k{j}": j}}})
"""


def _start(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_cache_entry_is_computed_once_by_concurrent_processes(tmp_path):
    log = tmp_path / "computed.txt"
    procs = [_start(COMPUTE_ONCE, tmp_path / "cache", log) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len(log.read_text().split()) == 1  # one process computed it
    results = [json.loads(o) for o, _ in outs]
    assert all(r == results[0] for r in results)  # the others read that very entry
    assert any("waiting for another process: computing cache entry" in e for _, e in outs)


def test_concurrent_results_updates_lose_no_key(tmp_path):
    path = tmp_path / "figures" / "results.json"
    procs = [_start(UPDATE, path, i) for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    doc = json.loads(path.read_text())
    assert doc["by"] == {f"w{i}": {f"k{j}": j for j in range(25)} for i in range(4)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]  # no lock or temporary file left beside it
