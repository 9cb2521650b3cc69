#!/usr/bin/env bash
# Wheels of the packages a GPU machine's image lacks, into .whl/ (gitignored), for machines that
# cannot reach a package registry: Python 3.12, x86-64. benchmarks/gpu.sh installs them from there.
# The versions are the ones the tests run with here. The image already has torch, torchvision,
# pytorch-lightning, torchmetrics, numpy, Pillow, scipy, scikit-image, timm, huggingface-hub and
# regex; wandb stays out (Lightning runs without it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
rm -rf .whl && mkdir -p .whl
platforms=()
for p in manylinux_2_28 manylinux_2_17 manylinux2014; do platforms+=(--platform "${p}_x86_64"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  hydra-core==1.3.8 omegaconf==2.3.1 lpips==0.1.4 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.7.0 \
  kornia==0.9.0 kornia_rs==0.2.0 facenet-pytorch==2.6.0
# antlr4 4.9.3 (what omegaconf 2.3 needs) is published as a source archive only: build its pure-Python wheel.
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
du -sh .whl && ls .whl
