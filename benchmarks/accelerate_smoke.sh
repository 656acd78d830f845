#!/usr/bin/env bash
# Issue 19: the whole smoke profile under `accelerate launch` with two processes against one process, each from an
# empty cache in a throw-away copy of the project (nothing here is touched), one after the other, every process
# single-threaded (OMP_NUM_THREADS=1, SPURNB_JOBS=1: the trainings run in the kernels). Prints each run's wall and CPU
# time, which process computed which jobs and images, and whether the two results.json agree once timings are set
# aside. Usage: benchmarks/accelerate_smoke.sh >> benchmarks/accelerate_smoke.txt   (about 20 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"; work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -qw avx512f /proc/cpuinfo && echo AVX-512 || echo 'AVX2, no AVX-512')"
echo "# run of $(date -u '+%F %H:%M') UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- nbs spurnb || echo ' + uncommitted changes'), $(nproc) cores ($cpu), empty caches"
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
for how in one two; do
  mkdir -p "$work/$how" && cp -r nbs spurnb settings.ini "$work/$how/"
  if [ $how = one ]; then launch=("$root/.venv/bin/python" -m spurnb.reproduce)
  else launch=("$root/.venv/bin/accelerate" launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no
               --dynamo_backend no --main_process_port "$port" -m spurnb.reproduce); fi
  (cd "$work/$how" && OMP_NUM_THREADS=1 SPURNB_JOBS=1 SPURNB_CACHE="$work/cache-$how" PYTHONPATH="$work/$how" \
     /usr/bin/time -f "$how process(es): wall %e s, CPU %U s user + %S s system" "${launch[@]}" --profile smoke \
     > "$work/$how.log" 2>&1) || { tail -30 "$work/$how.log"; exit 1; }
  tail -1 "$work/$how.log"
done
grep -oh 'inpainting: process [0-9] of 2 generates [^(]*\|inversion: process [0-9] of 2 learns [^"\\]*\|[A-Za-z ()]*: process [0-9] of 2 computed job(s) [^"\\]*' \
  "$work"/two/runs/smoke/*.ipynb "$work"/two/runs/smoke/process-1/*.ipynb | sed 's/^ *//' | sort -u
.venv/bin/python - "$work/one/figures/smoke/results.json" "$work/two/figures/smoke/results.json" <<'PY'
import json, re, sys
timing = re.compile(r"^(timings_s|commit|seconds)$|_s$|_minutes$|_s_per_image$")
def strip(d):
    return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if not timing.search(k)}
def leaves(d, path=""):
    return [x for k, v in d.items() for x in (leaves(v, f"{path}/{k}") if isinstance(v, dict) else [(f"{path}/{k}", v)])]
one, two = (strip(json.load(open(p))) for p in sys.argv[1:])
diff = [p for (p, a), (q, b) in zip(leaves(one), leaves(two)) if p != q or a != b]
print(f"results.json without timings: {len(leaves(one))} values, {'identical' if one == two else f'{len(diff)} differ: ' + ', '.join(diff[:10])}")
PY
