"""Which epoch each classifier kept (validation selection) when trained for 20 epochs: the evidence for erm.epochs = 19 and
baselines.epochs = 18 on the cpu profile. Reads the artifact cache of a cpu make reproduce run with 20 epochs."""
import json, glob, numpy as np
rows = []
for kind in ["erm", "baseline_upsample", "baseline_groupdro", "baseline_jtt", "baseline_lisa"]:
    for d in sorted(glob.glob(f"runs/cache/{kind}/*/")):
        m, k = json.load(open(d + "meta.json")), json.load(open(d + "key.json"))
        h = m.get("history") or []
        if len(h) != 20: continue
        name = kind.replace("baseline_", "")
        if kind == "erm":
            name = "oracle" if k["data"]["lite"]["p_majority"] == 0.5 else "erm"
            sel = "val_avg"
        else:
            sel = "val_worst"
        rows.append((name, k["seed"], int(np.argmax([e[sel] for e in h])) + 1))
for name in ["erm", "oracle", "upsample", "groupdro", "jtt", "lisa"]:
    print(f"{name:9s} kept epoch (1-based) per seed:", [r[2] for r in sorted(r for r in rows if r[0] == name)])
