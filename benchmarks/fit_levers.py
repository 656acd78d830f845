"""Speed levers of classifier training on the cpu profile (issue 18): one ERM training (cpu profile, seed 0: 19 epochs on
3600 32×32 images, resnet_small from the world-pretrained weights) timed under each setting, with its test WGA and
whether its weights equal the reference's bit for bit. Each setting runs in a fresh process with the thread count of a
`make reproduce` job (SPURNB_THREADS, default 2). Usage:
    .venv/bin/python benchmarks/fit_levers.py [setting ...] >> benchmarks/fit_levers.txt"""
import json
import os
import subprocess
import sys
import time

WORK = r"""
import json, os, sys, time, hashlib
import numpy as np, torch
from spurnb.config import get_config, seed_everything
from spurnb.data import load_split
from spurnb.erm import fit, initial_weights, make_model, predict
from spurnb.metrics import group_report
setting = sys.argv[1]
cfg = get_config("cpu")
dcfg, ecfg = cfg["data"], {**cfg["erm"], "precision": "fp32"}  # the reference is fp32 (the profile's `auto` may be bf16)
train, val, test = (load_split(dcfg, s) for s in ("train", "val", "test"))
weights = initial_weights(dcfg, ecfg, os.environ["LEVER_CACHE"], "cpu")
kw = {"test": test}
if setting == "no per-epoch test scores":
    kw = {}
if setting == "bf16 autocast":
    ecfg["precision"] = "bf16"
if setting == "one thread":
    torch.set_num_threads(1)
seed_everything(0)
model = make_model(ecfg["arch"], train.n_classes, ecfg["widths"], weights)
if setting == "torch.compile":
    model = torch.compile(model)
t = time.perf_counter()
model, hist = fit(model, train, val, ecfg, 0, select=ecfg["select"], desc="lever", **kw)
wall = time.perf_counter() - t
wga = group_report(predict(model, test).argmax(1), test.y, test.g, test.n_groups)["worst"]
h = hashlib.sha256(b"".join(v.detach().float().numpy().tobytes() for v in model.state_dict().values())).hexdigest()[:12]
print(json.dumps({"setting": setting, "seconds": round(wall, 1), "test_wga": round(wga, 4), "weights": h}))
"""

SETTINGS = ["reference (val and test scored every epoch)", "no per-epoch test scores", "bf16 autocast", "torch.compile",
            "one thread", "pinned CPU kernels (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2)",
            "pinned CPU kernels and MKL (the above and MKL_CBWR=AVX2)"]
ENV = {"pinned CPU kernels (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2)":
       {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
       "pinned CPU kernels and MKL (the above and MKL_CBWR=AVX2)":
       {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}}

if __name__ == "__main__":
    chosen = sys.argv[1:] or SETTINGS
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    isa = "AVX-512 (avx512_bf16)" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512"
    threads = os.environ.get("SPURNB_THREADS", "2")
    print(f"# {time.strftime('%F %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores ({cpu}, {isa}), "
          f"{threads} threads; one ERM training of the cpu profile (seed 0) per setting")
    env = {**os.environ, "OMP_NUM_THREADS": threads, "LEVER_CACHE": os.environ.get("LEVER_CACHE", "runs/cache")}
    for s in chosen:
        out = subprocess.run([sys.executable, "-c", WORK, s], env={**env, **ENV.get(s, {})}, capture_output=True,
                             text=True)
        line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
        print(line or json.dumps({"setting": s, "error": out.stderr.strip().splitlines()[-1:]}), flush=True)
