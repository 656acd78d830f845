#!/usr/bin/env bash
# Issue 17's acceptance test for the lesson profile: `spurnb reproduce --profile lesson` from an EMPTY artifact cache,
# timed on this machine. It runs in the project, so it regenerates figures/lesson/ and runs/lesson/ like a user's run.
# Prints the per-notebook seconds (spurnb.exercises.lesson_times reads them for the exercises' runtimes), the wall
# time and each method's test WGA. Usage: benchmarks/lesson.sh [CACHE_DIR] >> benchmarks/lesson.txt
# CACHE_DIR (optional, must be empty or absent) keeps the cache afterwards, e.g. for `spurnb exercises`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
  cache="$1"; mkdir -p "$cache"
  [ -z "$(ls -A "$cache")" ] || { echo "benchmarks/lesson.sh: $cache is not empty" >&2; exit 2; }
else
  cache="$(mktemp -d)"; trap 'rm -rf "$cache"' EXIT
fi
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -qw avx512f /proc/cpuinfo && echo AVX-512 || echo 'AVX2, no AVX-512')"
echo "# run of $(date -u '+%F %H:%M') UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- nbs spurnb || echo ' + uncommitted changes'), $(nproc) cores ($cpu), empty cache"
start=$(date +%s)
SPURNB_CACHE="$(cd "$cache" && pwd)" .venv/bin/spurnb reproduce --profile lesson 2>/dev/null | sed -n '/^notebook/,$p'
echo "wall: $(( $(date +%s) - start )) s"
.venv/bin/python - figures/lesson/results.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wga = {name: 100 * sum(m["worst"]) / len(m["worst"]) for name, m in r["methods"].items()}
for name, m in r["methods"].items():
    print(f"{name:22s} test WGA {wga[name]:5.1f}   avg {100 * sum(m['avg']) / len(m['avg']):5.1f}")
print(f"DDB - ERM: {wga['DDB'] - wga['ERM']:+.1f} WGA points (acceptance: at least +25)")
PY
