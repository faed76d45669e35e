"""Command line: `python -m train --out DIR [--preset NAME] [--data SOURCE] [--epochs N] [--seed N] [--quiet]`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from train.data import DEFAULT_SOURCE
from train.errors import TrainError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    from train.config import DEFAULT_PRESET, PRESETS

    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train the MovieLens 100K ranking model and export it (saved_model/, metrics.json, vocab/).",
    )
    parser.add_argument("--out", required=True, type=Path, help="export folder (created atomically; an earlier export is replaced)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help=f"hyper-parameter preset (default: {DEFAULT_PRESET})")
    parser.add_argument(
        "--data",
        default=DEFAULT_SOURCE,
        help="'recbole' (offline copy, default), 'tfds' (downloads), or a GroupLens ml-100k folder",
    )
    parser.add_argument("--epochs", type=int, help="override the preset's (maximum) number of epochs")
    parser.add_argument("--seed", type=int, help="training seed (the test split always uses the tutorial's seed 42)")
    parser.add_argument("--max-train-rows", type=int, help="train on the first N training rows only (quick checks)")
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        from train.config import preset_config
        from train.pipeline import train_and_export

        _quiet_tensorflow()
        config = preset_config(args.preset, epochs=args.epochs, seed=args.seed)
        result = train_and_export(config, args.out, data_source=args.data, max_train_rows=args.max_train_rows)
    except TrainError as error:
        print(f"train: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("train: interrupted; the output folder was not changed", file=sys.stderr)
        return 130
    if not args.quiet:
        summary = {key: result.metrics[key] for key in ("preset", "test_rmse", "train_rmse", "epochs_run", "wall_seconds")}
        print(json.dumps({"out": str(result.out_dir), **summary}))
    return 0


def _quiet_tensorflow() -> None:
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
