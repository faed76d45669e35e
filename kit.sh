#!/usr/bin/env bash
# Task runner for the ranking kit. Needs only bash, Python 3.10 to 3.13 and pip.
#
#   ./kit.sh demo   set up .venv, then train -> convert -> validate -> rank -> benchmark
#   ./kit.sh test   set up the environments below, run the whole suite in .venv, then the TensorFlow-free
#                   device tests in each device environment ("leg"), and say which legs ran and why not
#   ./kit.sh arm    the device runtime and benchmarks on emulated aarch64 (qemu; docs/arm.md)
#   ./kit.sh setup  only create or update the environments
#
# Environments (docs/pythons.md):
#   .venv                 PYTHON: TensorFlow, TFRS, LiteRT; the whole suite
#   .venv-device          DEVICE_PYTHON: tflite-runtime 2.14 + numpy<2, no TensorFlow (only where a
#                         Python 3.10 or 3.11 exists: tflite-runtime has no wheels for newer Pythons)
#   .venv-device-litert   PYTHON: ai-edge-litert + numpy 2, no TensorFlow (always)
#
# Environment variables: PYTHON (interpreter for .venv and .venv-device-litert, default python3),
# DEVICE_PYTHON (interpreter for .venv-device; default: the first of python3.11, python3.10 that runs;
# "none" leaves the tflite-runtime leg out), KIT_VENV_SUFFIX (appended to the three folder names, e.g.
# "-py3.13" keeps a second set beside the first), ARTIFACTS (where demo writes, default ./artifacts).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
ARTIFACTS="${ARTIFACTS:-$ROOT/artifacts}"
RECBOLE="recbole==1.2.1"   # offline MovieLens 100K carrier, installed without dependencies

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'kit.sh: error: %s\n' "$*" >&2; exit 2; }

SUFFIX="${KIT_VENV_SUFFIX:-}"
[[ "$SUFFIX" =~ ^[A-Za-z0-9._-]*$ ]] \
    || die "KIT_VENV_SUFFIX='$SUFFIX' may hold only letters, digits, '.', '_' and '-' (e.g. -py3.13)"
MAIN_VENV="$ROOT/.venv$SUFFIX"
TFLITE_VENV="$ROOT/.venv-device$SUFFIX"
LITERT_VENV="$ROOT/.venv-device-litert$SUFFIX"
# The TensorFlow-free tests each device leg runs (pytest arguments).
DEVICE_PYTEST_ARGS=(tests/device_runtime tests/convert tests/benchmarks -m "not tensorflow and not plot")
TESTED_PYTHONS="3.10 to 3.13"   # pyproject.toml's requires-python and classifiers

version_of() { "$1" -c 'import platform; print(platform.python_version())'; }

pick_python() {
    local candidate="${PYTHON:-python3}"
    command -v "$candidate" >/dev/null 2>&1 \
        || die "$candidate not found; install Python 3.10+ or set PYTHON=/path/to/python3"
    "$candidate" -c 'import sys' 2>/dev/null \
        || die "$candidate is on PATH but does not run (a pyenv shim of a version not selected?);" \
            "set PYTHON=/path/to/python3"
    "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' \
        || die "$candidate is Python $(version_of "$candidate"); the kit runs on Python $TESTED_PYTHONS" \
            "(docs/pythons.md); set PYTHON=/path/to/python3.13 or another in that range"
    "$candidate" -c 'import venv, ensurepip' 2>/dev/null \
        || die "$candidate cannot create virtual environments; install its venv module" \
            "(Debian: apt-get install python3-venv)"
    echo "$candidate"
}

# Sets TFLITE_PYTHON to the interpreter of the tflite-runtime leg, or TFLITE_SKIPPED to why that leg does not run.
choose_tflite_python() {
    TFLITE_PYTHON="" TFLITE_SKIPPED=""
    local requested="${DEVICE_PYTHON:-}" candidate
    if [[ "$requested" == none ]]; then
        TFLITE_SKIPPED="DEVICE_PYTHON=none"
        return 0
    fi
    if [[ -n "$requested" ]]; then
        runs_tflite_runtime "$requested" \
            || die "DEVICE_PYTHON=$requested is not a Python 3.10 or 3.11 with the venv module (tflite-runtime 2.14" \
                "has wheels for cp310 and cp311 only); point it at one, or set DEVICE_PYTHON=none"
        TFLITE_PYTHON="$requested"
        return 0
    fi
    for candidate in python3.11 python3.10; do
        if runs_tflite_runtime "$candidate"; then TFLITE_PYTHON="$candidate"; return 0; fi
    done
    TFLITE_SKIPPED="no Python 3.10 or 3.11 with venv on PATH (tflite-runtime 2.14 has wheels for cp310 and cp311"
    TFLITE_SKIPPED+=" only); install python3.11 or set DEVICE_PYTHON=/path/to/python3.11 to add this leg"
}

