#!/usr/bin/env bash
# The GPU rows of the benchmarks in one run that fits a lent machine's 10-minute command:
# the generator at 1024 and 256 px with its GPU paths (bf16 autocast, channels_last, torch.compile),
# and every editing stage at 1024 px against HairCLIPv2's loop.
#
#   bash scripts/device_wheels.sh            # here, once: .whl/ for a machine without a registry
#   bash benchmarks/gpu.sh [OUT]             # there (carry .whl); OUT defaults to benchmarks/results
#
# Four parts, the most wanted first, each under its own time limit (seconds: 220, 180, 100 and 60, 560
# in all), so that one that overruns leaves the others' JSON and logs: the generator, HairCLIPv2's
# stages, the whole fast path (encoders and mappers, benchmarks/fast_path.py), the smaller generator. SIZE and SMALL_SIZE change the
# sizes (a CPU dry run: SIZE=64 SMALL_SIZE=32). Exit status 1 when a part failed or ran out of time.
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
status=0
run_part() {  # name, time limit in seconds, then the command
  local name=$1 limit=$2
  shift 2
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo "gpu.sh: $name exited $rc (124: over its $limit s)" >&2
    status=1
  fi
}
size=${SIZE:-1024}
small=${SMALL_SIZE:-256}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
gen=(python3 benchmarks/generator.py --batch 2 --min-time 0.5 --gpu-paths)
run_part "generator_$size" 220 "${gen[@]}" --sizes "$size" --out "$out/generator_$size.json"
run_part editing 180 python3 benchmarks/editing.py --size "$size" --out "$out/editing.json"
run_part fast_path 100 python3 benchmarks/fast_path.py --size "$size" --out "$out/fast_path.json"
run_part "generator_$small" 60 "${gen[@]}" --sizes "$small" --out "$out/generator_$small.json"
exit $status
