#!/usr/bin/env bash
# On the GPU host, through the device tool, after `python benchmarks/gpu_bundle.py` here:
#   run(command="bash benchmarks/gpu_session.sh grdnet_mtd --epochs 10,35,100", carry=[".bundle"])
# Installs the bundled wheels, points the benchmarks at the bundled data and runs benchmarks/SCRIPT.py with
# the given arguments, writing its JSON, Markdown and log into $OUT (which comes back to this machine).
set -uo pipefail
script=${1:?usage: gpu_session.sh SCRIPT [ARGS...]  (SCRIPT: a benchmarks/*.py name without .py)}
shift
cd "$(dirname "$0")/.."
[ -d .bundle/wheels ] || { echo "error: .bundle/wheels missing: run python benchmarks/gpu_bundle.py and carry .bundle" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .bundle/wheels/*.whl || exit 2
export PYTHONPATH="/tmp/site:$PWD/src:$PWD/benchmarks" PYTHONUNBUFFERED=1 GRDNET_DATA_DIR="$PWD/.bundle/data"
out=${OUT:-benchmarks/results}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
python3 "benchmarks/$script.py" --out "$out" "$@" 2>&1 | tee "$out/$script.log"