runs_tflite_runtime() {
    command -v "$1" >/dev/null 2>&1 \
        && "$1" -c 'import sys, venv, ensurepip; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 11))' 2>/dev/null
}

# An environment's stamp: pyproject.toml, what goes into it, and the interpreter that made it
# (its version and real path), so a change of any of them re-creates the environment.
stamp_of() {
    local python="$1"; shift
    { cat pyproject.toml; printf '%s\n' "$@"; } | "$python" -c 'import hashlib, os, sys
digest = hashlib.sha256(sys.stdin.buffer.read())
digest.update(f"{sys.version}\n{os.path.realpath(sys.executable)}".encode())
print(digest.hexdigest())'
}

# ensure_venv FOLDER PYTHON DESCRIPTION REQUIREMENT... [--no-deps REQUIREMENT...]
# Creates FOLDER with PYTHON and installs the requirements, unless its stamp is unchanged.
ensure_venv() {
    local folder="$1" python="$2" description="$3"; shift 3
    local stamp; stamp="$(stamp_of "$python" "$@")"
    if [[ -f "$folder/.kit-stamp" && "$(cat "$folder/.kit-stamp")" == "$stamp" ]]; then return 0; fi
    local with_deps=() without_deps=()
    while (($#)); do
        if [[ "$1" == --no-deps ]]; then shift; without_deps=("$@"); break; fi
        with_deps+=("$1"); shift
    done
    say "creating $description in ${folder#"$ROOT"/} (Python $(version_of "$python"))"
    rm -rf "$folder"
    "$python" -m venv "$folder"
    "$folder/bin/python" -m pip install --quiet --upgrade pip
    "$folder/bin/python" -m pip install --quiet "${with_deps[@]}"
    if ((${#without_deps[@]})); then "$folder/bin/python" -m pip install --quiet --no-deps "${without_deps[@]}"; fi
    echo "$stamp" > "$folder/.kit-stamp"
}

setup_main() {
    MAIN_PYTHON="$(pick_python)"
    ensure_venv "$MAIN_VENV" "$MAIN_PYTHON" "the main environment (TensorFlow, TFRS, LiteRT; about a minute)" \
        -e ".[train,device,bench,dev]" --no-deps "$RECBOLE"
}

# The device legs: the base install (numpy), one interpreter package and the test tools; never TensorFlow.
setup_device_legs() {
    choose_tflite_python
    if [[ -n "$TFLITE_PYTHON" ]]; then
        ensure_venv "$TFLITE_VENV" "$TFLITE_PYTHON" "the tflite-runtime device environment (numpy<2, no TensorFlow)" \
            ".[dev]" "tflite-runtime==2.14.0" "numpy<2"
    fi
    ensure_venv "$LITERT_VENV" "$MAIN_PYTHON" "the LiteRT device environment (numpy 2, no TensorFlow)" \
        ".[device,dev]" "numpy>=2"
    local litert="LiteRT + numpy 2 on Python $(version_of "$LITERT_VENV/bin/python") (${LITERT_VENV#"$ROOT"/})"
    if [[ -n "$TFLITE_PYTHON" ]]; then
        say "device legs: tflite-runtime + numpy<2 on Python $(version_of "$TFLITE_VENV/bin/python")" \
            "(${TFLITE_VENV#"$ROOT"/}), and $litert"
    else
        say "device legs: $litert only; the tflite-runtime leg does not run: $TFLITE_SKIPPED"
    fi
}

run_demo() {
    setup_main
    local py="$MAIN_VENV/bin/python"
    mkdir -p "$ARTIFACTS"
    say "1/4 training the default model on the offline MovieLens 100K copy"
    "$py" -m train --out "$ARTIFACTS/model"

    say "2/4 converting to .tflite and validating each variant (signature, ops, parity, runtimes)"
    local device=()
    [[ -x "$TFLITE_VENV/bin/python" ]] && device=(--runtime-python "$TFLITE_VENV/bin/python")
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
    say "    ... and for a user the model never saw, from three of their own ratings (personalized on the device)"
    printf 'Star Wars (1977)\t5\nFargo (1996)\t4\nToy Story (1995)\t1\n' > "$ARTIFACTS/new-user-ratings.tsv"
    "$py" -m device_runtime rank --model "$ARTIFACTS/model-none.tflite" \
        --history-file "$ARTIFACTS/new-user-ratings.tsv" --all --top-k 10

    say "4/4 a short latency benchmark of the float32 model (the SavedModel as server-side reference)"
    "$py" -m benchmarks latency --model "$ARTIFACTS/model-none.tflite" --backend litert \
        --candidates 1,10,100,1000,all --runs 100 --min-seconds 1 --warmup 10 \
        --out "$ARTIFACTS/latency.json" --csv "$ARTIFACTS/latency.csv" --plot "$ARTIFACTS/latency.png"

    say "done: models and reports in $ARTIFACTS (conversion summary: $ARTIFACTS/conversion.md)"
}

# run_suite LABEL COMMAND...: runs one suite, adds "LABEL: passed/FAILED in N s" to RESULTS.
run_suite() {
    local label="$1"; shift
    say "$label"
    local started=$SECONDS
    if "$@"; then
        RESULTS+=("$label: passed in $((SECONDS - started)) s")
    else
        RESULTS+=("$label: FAILED in $((SECONDS - started)) s")
        FAILED=1
    fi
}

run_tests() {
    setup_main
    setup_device_legs
    local work; work="$(mktemp -d)"
    trap "rm -rf '$work'" EXIT
    local fixtures="$work/device-fixtures"
    say "building the device-runtime test models in the main environment"
    "$MAIN_VENV/bin/python" -m tests.device_runtime.make_fixtures "$fixtures"
    RESULTS=() FAILED=0
    run_suite "main environment, Python $(version_of "$MAIN_VENV/bin/python"): the whole suite (TensorFlow, LiteRT)" \
        env KIT_DEVICE_FIXTURES="$fixtures" "$MAIN_VENV/bin/python" -m pytest -q
    # Each leg runs the same TensorFlow-free tests and checks its own claim (tests/device_runtime/device_env.py).
    if [[ -n "$TFLITE_PYTHON" ]]; then
        run_suite "device leg tflite-runtime, Python $(version_of "$TFLITE_VENV/bin/python"): numpy<2, no TensorFlow" \
            env KIT_DEVICE_FIXTURES="$fixtures" KIT_DEVICE_INTERPRETER=tflite_runtime \
            "$TFLITE_VENV/bin/python" -m pytest -q "${DEVICE_PYTEST_ARGS[@]}"
    else
        RESULTS+=("device leg tflite-runtime: not run: $TFLITE_SKIPPED")
    fi
    run_suite "device leg LiteRT, Python $(version_of "$LITERT_VENV/bin/python"): numpy 2, no TensorFlow" \
        env KIT_DEVICE_FIXTURES="$fixtures" KIT_DEVICE_INTERPRETER=ai_edge_litert \
        "$LITERT_VENV/bin/python" -m pytest -q "${DEVICE_PYTEST_ARGS[@]}"
    say "summary (kit.sh test took $SECONDS s, setup included)"
    printf '    %s\n' "${RESULTS[@]}" >&2
    ((FAILED == 0)) || exit 1
}

run_arm() {
    setup_main
    local py="$MAIN_VENV/bin/python"
    local work; work="$(mktemp -d)"
    trap "rm -rf '$work'" EXIT
    say "aarch64 under qemu: the tutorial model (float32, float16, dynamic-int8) and the default model (the same and"\
        "weight-only-int8: index-space and personalized signatures too) on tflite-runtime and LiteRT"
    "$py" -m train --out "$work/model" --preset tutorial --quiet
    "$py" -m train --out "$work/default" --preset default --quiet
    local mode
    for mode in none float16 dynamic-int8; do
        "$py" -m convert "$work/model" --out "$work/model-$mode.tflite" --quantize "$mode" --target litert >/dev/null
    done
    for mode in none float16 dynamic-int8 weight-only-int8; do
        "$py" -m convert "$work/default" --out "$work/default-$mode.tflite" --quantize "$mode" --target litert \
            >/dev/null
    done
    "$py" -m tests.device_runtime.make_fixtures "$work/device-fixtures"
    KIT_PYTHON="$py" scripts/aarch64/run.sh "$work"/model-{none,float16,dynamic-int8}.tflite \
        "$work"/default-{none,float16,dynamic-int8,weight-only-int8}.tflite \
        --users "${ARM_PARITY_USERS:-200}" --fixtures "$work/device-fixtures" --work-dir "$work/aarch64"
}

case "${1:-}" in
    demo) run_demo ;;
    test) run_tests ;;
    arm) run_arm ;;
    setup) setup_main; setup_device_legs ;;
    *) echo "usage: ./kit.sh demo | test | arm | setup" >&2; exit 2 ;;
esac
