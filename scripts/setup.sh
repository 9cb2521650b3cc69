#!/usr/bin/env bash
# Installs the project and everything it needs into the current Python (a venv or conda env if
# one is active). Idempotent: a second run only checks. Used by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }
pip_install torch==2.14.1 torchvision==0.29.1
# facenet-pytorch pins old torch/numpy/Pillow; its code works with ours (see pyproject.toml).
pip_install --no-deps facenet-pytorch==2.6.0
pip_install -e ".[dev]"
"$PY" -c "import torch, torchvision, pytorch_lightning, hydra, lpips, torchmetrics, wandb, open_clip, facenet_pytorch, skimage, dlib, submitit, hairclipv2; from hairclipv2 import dlib_models; dlib_models.model_file(dlib_models.PREDICTOR_68)" \
  || { echo "setup: an import failed after installation" >&2; exit 1; }
