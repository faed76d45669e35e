"""Running a converted file on every installed runtime, and what that means for each target.

The per-runtime work happens in `convert.runtime_probe` (in this Python, and
in any other Python given with --runtime-python); this module turns its
results into `RuntimeCheck`s, picks the interpreter for the parity figures,
and gives each requested target its verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from convert import runtime_probe
from convert.errors import InputError, TargetError
from convert.results import CheckFailure, DelegateRun, OpInfo, RuntimeCheck, SignatureRun, TargetCheck
from convert.targets import TARGETS, Target
from convert.tflite import target_op_problems
from device_runtime.backends import Backend, Delegates, create_interpreter, import_backend
from device_runtime.signature import SignatureMapping

RUNTIME_PROBE_TIMEOUT_SECONDS = 300
# Every runtime that runs the file must agree with the SavedModel this closely on
# the probe batch. A guard against a runtime computing something else (a wrong
# kernel, misread weights); precision is held by the parity bounds.
RUNTIME_MAX_ABS_DIFF = 0.05
# The order in which runtimes are preferred for the parity figures.
PARITY_PREFERENCE = (Backend.LITERT, Backend.TFLITE_RUNTIME, Backend.TENSORFLOW)


def run_everywhere(
    model_path: Path,
    calls: Mapping[str, Mapping[str, np.ndarray]],
    expected: Mapping[str, Mapping[str, np.ndarray]],
    pythons: Sequence[str],
    candidates: int,
) -> tuple[RuntimeCheck, ...]:
    """Calls every signature on each installed runtime, here and in `pythons`, against the SavedModel.

    Args:
        model_path: the .tflite to run.
        calls: signature key -> its inputs by name (one realistic call each).
        expected: signature key -> the SavedModel's outputs for those inputs.
        pythons: other Python executables to run `convert.runtime_probe` in.
        candidates: how many candidates the strings call scores (for the report).

    Returns:
        One check per (runtime, version, Python), duplicates dropped.
    """
    encoded = {key: runtime_probe.encode_inputs(inputs) for key, inputs in calls.items()}
    raw = runtime_probe.probe_backends(str(model_path), encoded)
    for python in pythons:
        raw.extend(probe_in(python, model_path, encoded))
    checks = []
    seen = set()
    for entry in raw:
        key = (entry["runtime"], entry["version"], os.path.realpath(entry["python"]))
        if key in seen:
            continue
        seen.add(key)
        runs = {
            name: _delegate_run(entry.get(name), expected)
            for name in ("with_default_delegates", "without_default_delegates")
        }
        checks.append(
            RuntimeCheck(
                runtime=entry["runtime"],
                version=entry["version"],
                python=entry["python"],
                loads=entry["loads"],
                load_error=entry["load_error"],
                candidates=candidates,
                **runs,
            )
        )
    return tuple(checks)


def _delegate_run(run: Optional[dict], expected: Mapping[str, Mapping[str, np.ndarray]]) -> Optional[DelegateRun]:
    if run is None:
        return None
    signatures = {}
    for key, call in run["signatures"].items():
        difference = None if call["outputs"] is None else _max_difference(call["outputs"], expected[key])
        signatures[key] = SignatureRun(call["runs"], call["error"], call["latency_ms"], difference)
    differences = [s.max_abs_diff for s in signatures.values() if s.max_abs_diff is not None]
    first = next(iter(signatures.values()), None)
    return DelegateRun(
        runs=run["runs"],
        error=run["error"],
        latency_ms=first.latency_ms if first is not None else None,  # the strings signature comes first
        max_abs_diff=max(differences) if differences else None,
        signatures=signatures,
    )


def _max_difference(outputs: Mapping[str, list], expected: Mapping[str, np.ndarray]) -> float:
    """The largest |output - expected| over the float outputs (top-k scores come sorted on both sides)."""
    largest = 0.0
    for name, reference in expected.items():
        reference = np.asarray(reference)
        if reference.dtype.kind != "f":
            continue  # top-k rows may swap on near-ties; parity judges them
        found = np.asarray(outputs.get(name, []), np.float64).reshape(-1)
        if found.shape != reference.reshape(-1).shape:
            return float("inf")
        largest = max(largest, float(np.max(np.abs(found - reference.reshape(-1)), initial=0.0)))
    return largest


def probe_in(python: str, model_path: Path, calls: Mapping[str, dict]) -> list[dict]:
    request = {
        "model_path": str(model_path),
        "calls": calls,
        "backends": [Backend.LITERT.value, Backend.TFLITE_RUNTIME.value],
    }
    request_path = model_path.with_name("probe-request.json")
    request_path.write_text(json.dumps(request), encoding="utf-8")
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        completed = subprocess.run(
            [python, "-m", "convert.runtime_probe", str(request_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=RUNTIME_PROBE_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0:
            raise ValueError(
                completed.stderr.strip().splitlines()[-1]
                if completed.stderr.strip()
                else f"exit {completed.returncode}"
            )
        return json.loads(completed.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as error:
        raise InputError(
            f"--runtime-python {python} could not run the runtime probe ({error}); "
            "it needs numpy and an interpreter package (tflite-runtime or ai-edge-litert)"
        ) from None


class TfliteScorer:
    """Scores pairs with one interpreter's signature runner, inputs by name."""

    def __init__(self, runner: Any, mapping: SignatureMapping):
        self._runner = runner
        self._mapping = mapping

    def __call__(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        outputs = self._runner(
            **{
                self._mapping.user_input: runtime_probe.encode_strings(users),
                self._mapping.item_input: runtime_probe.encode_strings(items),
            }
        )
        return np.asarray(outputs[self._mapping.output], np.float32).reshape(-1)


def parity_interpreter(model_path: Path, mapping: SignatureMapping, runtimes: Sequence[RuntimeCheck]):
    """Opens the preferred runtime that ran the file in this Python (default delegates if all signatures ran with them).

    Returns:
        (the strings signature's scorer, the interpreter, a label naming the runtime and its delegates).
    """
    here = os.path.realpath(sys.executable)
    for backend in PARITY_PREFERENCE:
        for check in runtimes:
            if check.runtime != backend.value or os.path.realpath(check.python) != here or not check.runs:
                continue
            with_delegates = check.with_default_delegates is not None and check.with_default_delegates.runs
            interpreter = create_interpreter(
                import_backend(backend),
                model_path=model_path,
                delegates=Delegates.DEFAULT if with_delegates else Delegates.NONE,
            )
            runner = interpreter.get_signature_runner(mapping.signature_key)
            label = f"{check.label} ({'default delegates' if with_delegates else 'builtin kernels only'})"
            return TfliteScorer(runner, mapping), interpreter, label
    reasons = "; ".join(
        f"{c.label}: {c.load_error or (c.with_default_delegates and c.with_default_delegates.error) or 'failed'}"
        for c in runtimes
    )
    raise TargetError(
        [
            CheckFailure(
                check="runtime",
                message=f"no installed runtime could run the converted file ({reasons or 'none installed'})",
            )
        ]
    )


def runtime_disagreements(runtimes: Sequence[RuntimeCheck]) -> list[CheckFailure]:
    """Runs whose scores differ from the SavedModel's by more than `RUNTIME_MAX_ABS_DIFF`."""
    failures = []
    for check in runtimes:
        for label, run in (
            ("default delegates", check.with_default_delegates),
            ("builtin kernels", check.without_default_delegates),
        ):
            if run is None:
                continue
            for key, call in run.signatures.items():
                if call.runs and call.max_abs_diff is not None and call.max_abs_diff > RUNTIME_MAX_ABS_DIFF:
                    failures.append(
                        CheckFailure(
                            check=f"runtime.{check.runtime}.{key}",
                            message=f"{check.label} with {label} differs from the SavedModel by "
                            f"{call.max_abs_diff:.3g} on {key} (must be <= {RUNTIME_MAX_ABS_DIFF:g}): it computes "
                            "something else; do not ship to it",
                            figure=call.max_abs_diff,
                            bound=RUNTIME_MAX_ABS_DIFF,
                        )
                    )
    return failures


def check_target(target: Target, ops: Sequence[OpInfo], runtimes: Sequence[RuntimeCheck]) -> TargetCheck:
    """Holds the op table and the runtime results against one target's needs."""
    spec = TARGETS[target]
    notes = target_op_problems(ops, spec)
    op_versions_ok = not notes
    installed = [check for check in runtimes if check.runtime == spec.runtime]
    if not installed:
        notes.append(
            f"{spec.runtime} is not installed in any Python tried; checked against the op-version table only "
            "(pass --runtime-python with a Python that has it)"
        )
        return TargetCheck(target.value, op_versions_ok, None, tuple(notes))
    check = next((c for c in installed if c.version.startswith(spec.version_prefix)), installed[0])
    if not check.version.startswith(spec.version_prefix):
        notes.append(f"tried {check.label}; the op table was measured on {spec.version_prefix}")
    default = check.with_default_delegates
    builtin = check.without_default_delegates
    if not check.loads:
        notes.append(f"{check.label} cannot load it: {check.load_error}")
        return TargetCheck(target.value, op_versions_ok, False, tuple(notes))
    if default is not None and default.runs:
        return TargetCheck(target.value, op_versions_ok, True, tuple(notes))
    reason = default.error if default is not None else "not tried"
    if spec.requires_default_delegates:
        notes.append(f"{check.label} fails with its default delegates (XNNPACK): {reason}")
        return TargetCheck(target.value, op_versions_ok, False, tuple(notes))
    if builtin is not None and builtin.runs:
        notes.append(
            f"runs on {check.label} only with builtin kernels: the default delegate (XNNPACK) fails ({reason})"
        )
        return TargetCheck(target.value, op_versions_ok, True, tuple(notes))
    notes.append(f"{check.label} loads it but cannot run it: {reason}; {builtin.error if builtin else ''}".rstrip("; "))
    return TargetCheck(target.value, op_versions_ok, False, tuple(notes))
