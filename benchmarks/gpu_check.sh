#!/usr/bin/env bash
# GPU check (issue 8): versions, the whole test suite on CuPy, and the GPU benchmarks.
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# Needs an NVIDIA GPU with CuPy, NumPy, pytest and hypothesis installed. PyTorch, when
# importable, is timed in the same run on the host CPU (the scripts never move it to CUDA),
# so on the GPU the ratio_to_torch_* fields compare tinytt on CuPy with PyTorch on the CPU.
# Writes versions.txt, tests.txt, one JSON-lines file per benchmark and its stderr log into
# OUT_DIR (errors.txt lists failed steps). TINYTT_DATA defaults to shared/data when the copy
# has it (the IMDB lookup batch and the data tests need it; they are skipped otherwise).
# Budget: the time limits add up to 9 minutes in the worst case; a normal run takes 3-5
# (the suite runs with the `ci` hypothesis profile, 55 s on the 2-core CPU machine).
set -uo pipefail
mkdir -p "${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}"
out="$(cd "$1" && pwd)"          # absolute: the script changes directory below
cd "$(dirname "$0")/.."
export TINYTT_BACKEND=cupy HYPOTHESIS_PROFILE=ci PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${TINYTT_DATA:-}" ] && [ -d shared/data ]; then export TINYTT_DATA="$PWD/shared/data"; fi

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  python - <<'PY'
import numpy, sys
print("python", sys.version.split()[0], "numpy", numpy.__version__)
try:
    import cupy
    print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "driver", cupy.cuda.runtime.driverGetVersion(),
          "device", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
except Exception as exc:  # report and let the test run fail loudly
    print("cupy unavailable:", exc)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
except Exception as exc:
    print("torch unavailable:", exc)
PY
} 2>&1 | tee "$out/versions.txt"

status=0
timeout 300 python -m pytest -q -p no:cacheprovider 2>&1 | tee "$out/tests.txt" | tail -n 15
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# benchmarks: each script synchronises the device around every timing; a failure or a
# timeout is recorded in errors.txt, its traceback kept in <name>.err, and fails the check
bench() {
  local name=$1 limit=$2; shift 2
  timeout "$limit" python "benchmarks/$name.py" "$@" --out "$out/$name.jsonl" > /dev/null 2> "$out/$name.err" \
    || { echo "$name benchmark failed or timed out (see $name.err)" | tee -a "$out/errors.txt"; status=1; }
}
bench lookup 90 --quick --no-memory
bench train_step 120 --quick
timeout 45 python benchmarks/engine.py --quick > "$out/engine.jsonl" 2> "$out/engine.err" \
  || { echo "engine benchmark failed or timed out (see engine.err)" | tee -a "$out/errors.txt"; status=1; }
cat "$out"/*.jsonl 2>/dev/null | tail -n 40
exit "$status"
