#!/bin/bash
# Makes anomalib 2.7.0's own virtual environment for benchmarks/side_by_side.py, outside the repository
# (default ~/.cache/grdnet/anomalib-venv, or the first argument). Idempotent: a finished environment is
# left as it is. Needs a package registry (or local wheels); ~6 GB of disk for torch + torchvision.
# Exit status 0 and the line "ANOMALIB_PYTHON <path>" when the environment imports anomalib.
set -euo pipefail
venv=${1:-${ANOMALIB_VENV:-$HOME/.cache/grdnet/anomalib-venv}}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import anomalib, torchvision" 2>/dev/null; then
  echo "ANOMALIB_PYTHON $venv/bin/python"; exit 0
fi
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv"
pip="$venv/bin/python -m pip install -q"
$pip --upgrade pip
$pip torch==2.14.1 torchvision==0.29.1
$pip anomalib==2.7.0 lightning "jsonargparse<4.47" docstring-parser kornia omegaconf rich-argparse FrEIA \
  timm opencv-python-headless open_clip_torch einops scikit-image
"$venv/bin/python" -c "import anomalib, torch, torchvision; print('anomalib', anomalib.__version__, 'torch', torch.__version__)"
echo "ANOMALIB_PYTHON $venv/bin/python"
