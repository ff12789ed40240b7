#!/usr/bin/env bash
# GPU check (issue 8): versions, the whole test suite on CuPy, and the GPU benchmarks.
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# Needs an NVIDIA GPU with CuPy, NumPy, pytest and hypothesis installed (PyTorch with CUDA is
# optional: when importable, the benchmarks time the PyTorch variants in the same run).
# Writes versions.txt, tests.txt and one JSON-lines file per benchmark into OUT_DIR.
# Budget: under 8 minutes (the suite runs with the `ci` hypothesis profile).
set -uo pipefail
out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export TINYTT_BACKEND=cupy HYPOTHESIS_PROFILE=ci PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

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

# benchmarks: each script synchronises the device around every timing
timeout 120 python benchmarks/lookup.py --quick --out "$out/lookup.jsonl" > /dev/null 2>&1 \
  || echo "lookup benchmark failed or timed out" | tee -a "$out/errors.txt"
timeout 150 python benchmarks/train_step.py --quick --out "$out/train_step.jsonl" > /dev/null 2>&1 \
  || echo "train_step benchmark failed or timed out" | tee -a "$out/errors.txt"
cat "$out"/*.jsonl 2>/dev/null | tail -n 40
exit "$status"
