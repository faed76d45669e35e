"""Multi-worker training: the cluster from TF_CONFIG, and a launcher for local workers.

TensorFlow's own engine does the work: `tf.distribute.MultiWorkerMirroredStrategy`
keeps a copy of the model on every worker and all-reduces the gradients. Each
worker runs the same `python -m train` command with its own TF_CONFIG; only the
chief (worker 0, or the task of type "chief") writes the output folder.

`launch_local_workers` starts N such processes on 127.0.0.1 for you
(`python -m train --local-workers N`), waits for them with a time limit, stops
them all if one fails, and reports each one's exit code and peak memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

from train.errors import ConfigError, TrainError

logger = logging.getLogger(__name__)

DEFAULT_WORKER_TIMEOUT_SECONDS = 1800
POLL_SECONDS = 0.2
TERMINATE_GRACE_SECONDS = 10
WORKER_ENV = "RANKING_KIT_LAUNCHED_WORKER"  # set by the launcher: the worker must not take the output lock


class WorkerError(TrainError):
    """A worker process failed, or the workers did not finish in time."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in a multi-worker cluster, read from TF_CONFIG."""

    workers: tuple[str, ...]
    task_type: str
    task_index: int

    @property
    def is_chief(self) -> bool:
        """The task that writes the output: type "chief", or worker 0 without a chief."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0)

    @property
    def size(self) -> int:
        return len(self.workers)


def cluster_from_environment(environ=os.environ) -> Optional[Cluster]:
    """Parses TF_CONFIG; None when it is unset or names a single worker.

    Raises:
        ConfigError: TF_CONFIG is not JSON, lacks `cluster` or `task`, names a
            task that is not in the cluster, or asks for parameter servers.
    """
    raw = environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except ValueError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({error}); see docs/cluster.md") from None
    if not isinstance(config, dict) or not all(isinstance(config.get(key), dict) for key in ("cluster", "task")):
        raise ConfigError(
            'TF_CONFIG needs {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}'
        )
    cluster, task = config["cluster"], config["task"]
    if "ps" in cluster:
        raise ConfigError(
            "TF_CONFIG names parameter servers ('ps'); this kit trains with MultiWorkerMirroredStrategy only: "
            "list the machines as 'worker' (and optionally one 'chief')"
        )
    unknown = set(cluster) - {"worker", "chief", "evaluator"}
    if unknown:
        raise ConfigError(
            f"TF_CONFIG cluster has unknown task types {sorted(unknown)}; use 'worker' and optionally 'chief'"
        )
    addresses = []
    for kind in ("chief", "worker"):
        members = cluster.get(kind, [])
        if not isinstance(members, list) or not all(isinstance(a, str) and ":" in a for a in members):
            raise ConfigError(f"TF_CONFIG cluster.{kind} must be a list of 'host:port' strings, got {members!r}")
        addresses.extend(members)
    task_type, task_index = task.get("type"), task.get("index")
    if task_type not in cluster or not isinstance(task_index, int) or not 0 <= task_index < len(cluster[task_type]):
        raise ConfigError(f"TF_CONFIG task {task!r} is not one of the cluster's tasks {json.dumps(cluster)}")
    if len(addresses) < 2:
        return None
    return Cluster(tuple(addresses), task_type, task_index)


def make_strategy(cluster: Cluster):
    """Creates the MultiWorkerMirroredStrategy; must run before any other TensorFlow op.

    The collectives get no `timeout_seconds`: TensorFlow 2.21 then keeps a
    thread for every collective until its timeout has passed, even when it
    completed at once, so a worker gains a dozen threads a step and dies
    ("Resource temporarily unavailable") after a few thousand steps (measured
    with a 600 s timeout; with none the count stays flat). A dead peer is still
    noticed within seconds, by its closed connection (`lost_peer_message`); a
    hung one by the launcher's `--worker-timeout` or the cluster's scheduler.
    """
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    logger.info(
        "%s %d of %d: %d replicas in sync",
        cluster.task_type,
        cluster.task_index,
        cluster.size,
        strategy.num_replicas_in_sync,
    )
    return strategy


@contextlib.contextmanager
def lost_peers_reported(cluster: Optional[Cluster]) -> Iterator[None]:
    """Turns TensorFlow's error for a peer that went away during training into one WorkerError line.

    Raises:
        WorkerError: a collective failed because another worker's connection
            closed or could not be reached (the worker died or was stopped).
    """
    if cluster is None:
        yield
        return
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError) as error:
        raise WorkerError(lost_peer_message(cluster, error)) from None


def lost_peer_message(cluster: Cluster, error: Exception) -> str:
    """The one line for a lost peer: which worker saw it, TensorFlow's error type, and what to do."""
    return (
        f"{cluster.task_type} {cluster.task_index} lost contact with another worker during training "
        f"({type(error).__name__}: a collective could not reach it); a worker died or was stopped, and every worker "
        "must run until the end: restart all of them (the other workers' logs name the first error)"
    )


