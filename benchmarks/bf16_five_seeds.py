"""bf16 autocast as a speed lever for the whole cpu run, and what five seeds cost (issue 18). Run the cpu profile with
    SPURNB_CACHE=<the fp32 run's cache> spurnb reproduce --profile cpu --seeds 0 1 2 3 4 --set erm.precision=bf16
in a clone (the data, generator and segmenter are read back; every classifier, and so every inversion, inpainting and
pruning that depends on an ERM model, is recomputed), then compare its results.json with the fp32 run's:
    .venv/bin/python benchmarks/bf16_five_seeds.py FP32_RESULTS BF16_RESULTS >> benchmarks/bf16_five_seeds.txt"""
import json
import sys

import numpy as np

if __name__ == "__main__":
    a = json.load(open(sys.argv[1]))["methods"]
    b = json.load(open(sys.argv[2]))["methods"]
    n = min(len(m["worst"]) for m in a.values())
    print(f"# test WGA (%): fp32 seeds 0-{n - 1} | bf16 the same seeds | bf16 all {len(next(iter(b.values()))['worst'])} seeds, mean +- sd")
    worst = 0.0
    for m in a:
        wa, wb = 100 * np.array(a[m]["worst"]), 100 * np.array(b[m]["worst"])
        d = np.abs(wa - wb[:n]).max()
        worst = max(worst, d)
        print(f"{m:22s} fp32 {np.round(wa, 1).tolist()} mean {wa.mean():5.1f} | bf16 {np.round(wb[:n], 1).tolist()} "
              f"mean {wb[:n].mean():5.1f} (max|diff| {d:.1f}) | all seeds {wb.mean():5.1f} +- {wb.std():.1f}")
    print(f"# largest per-seed fp32-bf16 difference: {worst:.1f} points")
