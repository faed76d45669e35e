#!/usr/bin/env bash
# Runs the device runtime, the latency harness and a cross-architecture parity
# check on aarch64 under qemu user-mode emulation (docs/arm.md).
#
#   scripts/aarch64/run.sh [MODEL.tflite ...] [--users N] [--cpu cortex-a72|cortex-a76|cortex-a53] ...
#
# The host Python must be the main environment (TensorFlow for the test
# fixtures, ai-edge-litert for the x86_64 reference scores): set KIT_PYTHON,
# else .venv/bin/python or python3 is used. Options: scripts/aarch64/run.sh --help.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${KIT_PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python="python3"; fi
fi
if ! command -v "$python" >/dev/null 2>&1; then
    echo "aarch64 check cannot run: no Python at '$python'; set KIT_PYTHON to the main environment's python" >&2
    exit 2
fi
# Not cd-ing keeps relative model paths relative to where the user stands.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m scripts.aarch64 "$@"
