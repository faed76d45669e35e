#!/usr/bin/env bash
# Task runner for the ranking kit. Needs only bash, Python 3.10+ and pip.
#
#   ./kit.sh demo   set up .venv, then train -> convert -> validate -> rank -> benchmark
#   ./kit.sh test   set up .venv and .venv-device, then run the whole test suite
#   ./kit.sh arm    the device runtime and benchmarks on emulated aarch64 (qemu; see README)
#   ./kit.sh setup  only create or update the environments
#
# Environment variables: PYTHON (interpreter for .venv, default python3),
# DEVICE_PYTHON (interpreter for .venv-device; default: the first of python3.11,
# python3.10 that exists, since tflite-runtime has no wheels for newer Pythons),
# ARTIFACTS (where demo writes, default ./artifacts).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
MAIN_VENV="$ROOT/.venv"
DEVICE_VENV="$ROOT/.venv-device"
ARTIFACTS="${ARTIFACTS:-$ROOT/artifacts}"
RECBOLE="recbole==1.2.1"   # offline MovieLens 100K carrier, installed without dependencies

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'kit.sh: error: %s\n' "$*" >&2; exit 2; }

pick_python() {
    local candidate="${PYTHON:-python3}"
    command -v "$candidate" >/dev/null 2>&1 || die "$candidate not found; install Python 3.10+ or set PYTHON=/path/to/python3"
    "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$candidate is older than Python 3.10; set PYTHON to a newer interpreter"
    "$candidate" -c 'import venv, ensurepip' 2>/dev/null \
        || die "$candidate cannot create virtual environments; install its venv module (Debian: apt-get install python3-venv)"
    echo "$candidate"
}

pick_device_python() {
    local candidate
    for candidate in ${DEVICE_PYTHON:-} python3.11 python3.10; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys, venv, ensurepip; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 11))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

