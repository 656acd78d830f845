#!/usr/bin/env bash
# Issue 16's time line: `.ci/run` (= make test) from a clean clone of HEAD, alone on the machine, with each phase's
# end time. The clone reuses CLONE/.venv when it exists (the install is not what is measured).
# Usage: benchmarks/make_test.sh [CLONE_DIR] >> benchmarks/make_test.txt   (about 20 minutes on 2 cores)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
clone="${1:-/tmp/spurnb-make-test}"
[ -d "$clone/.git" ] || git clone -q "$root" "$clone"
cd "$clone"
git fetch -q "$root" HEAD && git reset -q --hard FETCH_HEAD && git clean -qxdf -e .venv
log="$(mktemp)"
start=$(date +%s)
{ rc=0; /usr/bin/time -f "%U %S" -o "$log.cpu" .ci/run 2>&1 || rc=$?; echo "EXIT $rc"; } | while IFS= read -r l; do echo "$(( $(date +%s) - start )) $l"; done > "$log"
end=$(( $(date +%s) - start ))
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -qw avx512f /proc/cpuinfo && echo AVX-512 || echo 'AVX2, no AVX-512')"
echo "# $(date -u '+%F %H:%M') UTC, commit $(git rev-parse --short HEAD), $(nproc) cores ($cpu)"
at() { grep -m1 -E "$1" "$log" | cut -d' ' -f1; }
echo "pytest ends            $(at ' [0-9]+ passed') s   ($(grep -m1 -oE '[0-9]+ passed[^=]*' "$log"))"
echo "smoke papermill ends   $(at ' total +[0-9.]+$') s"
echo "nbdev_test ends        $(at ' Success\.') s"
echo "make test ends         $end s   (CPU: $(awk '{printf "%.0f s user + %.0f s system", $1, $2}' "$log.cpu"))"
grep -E "^[0-9]+ +[0-9.]+s (setup|call) " "$log" | head -5 | sed 's/^[0-9]* /  slowest: /'
status="$(grep -oE '^[0-9]+ EXIT [0-9]+' "$log" | cut -d' ' -f3)"
[ "$status" = 0 ] || { echo "  .ci/run FAILED (exit $status): see $log"; exit 1; }
