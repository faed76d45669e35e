"""Command line: measure the kit's own figures end to end, and write them with the command and machine beside them.

    python -m evaluation presets --out DIR [--presets tutorial,default] [--seeds 0,1,2]
        [--variants none,float16,dynamic-int8,weight-only-int8] [--max-train-rows N] [--markdown FILE] [-v]
    python -m evaluation scale --out DIR [--rows 1000000,10000000] [--workers 1,2] [--preset tutorial]
        [--work-dir DIR] [--batch-size N] [--users N] [--items N] [--timeout S] [--markdown FILE] [-v]
    python -m evaluation personalization --model HOLDOUT.tflite --reference FULL.tflite
        --holdout-users DIR/holdout_users.txt --out DIR [--rows FILE] [--seed N] [--ks 0,1,3,5,10,20,50,all]
        [--backend NAME] [--markdown FILE] [-v]

Exit codes: 0 done (variants that fail the converter's checks are reported in
the table); 2 a setting is wrong or a step could not run (one line on stderr
says what and how to fix it); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import convert
import train
from benchmarks import BenchmarkError
from benchmarks.config import parse_positive_ints
from device_runtime.command_line import EXIT_USAGE, OneLineParser
from device_runtime.errors import DeviceRuntimeError, one_line
from evaluation import personalization, scale
from evaluation.errors import EvaluationError, StepError
from evaluation.presets import evaluate_presets, write_outputs
from evaluation.provenance import PROGRAM, command_text
from evaluation.settings import (
    DEFAULT_PRESETS,
    DEFAULT_SEEDS,
    TABLE_FILE,
    VARIANTS,
    PresetSettings,
    parse_names,
    parse_seeds,
    parse_variants,
)

EXIT_INTERRUPTED = 130
# Library loggers that are quiet unless --verbose.
QUIET_LOGGERS = ("train", "convert", "device_runtime", "benchmarks")
NOISY_LOGGERS = ("absl", "tensorflow")  # Keras warns at every save that the TFRS model has no get_config()


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    presets = commands.add_parser("presets", help="train, convert and time every preset over several seeds")
    presets.add_argument("--out", required=True, type=Path,
                         help="output folder (created; a folder this command wrote before is cleared)")
    presets.add_argument("--presets", default=",".join(DEFAULT_PRESETS),
                         help=f"training presets, comma separated (default: {','.join(DEFAULT_PRESETS)})")
    presets.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                         help=f"training seeds, comma separated (default: {','.join(map(str, DEFAULT_SEEDS))})")
    presets.add_argument("--variants", default=",".join(q.value for q in VARIANTS),
                         help="the converter's --quantize modes to evaluate, comma separated; none = float32 "
                         "(default: all four)")
    presets.add_argument("--max-train-rows", type=int, metavar="N",
                         help="train on the first N training rows only: a quick check, not the presets' figures")
    presets.add_argument("--markdown", type=Path, metavar="FILE",
                         help=f"the Markdown table (default: OUT/{TABLE_FILE})")
    presets.add_argument("-v", "--verbose", action="store_true", help="also show the training and conversion logs")

    scaling = commands.add_parser("scale", help="training throughput and memory on synthetic sharded data")
    scaling.add_argument("--out", required=True, type=Path,
                         help=f"folder for {scale.RESULTS_FILE} and {scale.TABLE_FILE} (created)")
    scaling.add_argument("--rows", default=",".join(map(str, scale.DEFAULT_ROWS)),
                         help="synthetic row counts, comma separated (default: %(default)s)")
    scaling.add_argument("--workers", default=",".join(map(str, scale.DEFAULT_WORKERS)),
                         help="local worker counts, comma separated (default: %(default)s)")
    scaling.add_argument("--preset", default=scale.DEFAULT_PRESET, choices=sorted(train.PRESETS),
                         help="the preset to train; it must train on sharded data (default: %(default)s)")
    scaling.add_argument("--work-dir", type=Path, default=scale.DEFAULT_WORK_DIR,
                         help="where synthetic data is generated and cached (default: %(default)s)")
    scaling.add_argument("--batch-size", type=int, default=scale.DEFAULT_BATCH_SIZE,
                         help="global batch (default: %(default)s)")
    scaling.add_argument("--users", type=int, default=scale.DEFAULT_USERS,
                         help="synthetic users (default: %(default)s)")
    scaling.add_argument("--items", type=int, default=scale.DEFAULT_ITEMS,
                         help="synthetic items (default: %(default)s)")
    scaling.add_argument("--timeout", type=float, default=scale.DEFAULT_TIMEOUT_SECONDS,
                         help="seconds before stuck workers are stopped, as train's --worker-timeout "
                         "(default: %(default)s)")
    scaling.add_argument("--markdown", type=Path, metavar="FILE",
                         help=f"the Markdown table (default: OUT/{scale.TABLE_FILE})")
    scaling.add_argument("-v", "--verbose", action="store_true", help="also show the training logs")
    _add_personalization(commands)
    return parser


def _add_personalization(commands) -> None:
    command = commands.add_parser(
        "personalization",
        help="personalize users held out of training through the converted .tflite (no TensorFlow needed)",
    )
    command.add_argument("--model", required=True, type=Path,
                         help="the .tflite of a model trained with `python -m train --holdout-users FRACTION`")
    command.add_argument("--reference", required=True, type=Path,
                         help="the .tflite of the same preset trained WITH those users (without --holdout-users)")
    command.add_argument("--holdout-users", required=True, type=Path, metavar="FILE",
                         help="the holdout_users.txt that training wrote beside the held-out model")
    command.add_argument("--rows", type=Path, metavar="FILE",
                         help="their rows of the split (default: the holdout_rows.tsv beside --holdout-users)")
    command.add_argument("--seed", type=int, default=0,
                         help="orders each user's training rows into their history (default: %(default)s)")
    command.add_argument("--ks", default=",".join(map(personalization.k_label, personalization.DEFAULT_KS)),
                         help="history lengths, comma separated; all = every training row (default: %(default)s)")
    command.add_argument("--backend", default="auto",
                         help="the interpreter: auto, litert or tflite_runtime (default: %(default)s)")
    command.add_argument("--out", required=True, type=Path,
                         help=f"folder for {personalization.RESULTS_FILE} and {personalization.TABLE_FILE} (created)")
    command.add_argument("--markdown", type=Path, metavar="FILE",
                         help=f"the Markdown table (default: OUT/{personalization.TABLE_FILE})")
    command.add_argument("-v", "--verbose", action="store_true", help="also show the runtime's logs")


def _presets(args: argparse.Namespace, command: str) -> str:
    settings = PresetSettings(
        out=args.out,
        presets=parse_names(args.presets),
        seeds=parse_seeds(args.seeds),
        variants=parse_variants(args.variants),
        max_train_rows=args.max_train_rows,
        markdown=args.markdown,
    )
    evaluation = evaluate_presets(settings)
    markdown = _written(lambda: write_outputs(evaluation, command))
    logging.getLogger("evaluation").info("wrote %s in %.1f min", settings.out, evaluation.wall_seconds / 60)
    return markdown


def _scale(args: argparse.Namespace, command: str) -> str:
    settings = scale.ScaleSettings(
        out=args.out,
        rows=parse_positive_ints(args.rows, "--rows"),
        workers=parse_positive_ints(args.workers, "--workers"),
        preset=args.preset,
        work_dir=args.work_dir,
        batch_size=args.batch_size,
        users=args.users,
        items=args.items,
        timeout_seconds=args.timeout,
        markdown=args.markdown,
    )
    results = scale.run_scale(settings)
    return _written(lambda: scale.write_scale_outputs(results, command))


def _personalization(args: argparse.Namespace, command: str) -> str:
    settings = personalization.PersonalizationSettings(
        model=args.model,
        reference=args.reference,
        holdout_users=args.holdout_users,
        rows=args.rows,
        out=args.out,
        seed=args.seed,
        ks=personalization.parse_ks(args.ks),
        markdown=args.markdown,
        backend=args.backend,
    )
    result = personalization.evaluate_personalization(settings)
    return _written(lambda: personalization.write_outputs(result, command))


def _written(write) -> str:
    """Runs a write of the results, turning a file-system failure into a StepError."""
    try:
        return write()
    except OSError as error:
        raise StepError(f"cannot write the results: {error.strerror or one_line(error)} ({error.filename})") from None


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    if not verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run = {"presets": _presets, "scale": _scale, "personalization": _personalization}[args.command]
    try:
        markdown = run(args, command_text(argv))
    except (EvaluationError, BenchmarkError, train.TrainError, convert.ConvertError, DeviceRuntimeError) as error:
        print(f"{PROGRAM} {args.command}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROGRAM} {args.command}: interrupted; the output folder may hold a partial run", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
