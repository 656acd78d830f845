"""Is `run_jobs` worth it on this machine? Real training epochs of the cpu profile's classifier (Waterbirds-lite
train split, the ERM harness), timed as one 2-thread process alone versus two 1-thread processes side by side.

Usage: .venv/bin/python benchmarks/parallel_jobs.py   (output of the recorded run: parallel_jobs.txt)
Run it on an otherwise idle machine.
"""
import subprocess
import sys

FIT = """
import time, torch
from spurnb.config import get_config
from spurnb.data import load_split
from spurnb.erm import fit, make_model
torch.set_num_threads({threads})
cfg = get_config("cpu")
d, e = cfg["data"], {{**cfg["erm"], "epochs": {epochs}}}
train, val = load_split(d, "train"), load_split(d, "val")
t = time.perf_counter()
fit(make_model(e["arch"], 2, e["widths"]), train, val, e, seed=0)
print((time.perf_counter() - t) / {epochs})
"""


def run(threads: int, copies: int, epochs: int = 3) -> list[float]:
    "Seconds per epoch of each of `copies` concurrent processes with `threads` threads."
    procs = [subprocess.Popen([sys.executable, "-c", FIT.format(threads=threads, epochs=epochs)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(copies)]
    return [float(p.communicate()[0]) for p in procs]


if __name__ == "__main__":
    alone2, alone1, pair1 = run(2, 1)[0], run(1, 1)[0], run(1, 2)
    print(f"one process, 2 threads:          {alone2:.2f} s/epoch")
    print(f"one process, 1 thread:           {alone1:.2f} s/epoch")
    print(f"two processes, 1 thread each:    {pair1[0]:.2f} and {pair1[1]:.2f} s/epoch")
    gain = sum(1 / t for t in pair1) * alone2
    print(f"throughput of the pair against one 2-thread process: {gain:.2f}x")
