"""DDB retraining knobs on the cpu profile: validation and test WGA per setting, 3 seeds, from the cached stages.

Usage: .venv/bin/python benchmarks/ddb_retrain_sweep.py '[{}, {"ddb.retrain.gamma": [2.0, 2.0]}]'
Each JSON object is a set of dotted config overrides. A setting is chosen by validation WGA (DDB's own model
selection signal); the test column is printed only to record it. Output of the recorded run: ddb_retrain_sweep.txt.
"""
import sys, json, numpy as np, time
from spurnb.config import get_config, run_paths
from spurnb.retrain import train_ddb
from spurnb.data import load_split
from spurnb.metrics import group_report
configs = json.loads(sys.argv[1])
base = get_config("cpu"); paths = run_paths(base)
val, test = load_split(base["data"], "val"), load_split(base["data"], "test")
for ov in configs:
    cfg = get_config("cpu", ov)
    vw, tw, ta = [], [], []
    t = time.time()
    for s in (0, 1, 2):
        a = train_ddb(cfg, s, paths["cache"])
        vw.append(group_report(a["arrays"]["val_logits"].argmax(1), val.y, val.g, 4)["worst"])
        r = group_report(a["arrays"]["test_logits"].argmax(1), test.y, test.g, 4)
        tw.append(r["worst"]); ta.append(r["avg"])
    print(json.dumps(ov), "val_worst", np.round(vw, 3).tolist(), round(np.mean(vw), 4), "test_worst", np.round(tw, 3).tolist(), round(np.mean(tw), 4), "test_avg", round(np.mean(ta), 4), round(time.time() - t), "s", flush=True)
