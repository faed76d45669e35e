"""The preset evaluation: every preset and seed trained, converted and timed; results.json and the table written.

    evaluation = evaluate_presets(PresetSettings(out=Path("results"), presets=("tutorial",), seeds=(0,)))
    markdown = write_outputs(evaluation, command="python -m evaluation presets --out results ...")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from benchmarks.machine import describe_machine
from device_runtime.files import write_atomically
from evaluation.aggregate import summarize
from evaluation.errors import SettingsError
from evaluation.presets_table import format_markdown
from evaluation.provenance import utc_now
from evaluation.records import ANCHORS, Evaluation
from evaluation.settings import RESULTS_FILE, PresetSettings
from evaluation.steps import evaluate_seed

logger = logging.getLogger(__name__)

# Marks a folder this tool wrote, so that a later run may clear it (and no other folder).
MARKER_FILE = ".evaluation-presets"
MARKER_TEXT = "written by python -m evaluation presets; a later run clears this folder\n"
RESULTS_FORMAT_VERSION = 2
RESULTS_KIND = "ranking-kit preset evaluation"


def prepare_output(out: Path) -> None:
    """Creates the output folder, or clears one this tool wrote before, and marks it as this tool's.

    Raises:
        SettingsError: `out` is a file, or a non-empty folder this tool did not write.
    """
    if out.exists() and not out.is_dir():
        raise SettingsError(f"--out {out} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER_FILE).is_file():
            raise SettingsError(f"--out {out} is a non-empty folder this tool did not write; "
                                "give a new or empty folder")
        logger.info("clearing the earlier evaluation in %s", out)
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / MARKER_FILE, MARKER_TEXT)


def evaluate_presets(settings: PresetSettings) -> Evaluation:
    """Trains, converts and times every preset and seed.

    Args:
        settings: presets, seeds, variants and the output folder.

    Returns:
        Every figure measured, per seed. A variant that fails the converter's
        checks, or whose latency cannot be measured, is recorded, not raised.

    Raises:
        SettingsError: the output folder cannot be used.
        train.TrainError: training failed (bad data, output folder in use).
        convert.ConvertError: a conversion could not even start.
    """
    started, started_at = time.perf_counter(), utc_now()
    prepare_output(settings.out)
    machine = describe_machine({})  # before training, so the load average is other people's
    runs = []
    total = len(settings.presets) * len(settings.seeds)
    for preset in settings.presets:
        for seed in settings.seeds:
            logger.info("[%d/%d] %s seed %d", len(runs) + 1, total, preset, seed)
            folder = settings.out / preset / f"seed-{seed}"
            runs.append(evaluate_seed(preset, seed, settings.variants, folder, settings.max_train_rows))
    backends = {v.latency.backend: v.latency.backend_version for r in runs for v in r.variants if v.latency}
    machine = dataclasses.replace(machine, backends=backends)
    return Evaluation(settings, machine, started_at, tuple(runs), time.perf_counter() - started)


def results_document(evaluation: Evaluation, command: str) -> dict:
    """The JSON document: settings, command, machine, anchors, summaries per preset, and every run."""
    settings = evaluation.settings
    return {
        "format_version": RESULTS_FORMAT_VERSION,
        "kind": RESULTS_KIND,
        "command": command,
        "started_at": evaluation.started_at,
        "wall_seconds": round(evaluation.wall_seconds, 1),
        "settings": settings.to_dict(),
        "machine": evaluation.machine.to_dict(),
        "anchors": [dataclasses.asdict(anchor) for anchor in ANCHORS],
        "summary": {
            preset: summarize(preset, evaluation.runs_of(preset), settings.variants).to_dict()
            for preset in settings.presets
        },
        "runs": [dataclasses.asdict(run) for run in evaluation.runs],
    }


def write_outputs(evaluation: Evaluation, command: str) -> str:
    """Writes OUT/results.json and the Markdown table, each atomically.

    Args:
        evaluation: what was measured.
        command: the command line that produced it (recorded in both files).

    Returns:
        The Markdown text.
    """
    document = results_document(evaluation, command)
    write_atomically(evaluation.settings.out / RESULTS_FILE, json.dumps(document, indent=2) + "\n")
    markdown = format_markdown(evaluation, command)
    write_atomically(evaluation.settings.markdown_path, markdown)
    return markdown
