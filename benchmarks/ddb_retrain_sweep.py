"""DDB retraining knobs on the cpu profile: validation and test WGA per setting, 3 seeds, from the cached stages.

Usage: .venv/bin/python benchmarks/ddb_retrain_sweep.py '[{}, {"ddb.retrain.gamma": [2.0, 2.0]}]'
Each JSON object is a set of dotted config overrides. A setting is chosen by validation WGA (DDB's own model
selection signal); the test column is printed only to record it. Output of the recorded runs: ddb_retrain_sweep.txt.
Every setting and seed is trained first, side by side in worker processes (`run_jobs`), then read back.
"""
import json
import sys
import time

import numpy as np

from spurnb.config import get_config, run_jobs, run_paths
from spurnb.data import load_split
from spurnb.metrics import group_report
from spurnb.retrain import train_ddb


def main(configs: list[dict]) -> None:
    base = get_config("cpu")
    paths = run_paths(base)
    val, test = load_split(base["data"], "val"), load_split(base["data"], "test")
    t = time.time()
    arts = run_jobs(train_ddb, [(get_config("cpu", ov), s, paths["cache"]) for ov in configs for s in (0, 1, 2)])
    print(f"# {len(configs)} setting(s) x 3 seeds in {time.time() - t:.0f} s", flush=True)
    for i, ov in enumerate(configs):
        vw, tw, ta = [], [], []
        for a in arts[3 * i: 3 * i + 3]:
            vw.append(group_report(a["arrays"]["val_logits"].argmax(1), val.y, val.g, 4)["worst"])
            r = group_report(a["arrays"]["test_logits"].argmax(1), test.y, test.g, 4)
            tw.append(r["worst"])
            ta.append(r["avg"])
        print(json.dumps(ov), "val_worst", np.round(vw, 3).tolist(), round(np.mean(vw), 4), "test_worst",
              np.round(tw, 3).tolist(), round(np.mean(tw), 4), "test_avg", round(np.mean(ta), 4), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
