#!/usr/bin/env bash
# Set up .venv for densenet-spec: the CPU build of torch first (a plain `torch` requirement
# would pull a multi-GB CUDA build), then the package with its dev extra, then Graphviz's `dot`.
# Idempotent: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: installing torch==$TORCH_VERSION (CPU build where one is available)"
  "${pip[@]}" install "torch==$TORCH_VERSION" \
    || "${pip[@]}" install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi

echo "setup: installing densenet-spec[dev] (editable)"
"${pip[@]}" install -e ".[dev]"
# .safetensors checkpoints are read with the safetensors package (a dependency): fail here, not at --weights.
"$VENV/bin/python" -c "import safetensors" \
  || { echo "setup: safetensors did not install; .safetensors checkpoints would be refused" >&2; exit 1; }

if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Graphviz (apt-get install graphviz)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz) >/dev/null
  else
    echo "setup: Graphviz's 'dot' is missing; install it (e.g. 'sudo apt-get install graphviz') for svg/png/pdf" >&2
  fi
fi
echo "setup: done"
