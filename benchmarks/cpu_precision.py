"""bf16 against fp32, and one class at a time against both at once, for the cpu profile's stages on this CPU (issue 18,
19). Each setting runs in a fresh process with SPURNB_THREADS threads (default 1: a `make reproduce` worker's share of
a 2-core machine). Measured: one textual inversion (the cpu profile's settings, 40 of its 300 steps, 30 images per
class) jointly (`learn_tokens` on both classes) and per class (`learn_per_class`); inpainting 64 images (15 steps,
one batch) with the shipped inpainting model; one ERM training (19 epochs, bf16 autocast) with AdamW's loop and
with fused AdamW. Needs a cache holding the world-pretrained classifier (BENCH_CACHE, default runs/cache; the
shipped models need nothing). Usage:
    .venv/bin/python benchmarks/cpu_precision.py [stage ...] >> benchmarks/cpu_precision.txt"""
import json
import os
import subprocess
import sys
import time

WORK = r"""
import json, os, sys, time
import numpy as np, torch
from spurnb.config import get_config, seed_everything
from spurnb.data import load_split
kind, setting = sys.argv[1], sys.argv[2]
cfg = get_config("cpu")
dcfg, gcfg = cfg["data"], cfg["generator"]
cache = os.environ["BENCH_CACHE"]
train = load_split(dcfg, "train")
if kind == "inversion":
    from spurnb.generator import get_generator
    from spurnb.inversion import images_of, learn_per_class, learn_tokens
    model = get_generator(dcfg, gcfg, cache)
    imgs = {c: images_of(train, np.nonzero(train.y == c)[0][:30], gcfg["size"]) for c in (0, 1)}
    how, prec = setting.split()
    icfg = {**cfg["ddb"]["inversion"], "steps": 40, "precision": prec, "mask_weight": 0.0}
    t = time.perf_counter()
    (learn_tokens if how == "joint" else learn_per_class)(model, imgs, icfg, 0)
elif kind == "inpainting":
    from spurnb.generator import compute_dtype, get_inpainter, inpaint, load_generator
    pipe = load_generator(get_inpainter(dcfg, gcfg, cache), "inpaint", compute_dtype(setting, "cpu"))
    masks = np.zeros((64, 32, 32), bool)
    masks[:, 8:24, 8:24] = True
    t = time.perf_counter()
    inpaint(pipe, train.images[:64], masks, ["a photo of a seven"] * 64, seed=0, steps=15, guidance=7.5, batch_size=64)
else:  # one ERM training in bf16 with `fit`'s AdamW (its per-parameter loop) or, `fused`, AdamW's fused kernel
    import spurnb.erm as E
    ecfg = {**cfg["erm"], "precision": "bf16"}
    val, test = load_split(dcfg, "val"), load_split(dcfg, "test")
    if setting == "fused AdamW":
        class Fused(torch.optim.AdamW):
            def __init__(self, *a, **k):
                super().__init__(*a, fused=True, **k)
        E.torch.optim.AdamW = Fused
    w = E.initial_weights(dcfg, ecfg, cache, "cpu")
    seed_everything(0)
    m = E.make_model(ecfg["arch"], 2, ecfg["widths"], w)
    t = time.perf_counter()
    E.fit(m, train, val, ecfg, 0, select="avg", desc="bench", test=test)
print(json.dumps({"stage": kind, "setting": setting, "threads": torch.get_num_threads(),
                  "seconds": round(time.perf_counter() - t, 1)}))
"""

SETTINGS = [("inversion", "joint fp32"), ("inversion", "joint bf16"), ("inversion", "per_class fp32"),
            ("inversion", "per_class bf16"), ("inpainting", "fp32"), ("inpainting", "bf16"),
            ("ERM training", "AdamW loop"), ("ERM training", "fused AdamW")]

if __name__ == "__main__":
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    isa = "AVX-512 (avx512_bf16)" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512"
    threads = os.environ.get("SPURNB_THREADS", "1")
    print(f"# {time.strftime('%F %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores ({cpu}, {isa}), {threads} thread(s)")
    env = {**os.environ, "OMP_NUM_THREADS": threads, "BENCH_CACHE": os.environ.get("BENCH_CACHE", "runs/cache")}
    for kind, s in [x for x in SETTINGS if not sys.argv[1:] or x[0] in sys.argv[1:]]:
        out = subprocess.run([sys.executable, "-c", WORK, kind, s], env=env, capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
        print(line or json.dumps({"stage": kind, "setting": s, "error": out.stderr.strip().splitlines()[-1:]}), flush=True)
