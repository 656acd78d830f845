"""How far two cpu-profile runs' test WGAs lie apart, per method and seed, and which gaps between methods in the newer
run are larger than that spread. Each argument is a git revision whose figures/cpu/results.json is read, or a path.
Usage: .venv/bin/python benchmarks/run_to_run.py REV_OR_FILE_A REV_OR_FILE_B [label] >> benchmarks/run_to_run.txt"""
import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np


def load(where: str) -> dict:
    "results.json from a file, or figures/cpu/results.json at a git revision."
    if Path(where).exists():
        return json.loads(Path(where).read_text())
    out = subprocess.run(["git", "show", f"{where}:figures/cpu/results.json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


if __name__ == "__main__":
    a, b = load(sys.argv[1]), load(sys.argv[2])
    label = sys.argv[3] if len(sys.argv) > 3 else ""
    print(f"# run A: commit {a['commit'][:7]} ({sys.argv[1]}); run B: commit {b['commit'][:7]} ({sys.argv[2]}) {label}")
    print("# test WGA (%) per seed in A and B; max |A - B| over seeds; difference of the seed means")
    spread_seed, spread_mean = 0.0, 0.0
    common = [m for m in b["methods"] if m in a["methods"] and len(a["methods"][m]["worst"]) == len(b["methods"][m]["worst"])]
    for m in common:
        wa, wb = 100 * np.array(a["methods"][m]["worst"]), 100 * np.array(b["methods"][m]["worst"])
        d, dm = np.abs(wa - wb).max(), wa.mean() - wb.mean()
        spread_seed, spread_mean = max(spread_seed, d), max(spread_mean, abs(dm))
        print(f"{m:22s} A {np.round(wa, 1).tolist()}  B {np.round(wb, 1).tolist()}  max|A-B| {d:.1f}  means {dm:+.1f}")
    print(f"# largest per-seed difference {spread_seed:.1f} points; largest difference of a method's mean {spread_mean:.1f}")
    means = {m: 100 * np.mean(b["methods"][m]["worst"]) for m in b["methods"]}
    larger = [f"{p} - {q} = {means[p] - means[q]:+.1f}" for p, q in combinations(sorted(means, key=means.get, reverse=True), 2)
              if abs(means[p] - means[q]) > 2 * spread_mean]
    pairs = len(means) * (len(means) - 1) // 2
    print(f"# gaps between B's method means larger than twice that ({2 * spread_mean:.1f} points), {len(larger)} of "
          f"{pairs} (the other {pairs - len(larger)} are within the run-to-run spread):")
    print("#   " + "; ".join(larger))
