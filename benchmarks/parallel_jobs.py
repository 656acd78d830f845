"""Why `run_jobs` exists: one training step of the cpu profile's classifier, with 2 threads in one process versus
1 thread in each of two processes running side by side.

Usage: .venv/bin/python benchmarks/parallel_jobs.py   (output of the recorded run: parallel_jobs.txt)
Run it on an otherwise idle machine; the numbers are milliseconds per AdamW step at batch 64, 32×32 images.
"""
import subprocess
import sys
import time

STEP = """
import time, torch, torch.nn.functional as F
from spurnb.config import get_config
from spurnb.erm import make_model, _cl
torch.set_num_threads({threads})
e = get_config("cpu")["erm"]
m = make_model(e["arch"], 2, e["widths"]).to(memory_format=torch.channels_last)
opt = torch.optim.AdamW(m.parameters(), 1e-4)
x, y = _cl(torch.rand(e["batch_size"], 3, 32, 32)), torch.randint(0, 2, (e["batch_size"],))
def step():
    loss = F.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
for _ in range(10): step()
t = time.perf_counter()
for _ in range(60): step()
print((time.perf_counter() - t) / 60 * 1000)
"""


def run(threads: int, copies: int) -> list[float]:
    procs = [subprocess.Popen([sys.executable, "-c", STEP.format(threads=threads)], stdout=subprocess.PIPE, text=True)
             for _ in range(copies)]
    return [float(p.communicate()[0]) for p in procs]


if __name__ == "__main__":
    one2 = run(2, 1)[0]
    one1 = run(1, 1)[0]
    two1 = run(1, 2)
    print(f"1 process, 2 threads: {one2:.1f} ms/step -> {1000 / one2:.1f} steps/s")
    print(f"1 process, 1 thread:  {one1:.1f} ms/step -> {1000 / one1:.1f} steps/s")
    print(f"2 processes, 1 thread each: {two1[0]:.1f} and {two1[1]:.1f} ms/step -> "
          f"{sum(1000 / t for t in two1):.1f} steps/s together ({sum(1000 / t for t in two1) * one2 / 1000:.2f}x)")
