"""Command line: `python -m train --out DIR [--preset NAME] [--data SOURCE] [--epochs N] [--seed N] [--quiet]`.

`--holdout-users FRACTION` holds that share of the users out of training
entirely (chosen from `--seed`; see `train.holdout`), for measuring
personalization on users the model never saw.

Multi-worker: set TF_CONFIG on every machine and run the same command there,
or run `--local-workers N` to start N workers on this machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from device_runtime.command_line import EXIT_USAGE, OneLineParser
from train.config import DEFAULT_PRESET, PRESETS
from train.data import DEFAULT_SOURCE
from train.errors import ConfigError, TrainError


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m train",
        description="Train the MovieLens ranking model and export it (saved_model/, metrics.json, vocab/).",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="export folder (created atomically; an earlier export is replaced)"
    )
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=sorted(PRESETS),
        help=f"hyper-parameter preset (default: {DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--data",
        default=DEFAULT_SOURCE,
        help="'recbole' (offline MovieLens 100K, default), 'tfds' (downloads), a GroupLens ml-100k folder, "
        "or a folder of sharded TSV files (train-*.tsv, test-*.tsv; see docs/cluster.md)",
    )
    parser.add_argument("--epochs", type=int, help="override the preset's (maximum) number of epochs")
    parser.add_argument("--batch-size", type=int, help="override the preset's (global) batch size")
    parser.add_argument("--seed", type=int, help="training seed (the test split always uses the tutorial's seed 42)")
    parser.add_argument("--max-train-rows", type=int, help="train on the first N training rows only (quick checks)")
    parser.add_argument(
        "--local-workers", type=int, help="start N worker processes on this machine (multi-worker training)"
    )
    parser.add_argument(
        "--worker-timeout", type=float, default=None, help="seconds before stuck workers are stopped (default 1800)"
    )
    parser.add_argument(
        "--holdout-users",
        metavar="FRACTION",
        help="hold this share of the users (0 < FRACTION < 1) out of training entirely; their ids go to "
        "OUT/holdout_users.txt, chosen from --seed (for `python -m evaluation personalization`)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        _check_options(args)
        if args.local_workers is not None:
            return _launch(args, argv)
        return _train(args)
    except TrainError as error:
        print(f"train: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("train: interrupted; the output folder was not changed", file=sys.stderr)
        return 130


def _check_options(args) -> None:
    """Refuses bad option values with one line, before any work (ConfigError)."""
    from train.config import preset_config
    from train.pipeline import check_run_options

    preset_config(args.preset, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size)
    check_run_options(args.data, args.max_train_rows, _worker_timeout(args), _holdout_fraction(args))
    if args.local_workers is not None and args.local_workers < 1:
        raise ConfigError(f"--local-workers must be >= 1, got {args.local_workers}")


def _worker_timeout(args) -> float:
    from train.distributed import DEFAULT_WORKER_TIMEOUT_SECONDS

    return DEFAULT_WORKER_TIMEOUT_SECONDS if args.worker_timeout is None else args.worker_timeout


def _holdout_fraction(args):
    from train.holdout import parse_fraction

    return None if args.holdout_users is None else parse_fraction(args.holdout_users)


def _train(args) -> int:
    from train import distributed
    from train.config import preset_config

    cluster = distributed.cluster_from_environment()
    config = preset_config(args.preset, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size)
    if cluster and not cluster.is_chief:
        logging.getLogger().handlers[0].setFormatter(logging.Formatter(f"worker {cluster.task_index}: %(message)s"))
    from train.pipeline import train_and_export

    _quiet_tensorflow()
    result = train_and_export(
        config,
        args.out,
        data_source=args.data,
        max_train_rows=args.max_train_rows,
        cluster=cluster,
        lock_output=not os.environ.get(distributed.WORKER_ENV),
        holdout_fraction=_holdout_fraction(args),
    )
    if not args.quiet and (cluster is None or cluster.is_chief):
        keys = ("preset", "test_rmse", "train_rmse", "epochs_run", "wall_seconds")
        print(json.dumps({"out": str(result.out_dir), **{key: result.metrics[key] for key in keys}}))
    return 0


def _launch(args, argv) -> int:
    """Starts the workers, waits for them, and adds their figures to metrics.json."""
    from train import artifacts, distributed

    if os.environ.get("TF_CONFIG"):
        raise TrainError("--local-workers starts its own cluster; unset TF_CONFIG or drop --local-workers")
    worker_args = _without_option(argv, "--local-workers")
    with artifacts.output_lock(args.out):
        artifacts.check_output_folder(args.out)
        launched = distributed.launch_local_workers(args.local_workers, worker_args, _worker_timeout(args))
        metrics_path = args.out / artifacts.METRICS_FILE
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        metrics["distribution"]["worker_peak_rss_mb"] = [round(w.peak_rss_mb, 1) for w in launched.workers]
        metrics["distribution"]["launcher_wall_seconds"] = round(launched.wall_seconds, 3)
        artifacts.write_json_atomically(metrics_path, metrics)
    if not args.quiet:
        keys = ("preset", "test_rmse", "train_rmse", "epochs_run", "train_examples_per_second")
        summary = {key: metrics[key] for key in keys}
        print(json.dumps({"out": str(args.out), "workers": args.local_workers, **summary, **metrics["distribution"]}))
    return 0


def _without_option(argv, name: str) -> list:
    cleaned, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == name:
            skip = True
        elif not item.startswith(name + "="):
            cleaned.append(item)
    return cleaned


def _quiet_tensorflow() -> None:
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