@dataclasses.dataclass(frozen=True)
class WorkerReport:
    """How one launched worker ended."""

    index: int
    exit_code: int
    peak_rss_mb: float
    log: Path


@dataclasses.dataclass(frozen=True)
class LaunchResult:
    """The launched workers, all of which succeeded."""

    workers: tuple[WorkerReport, ...]
    wall_seconds: float


def free_ports(count: int) -> list[int]:
    """Ports that were free on 127.0.0.1 a moment ago (the OS picks them)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def launch_local_workers(
    count: int,
    worker_args: Sequence[str],
    timeout_seconds: float = DEFAULT_WORKER_TIMEOUT_SECONDS,
    log_dir: Optional[Path] = None,
) -> LaunchResult:
    """Runs `python -m train WORKER_ARGS` as `count` workers on loopback and waits.

    Worker 0 (the chief) logs to this process's stderr; the others log to
    files in `log_dir`. If a worker exits with an error, the others are
    stopped at once; if they do not all finish within `timeout_seconds`, all
    are stopped. Every process is reaped before this returns or raises.

    Raises:
        WorkerError: naming the worker, its exit code and the last line it logged.
    """
    if count < 1:
        raise ConfigError(f"--local-workers must be >= 1, got {count}")
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="ranking-kit-workers-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
    started = time.monotonic()
    processes: list[subprocess.Popen] = []
    logs = []
    tee = None
    try:
        for index in range(count):
            environment = dict(os.environ)
            task = {"type": "worker", "index": index}
            environment["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": task})
            environment[WORKER_ENV] = "1"
            log_path = log_dir / f"worker-{index}.log"
            logs.append(log_path)
            log_path.write_text("", encoding="utf-8")
            log_file = open(log_path, "a", encoding="utf-8")  # appends, like the tee below
            process = subprocess.Popen(
                [sys.executable, "-m", "train", *worker_args],
                env=environment,
                stdout=log_file,
                stderr=subprocess.PIPE if index == 0 else log_file,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            if index == 0:
                # The chief's progress goes to this terminal and to its log file.
                tee = threading.Thread(target=_tee, args=(process.stderr, log_path), daemon=True)
                tee.start()
            processes.append(process)
            log_file.close()
        logger.info("started %d workers on %s (logs in %s)", count, ", ".join(addresses), log_dir)
        reports = _wait_all(processes, logs, started, timeout_seconds, tee)
    finally:
        _stop_all(processes)
    return LaunchResult(tuple(reports), time.monotonic() - started)


def _wait_all(processes, logs, started: float, timeout_seconds: float, tee) -> list[WorkerReport]:
    reports: dict[int, WorkerReport] = {}
    while len(reports) < len(processes):
        for index, process in enumerate(processes):
            if index in reports:
                continue
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid == 0:
                continue
            process.returncode = os.waitstatus_to_exitcode(status)
            # ru_maxrss is in kilobytes on Linux.
            reports[index] = WorkerReport(index, process.returncode, usage.ru_maxrss / 1024, logs[index])
            if process.returncode != 0:
                if index == 0 and tee is not None:
                    tee.join(timeout=5)  # let the chief's last lines reach its log
                raise WorkerError(
                    f"worker {index} exited with code {process.returncode}: {_last_line(logs[index])} "
                    f"(log: {logs[index]}); the other workers were stopped"
                )
        if time.monotonic() - started > timeout_seconds:
            waiting = sorted(set(range(len(processes))) - set(reports))
            raise WorkerError(
                f"workers {waiting} did not finish within {timeout_seconds:g} s; all workers were stopped "
                f"(logs in {logs[0].parent}); raise --worker-timeout or check that every worker can start"
            )
        time.sleep(POLL_SECONDS)
    return [reports[index] for index in range(len(processes))]


def _stop_all(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        if process.returncode is None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + TERMINATE_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        except ChildProcessError:
            pass  # already reaped by os.wait4


def _tee(stream, log_path: Path) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        for line in stream:
            sys.stderr.write(line)
            log.write(line)
            log.flush()


def _last_line(log: Path) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    meaningful = [line for line in lines if not line.startswith(("I0000", "W0000", "WARNING: All log"))]
    return (meaningful or lines or ["(no output)"])[-1][:300]