# Re-install only when the dependency declarations change.
stamp_of() { cat pyproject.toml kit.sh | "$1" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'; }

setup_main() {
    local python; python="$(pick_python)"
    local stamp; stamp="$(stamp_of "$python")"
    if [[ -f "$MAIN_VENV/.kit-stamp" && "$(cat "$MAIN_VENV/.kit-stamp")" == "$stamp" ]]; then return 0; fi
    say "creating the main environment in .venv (TensorFlow, TFRS, LiteRT; about a minute)"
    rm -rf "$MAIN_VENV"
    "$python" -m venv "$MAIN_VENV"
    "$MAIN_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$MAIN_VENV/bin/python" -m pip install --quiet -e ".[train,device,bench,dev]"
    "$MAIN_VENV/bin/python" -m pip install --quiet --no-deps "$RECBOLE"
    echo "$stamp" > "$MAIN_VENV/.kit-stamp"
}

setup_device() {
    local python
    if ! python="$(pick_device_python)"; then
        die "no Python 3.10 or 3.11 found for the device environment (tflite-runtime has no wheels for newer Pythons); install python3.11 or set DEVICE_PYTHON"
    fi
    local stamp; stamp="$(stamp_of "$python")"
    if [[ -f "$DEVICE_VENV/.kit-stamp" && "$(cat "$DEVICE_VENV/.kit-stamp")" == "$stamp" ]]; then return 0; fi
    say "creating the device environment in .venv-device (numpy<2 + tflite-runtime, no TensorFlow)"
    rm -rf "$DEVICE_VENV"
    "$python" -m venv "$DEVICE_VENV"
    "$DEVICE_VENV/bin/python" -m pip install --quiet --upgrade pip
    # The base install only (numpy), one interpreter, and the test tools.
    "$DEVICE_VENV/bin/python" -m pip install --quiet . "tflite-runtime==2.14.0" "numpy<2" "pytest>=8" "hypothesis>=6.100"
    echo "$stamp" > "$DEVICE_VENV/.kit-stamp"
}

run_demo() {
    setup_main
    local py="$MAIN_VENV/bin/python"
    mkdir -p "$ARTIFACTS"
    say "1/4 training the default model on the offline MovieLens 100K copy"
    "$py" -m train --out "$ARTIFACTS/model"

    say "2/4 converting to .tflite and validating each variant (signature, ops, parity, runtimes)"
    local device=()
    [[ -x "$DEVICE_VENV/bin/python" ]] && device=(--runtime-python "$DEVICE_VENV/bin/python")
    local mode
    for mode in none float16 weight-only-int8; do
        "$py" -m convert "$ARTIFACTS/model" --out "$ARTIFACTS/model-$mode.tflite" --quantize "$mode" \
            --target litert-xnnpack --target tflite-runtime-2.14 "${device[@]}"
    done
    # Dynamic-range int8 runs on LiteRT only, without XNNPACK: validated for that target alone.
    "$py" -m convert "$ARTIFACTS/model" --out "$ARTIFACTS/model-dynamic-int8.tflite" --quantize dynamic-int8 \
        --target litert "${device[@]}"
    "$py" -m convert --summary-markdown "$ARTIFACTS"/model-{none,float16,dynamic-int8,weight-only-int8}.parity.json \
        > "$ARTIFACTS/conversion.md"

    say "3/4 ranking every movie for user 42 on the device runtime (no TensorFlow involved)"
    "$py" -m device_runtime rank --model "$ARTIFACTS/model-none.tflite" --user 42 --all --top-k 10

    say "4/4 a short latency benchmark of the float32 model (the SavedModel as server-side reference)"
    "$py" -m benchmarks latency --model "$ARTIFACTS/model-none.tflite" --backend litert \
        --candidates 1,10,100,1000,all --runs 100 --min-seconds 1 --warmup 10 \
        --out "$ARTIFACTS/latency.json" --csv "$ARTIFACTS/latency.csv" --plot "$ARTIFACTS/latency.png"

    say "done: models and reports in $ARTIFACTS (conversion summary: $ARTIFACTS/conversion.md)"
}

run_tests() {
    setup_main
    setup_device
    local work; work="$(mktemp -d)"
    trap "rm -rf '$work'" EXIT
    say "building the device-runtime test models in the main environment"
    "$MAIN_VENV/bin/python" -m tests.device_runtime.make_fixtures "$work/device-fixtures"
    say "main environment: the whole suite (TensorFlow, LiteRT)"
    KIT_DEVICE_FIXTURES="$work/device-fixtures" "$MAIN_VENV/bin/python" -m pytest -q
    say "device environment: the runtime's tests without TensorFlow (tflite-runtime, numpy<2)"
    KIT_DEVICE_FIXTURES="$work/device-fixtures" \
        "$DEVICE_VENV/bin/python" -m pytest -q tests/device_runtime tests/convert tests/benchmarks -m "not tensorflow and not plot"
}

run_arm() {
    setup_main
    local py="$MAIN_VENV/bin/python"
    local work; work="$(mktemp -d)"
    trap "rm -rf '$work'" EXIT
    say "aarch64 under qemu: the tutorial model (float32, float16, dynamic-int8) on tflite-runtime and LiteRT"
    "$py" -m train --out "$work/model" --preset tutorial --quiet
    local mode
    for mode in none float16 dynamic-int8; do
        "$py" -m convert "$work/model" --out "$work/model-$mode.tflite" --quantize "$mode" --target litert >/dev/null
    done
    "$py" -m tests.device_runtime.make_fixtures "$work/device-fixtures"
    KIT_PYTHON="$py" scripts/aarch64/run.sh "$work"/model-{none,float16,dynamic-int8}.tflite \
        --users "${ARM_PARITY_USERS:-200}" --fixtures "$work/device-fixtures" --work-dir "$work/aarch64"
}

case "${1:-}" in
    demo) run_demo ;;
    test) run_tests ;;
    arm) run_arm ;;
    setup) setup_main; setup_device ;;
    *) echo "usage: ./kit.sh demo | test | arm | setup" >&2; exit 2 ;;
esac
