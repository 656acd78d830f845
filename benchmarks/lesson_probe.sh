#!/usr/bin/env bash
# Groundwork for issue 17 (a lesson profile under 8 minutes): how long the method notebooks 02-11 take, cold, on the
# cpu profile cut to one seed, two baselines (Upsampling, DFR) and the smallest inversion ablation, and what WGA they
# give. Runs in a throw-away copy of the project with its own empty cache; writes nothing here.
# Usage: benchmarks/lesson_probe.sh > benchmarks/lesson_probe.txt
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
cp -r "$here/nbs" "$here/spurnb" "$here/settings.ini" "$work/"
cd "$work"
start=$(date +%s)
PYTHONPATH="$work" SPURNB_CACHE="$work/cache" "$here/.venv/bin/python" -m spurnb.reproduce reproduce --profile cpu \
  --seeds 0 --only 02 03 04 05 06 07 08 09 10 11 --set 'baselines.methods=["upsample","dfr"]' 'ddb.ablation_n=[0]' \
  2>/dev/null | sed -n '/^notebook/,$p'
echo "wall: $(( $(date +%s) - start )) s"
"$here/.venv/bin/python" - "$work/figures/cpu/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for name, m in r["methods"].items():
    print(f"{name:22s} test WGA {100 * m['worst'][0]:5.1f}   avg {100 * m['avg'][0]:5.1f}")
PY
rm -rf "$work"
