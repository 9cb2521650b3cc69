#!/usr/bin/env bash
# The GPU rows of the benchmarks in one run that fits a lent machine's 10-minute command:
# the generator at 256 and 1024 px with its GPU paths (bf16 autocast, channels_last, torch.compile),
# and every editing stage at 1024 px against HairCLIPv2's loop.
#
#   bash scripts/device_wheels.sh            # here, once: .whl/ for a machine without a registry
#   bash benchmarks/gpu.sh [OUT]             # there (carry .whl); OUT defaults to benchmarks/results
#
# Each part has its own time limit (PART_TIMEOUT seconds, default 270), so one that overruns leaves
# the other's JSON and log. GEN_SIZES and EDIT_SIZE change the sizes (a CPU dry run: GEN_SIZES=64
# EDIT_SIZE=64). Exit status 1 when a part failed or ran out of time.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}
mkdir -p "$out"
if ! python3 -c "import hydra, lpips, open_clip, kornia" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu.sh: installing .whl/ failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
limit=${PART_TIMEOUT:-270}
status=0
run_part() {  # name, then the command
  local name=$1
  shift
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo "gpu.sh: $name exited $rc (124: over its ${limit} s)" >&2
    status=1
  fi
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
# shellcheck disable=SC2086  # GEN_SIZES is a list of sizes
run_part generator python3 benchmarks/generator.py --sizes ${GEN_SIZES:-256 1024} --batch 2 --min-time 0.5 \
  --gpu-paths --out "$out/generator.json"
run_part editing python3 benchmarks/editing.py --size "${EDIT_SIZE:-1024}" --out "$out/editing.json"
exit $status
