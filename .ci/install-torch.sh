#!/usr/bin/env bash
# Install torch into the given interpreter's environment without pulling a multi-GB CUDA build
# onto a machine that has no GPU:
#   - GPU present (nvidia-smi works): the default PyPI build (CUDA), torch>=2.3.
#   - no GPU: the CPU build: a local wheel when pip's find-links has one (as on the project's
#     CI machines), else the official CPU index.
set -euo pipefail
py=${1:-python3}
want=${TORCH_VERSION:-2.13.0}
if "$py" -c "import torch" 2>/dev/null; then
  echo "torch already installed: $("$py" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  "$py" -m pip install -q "torch>=2.3"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if "$py" -m pip download -q --no-deps --no-index "torch==$want" -d "$tmp" 2>/dev/null \
    && ls "$tmp"/torch-*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q "$tmp"/torch-*.whl      # its dependencies come from the index
  echo "installed CPU torch from local wheel $(basename "$tmp"/torch-*.whl)"
else
  "$py" -m pip install -q "torch==$want" --index-url https://download.pytorch.org/whl/cpu \
    --extra-index-url https://pypi.org/simple
fi
