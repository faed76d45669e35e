"""Training throughput and memory at scale: `python -m train.scale_benchmark`.

For each row count, generates a synthetic sharded data set (cached in the work
folder) and trains the tutorial preset on it for one epoch with 1, 2, ... local
workers, each run a fresh `python -m train --local-workers N` process tree.
Reports examples per second during `fit` and the peak resident memory of each
worker, which should stay flat as the data grows: rows are streamed, only the
vocabularies and a bounded shuffle buffer are held.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from train import artifacts
from train.errors import TrainError
from train.synthetic import SyntheticSpec, generate

logger = logging.getLogger(__name__)

DEFAULT_ROWS = "1000000,10000000"
DEFAULT_WORKERS = "1,2"
DEFAULT_BATCH = 32768
RESULTS_VERSION = 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(rows_list, workers_list, work_dir: Path, batch_size: int, users: int, items: int, timeout: float) -> dict:
    """Runs every (rows, workers) configuration; returns the results document."""
    records = []
    for rows in rows_list:
        data = work_dir / f"synthetic-{rows}-{users}-{items}"
        if not data.exists():
            logger.info("generating %s rows into %s", f"{rows:,}", data)
            generate(SyntheticSpec(rows=rows, users=users, items=items), data)
        for workers in workers_list:
            out = Path(tempfile.mkdtemp(prefix="scale-", dir=work_dir)) / "model"
            command = [
                sys.executable, "-m", "train", "--data", str(data), "--out", str(out), "--preset", "tutorial",
                "--epochs", "1", "--batch-size", str(batch_size), "--local-workers", str(workers),
                "--worker-timeout", str(timeout), "--quiet",
            ]
            logger.info("training on %s rows with %d worker(s)", f"{rows:,}", workers)
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise TrainError(f"{rows:,} rows with {workers} worker(s) failed: {last}")
            metrics = json.loads((out / artifacts.METRICS_FILE).read_text())
            shutil.rmtree(out.parent)
            record = {
                "rows": rows,
                "train_rows": metrics["rows"]["train"],
                "workers": workers,
                "batch_size": batch_size,
                "examples_per_second": metrics["train_examples_per_second"],
                "fit_seconds": metrics["fit_seconds"],
                "peak_rss_mb_per_worker": metrics["distribution"]["worker_peak_rss_mb"],
                "test_rmse": metrics["test_rmse"],
                "wall_seconds": metrics["distribution"]["launcher_wall_seconds"],
            }
            logger.info("%s", record)
            records.append(record)
    return {
        "version": RESULTS_VERSION,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "arch": platform.machine(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()[0],
        },
        "users": users,
        "items": items,
        "records": records,
    }


def markdown(results: dict) -> str:
    """The results as a Markdown table."""
    lines = [
        "| rows | workers | examples/s (fit) | fit s | peak RSS per worker (MB) | test RMSE |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    for r in results["records"]:
        rss = ", ".join(f"{v:.0f}" for v in r["peak_rss_mb_per_worker"])
        lines.append(
            f"| {r['rows']:,} | {r['workers']} | {r['examples_per_second']:,.0f} | {r['fit_seconds']:.1f} | {rss} | {r['test_rmse']:.3f} |"
        )
    machine = results["machine"]
    lines.append("")
    lines.append(
        f"Measured on {machine['cpu']} ({machine['arch']}, {machine['cores']} cores, Python {machine['python']}, "
        f"load average {machine['load_average_at_start']:.1f} at the start); "
        f"synthetic data with {results['users']:,} users and {results['items']:,} items, tutorial preset, 1 epoch, "
        f"global batch {results['records'][0]['batch_size'] if results['records'] else '-'}."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.scale_benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated row counts (default {DEFAULT_ROWS})")
    parser.add_argument("--workers", default=DEFAULT_WORKERS, help=f"comma-separated worker counts (default {DEFAULT_WORKERS})")
    parser.add_argument("--work-dir", type=Path, default=Path("artifacts/scale"), help="where data is generated and cached")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="global batch size")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per training run")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        rows_list = [int(x) for x in args.rows.split(",")]
        workers_list = [int(x) for x in args.workers.split(",")]
    except ValueError:
        print("scale_benchmark: error: --rows and --workers take comma-separated whole numbers", file=sys.stderr)
        return 2
    args.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        results = run(rows_list, workers_list, args.work_dir, args.batch_size, args.users, args.items, args.timeout)
    except TrainError as error:
        print(f"scale_benchmark: error: {error}", file=sys.stderr)
        return 2
    if args.out:
        artifacts.write_json_atomically(args.out, results)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
