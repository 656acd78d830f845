"""Why `make test` runs every process with one thread: the same small CPU training run three times side by side on a
2-core machine (as make test's pytest workers, smoke kernel and their children are), at two OpenMP threads each
(torch's default here), at two threads with OMP_WAIT_POLICY=PASSIVE, and at one thread; then once alone.
Prints wall and CPU seconds per process. Usage: .venv/bin/python benchmarks/threads.py >> benchmarks/threads.txt"""
import os
import subprocess
import sys
import time

WORK = """
import time, torch, torch.nn as nn
torch.manual_seed(0)
m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
                  nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2))
opt = torch.optim.SGD(m.parameters(), 0.01)
x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 2, (64,))
t, c = time.time(), time.process_time()
for _ in range(150):
    opt.zero_grad(); nn.functional.cross_entropy(m(x), y).backward(); opt.step()
print(f"{time.time() - t:.1f} {time.process_time() - c:.1f}")
"""


def run(env: dict, n: int) -> list[tuple[float, float]]:
    "Wall and CPU seconds of `n` copies of the training started together with `env`."
    procs = [subprocess.Popen([sys.executable, "-c", WORK], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    return [tuple(map(float, p.communicate()[0].split())) for p in procs]


if __name__ == "__main__":
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    print(f"# {time.strftime('%F %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores ({cpu}); 150 steps of a small "
          "conv net, batch 64 at 32x32; wall / CPU seconds per process")
    settings = {"2 threads": {"OMP_NUM_THREADS": "2"},
                "2 threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
                "1 thread": {"OMP_NUM_THREADS": "1"}}
    for n in (3, 1):
        for name, env in settings.items():
            res = run(env, n)
            print(f"{n} side by side, {name:35s} " + "  ".join(f"{w:5.1f} / {c:5.1f}" for w, c in res)
                  + f"   (CPU total {sum(c for _, c in res):5.1f} s)")
