#!/usr/bin/env bash
# Install torch into the given interpreter's environment without pulling a multi-GB CUDA build
# onto a machine that has no GPU:
#   - GPU present (nvidia-smi works): the default PyPI build (CUDA), torch>=2.3.
#   - no GPU: the CPU build, from local wheels when pip has them (PIP_FIND_LINKS), else from
#     the official CPU index.
set -euo pipefail
py=${1:-python3}
want=${TORCH_VERSION:-2.13.0}
if "$py" -c "import torch" 2>/dev/null; then
  echo "torch already installed: $("$py" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  "$py" -m pip install -q "torch>=2.3"
elif "$py" -m pip install -q --no-index "torch==$want" 2>/dev/null; then
  echo "installed CPU torch $want from local wheels"
else
  "$py" -m pip install -q "torch==$want" --index-url https://download.pytorch.org/whl/cpu
fi
