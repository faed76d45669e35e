"""Command line: time ranking on this machine and report it as a table, JSON, CSV and plot.

    python -m benchmarks latency --model M.tflite [--model M2.tflite ...]
        [--candidates 1,10,100,1000,all] [--threads 1,2,4] [--backend NAME ...]
        [--methods rank,rank_prepared,rank_catalog,...] [--runs N] [--warmup N] [--min-seconds S]
        [--out results.json] [--csv results.csv] [--plot latency.png]
    python -m benchmarks mutations --model M.tflite [--count 10000] [--seed N] [--jobs N] [--timeout S]
        [--kinds flip,zero,truncate] [--backend NAME] --out RESULT.json [--markdown F] [--keep DIR]
    python -m benchmarks soak --model A.tflite --model B.tflite [--calls 1000000] [--threads 8]
        [--swap-every 1000] [--backend NAME] --out RESULT.json [--markdown F]
    python -m benchmarks catalog --items 10000,100000,1000000 --out FILE.json [--csv F] [--plot F.png]
        [--markdown F] [--variants LIST] [--k 100] [--build-only DIR | --models DIR] ...

Expected mistakes (missing file, bad count, backend not installed, matplotlib
missing for --plot, ...) print one line to stderr and exit with code 2. The
mutation run exits with 1 when a damaged copy was not refused with a typed error,
the soak when a call or check failed or the resident memory grew, the catalog
run when a float32 or float16 model's top k is not numpy's.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from benchmarks.config import (
    DEFAULT_BLOCK,
    DEFAULT_LOOP_MAX_CANDIDATES,
    DEFAULT_METHODS,
    DEFAULT_MIN_SECONDS,
    DEFAULT_RUNS,
    DEFAULT_USER,
    DEFAULT_WARMUP,
    LatencySettings,
    parse_candidate_counts,
    parse_methods,
    parse_positive_ints,
)
from benchmarks.catalog import (
    DEFAULT_ITEMS,
    DEFAULT_K,
    DEFAULT_SEED,
    DEFAULT_USERS,
    CatalogSettings,
    build,
    exact_check_failures,
    parse_variants,
    run_catalog,
    summarize_build,
)
from benchmarks.catalog_report import format_table as format_catalog_table
from benchmarks.catalog_report import write_csv as write_catalog_csv
from benchmarks.catalog_report import write_plot as write_catalog_plot
from benchmarks.errors import BenchmarkError, SettingsError
from benchmarks.latency import resolve_backends, run_latency
from benchmarks.mutations import (
    DEFAULT_COUNT,
    DEFAULT_SEED,
    DEFAULT_TIMEOUT_SECONDS,
    MutationSettings,
    Outcome,
    parse_kinds,
    run_mutations,
)
from benchmarks.report import (
    check_output_path,
    format_table,
    matplotlib_available,
    write_csv,
    write_json,
    write_plot,
    write_report_files,
)
from benchmarks.soak import (
    DEFAULT_CALLS,
    DEFAULT_SWAP_EVERY,
    DEFAULT_THREADS,
    SoakSettings,
    describe_trend,
    run_soak,
)
from device_runtime.command_line import EXIT_USAGE, OneLineParser
from device_runtime.errors import DeviceRuntimeError, one_line

EXIT_FOUND = 1  # mutations: a damaged copy was not refused; soak: a failure; catalog: a top-k check failed
PROGRAM = "python -m benchmarks"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    latency = commands.add_parser("latency", help="time ranking latency of one or more .tflite models")
    latency.add_argument("--model", action="append", required=True, type=Path, metavar="M.tflite",
                         help="a model to time (repeat to compare, e.g. the float32, float16 and int8 variants)")
    latency.add_argument("--candidates", default="1,10,100,1000,all", metavar="LIST",
                         help="candidate counts, comma separated; 'all' = every movie in the model's vocabulary; "
                         "N = its first N titles (default: 1,10,100,1000,all)")
    latency.add_argument("--candidates-file", type=Path, metavar="FILE",
                         help="take candidates from this file (one title per line) instead of the model's vocabulary; "
                         "needed for models without the converter's manifest")
    latency.add_argument("--threads", default="1", metavar="LIST", help="interpreter threads, e.g. 1,2,4 (default: 1)")
    latency.add_argument("--backend", action="append", default=[], metavar="NAME",
                         help="auto, litert (ai_edge_litert), tflite_runtime or tensorflow; repeat or comma-separate; "
                         "default: every installed backend")
    latency.add_argument("--methods", default=",".join(m.value for m in DEFAULT_METHODS), metavar="LIST",
                         help="rank (Ranker.rank on a list of titles), rank_prepared (on a prepared CandidateSet), "
                         "rank_strings (the strings signature through the Ranker), rank_catalog (rank(user): the whole "
                         "catalog, top-k in the graph), personalize_rank (personalize a 50-rating history, then rank "
                         "the catalog), rank_personalized (rank the catalog for a history personalized beforehand), "
                         "invoke (the bare strings signature, inputs encoded beforehand), invoke_top_k (the bare top_k "
                         "signature), loop (the tutorial's set_tensor/invoke per candidate), signature_loop (a "
                         "SignatureRunner call per candidate); the whole-catalog ones run at 'all' only "
                         "(default: all of them)")
    latency.add_argument("--loop-max-candidates", type=int, default=DEFAULT_LOOP_MAX_CANDIDATES, metavar="N",
                         help=f"run the per-candidate loops only up to N candidates (default: {DEFAULT_LOOP_MAX_CANDIDATES})")
    latency.add_argument("--runs", type=int, default=DEFAULT_RUNS, metavar="N",
                         help=f"at least N timed runs per configuration (default: {DEFAULT_RUNS})")
    latency.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, metavar="N",
                         help=f"discarded runs per configuration after the first inference (default: {DEFAULT_WARMUP})")
    latency.add_argument("--min-seconds", type=float, default=DEFAULT_MIN_SECONDS, metavar="S",
                         help=f"keep timing until the interleaved rounds have lasted S seconds (default: {DEFAULT_MIN_SECONDS:g})")
    latency.add_argument("--block", type=int, default=DEFAULT_BLOCK, metavar="N",
                         help=f"timed calls per configuration per interleaved turn (default: {DEFAULT_BLOCK})")
    latency.add_argument("--cold", action="store_true",
                         help="no untimed re-warm call before each turn: the first timed call follows another "
                         "configuration (with --block 1, every call does: cold-cache latency)")
    latency.add_argument("--user", default=DEFAULT_USER, help=f"the user to rank for (default: {DEFAULT_USER})")
    latency.add_argument("--user-input", metavar="NAME", help="signature input holding user ids (models without a manifest)")
    latency.add_argument("--item-input", metavar="NAME", help="signature input holding movie titles (models without a manifest)")
    reference = latency.add_mutually_exclusive_group()
    reference.add_argument("--saved-model", type=Path, metavar="DIR",
                           help="time this SavedModel with TensorFlow as the server-side reference "
                           "(default: saved_model/ beside the first model, when TensorFlow is installed)")
    reference.add_argument("--no-saved-model", action="store_true", help="do not time the SavedModel reference")
    latency.add_argument("--out", type=Path, metavar="results.json", help="write the JSON report here")
    latency.add_argument("--csv", type=Path, metavar="results.csv", help="write one CSV row per configuration here")
    latency.add_argument("--plot", type=Path, metavar="latency.png",
                         help='plot latency against candidates (needs matplotlib: pip install ".[bench]")')
    latency.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    mutations = commands.add_parser(
        "mutations", help="load and rank damaged copies of a model, each in its own process, and count the outcomes"
    )
    mutations.add_argument("--model", required=True, type=Path, metavar="M.tflite",
                           help="a model converted by `python -m convert` (with its vocabularies)")
    mutations.add_argument("--count", type=int, default=DEFAULT_COUNT, metavar="N",
                           help=f"mutated copies (default: {DEFAULT_COUNT})")
    mutations.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="N",
                           help="names the mutations: case K of seed N is the same on any machine "
                           f"(default: {DEFAULT_SEED})")
    mutations.add_argument("--jobs", type=int, default=1, metavar="N", help="cases running at once (default: 1)")
    mutations.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, metavar="S",
                           help="a case running longer is killed and counted as hung "
                           f"(default: {DEFAULT_TIMEOUT_SECONDS:g})")
    mutations.add_argument("--kinds", default="flip,zero,truncate", metavar="LIST",
                           help="mutations drawn with equal chances: flip, zero, truncate, field "
                           "(default: flip,zero,truncate, the issue's experiment)")
    mutations.add_argument("--backend", default="auto", metavar="NAME",
                           help="auto, litert (ai_edge_litert), tflite_runtime or tensorflow (default: auto)")
    mutations.add_argument("--out", required=True, type=Path, metavar="RESULT.json", help="write the JSON report here")
    mutations.add_argument("--markdown", type=Path, metavar="F.md", help="also write the report as Markdown")
    mutations.add_argument("--keep", type=Path, metavar="DIR", help="copy every mutated file that was not refused here")
    mutations.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    soak = commands.add_parser("soak", help="rank on one Ranker from many threads while swapping its model, for long")
    soak.add_argument("--model", action="append", required=True, type=Path, metavar="M.tflite",
                      help="give it twice: model A (served first) and model B, swapped back and forth")
    soak.add_argument("--calls", type=int, default=DEFAULT_CALLS, metavar="N",
                      help=f"ranking calls in all, bad ones included (default: {DEFAULT_CALLS})")
    soak.add_argument("--threads", type=int, default=DEFAULT_THREADS, metavar="N",
                      help=f"threads sharing the Ranker (default: {DEFAULT_THREADS})")
    soak.add_argument("--swap-every", type=int, default=DEFAULT_SWAP_EVERY, metavar="N",
                      help=f"calls between two reloads (default: {DEFAULT_SWAP_EVERY})")
    soak.add_argument("--backend", default="auto", metavar="NAME",
                      help="auto, litert (ai_edge_litert), tflite_runtime or tensorflow (default: auto)")
    soak.add_argument("--out", required=True, type=Path, metavar="RESULT.json", help="write the JSON report here")
    soak.add_argument("--markdown", type=Path, metavar="F.md", help="also write the report as Markdown")
    soak.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    _add_catalog(commands)
    return parser


def _add_catalog(commands) -> None:
    catalog = commands.add_parser(
        "catalog", help="synthetic catalogs of 10k to 1M movies: model size, load, memory, top-k against numpy's floor"
    )
    catalog.add_argument("--items", metavar="LIST",
                         help="catalog sizes, comma separated (default when building: "
                         f"{','.join(str(n) for n in DEFAULT_ITEMS)}; with --models: every size in the folder)")
    catalog.add_argument("--variants", metavar="LIST",
                         help="quantization variants: none, float16, weight-only-int8, dynamic-int8 (default: every "
                         "variant the converter offers; with --models: every one in the folder)")
    catalog.add_argument("--k", type=int, default=DEFAULT_K, metavar="K",
                         help=f"rank the best K movies of the whole catalog (default: {DEFAULT_K})")
    catalog.add_argument("--users", type=int, metavar="N",
                         help=f"building: rows of the user table (default: {DEFAULT_USERS}, MovieLens 100K's)")
    catalog.add_argument("--seed", type=int, metavar="N", help=f"building: the tables' seed (default: {DEFAULT_SEED})")
    catalog.add_argument("--user", help=f"the synthetic user to rank for, 1 to --users (default: {DEFAULT_USER}; "
                         "with --models: the one the folder's build checked)")
    catalog.add_argument("--backend", default="auto", metavar="NAME",
                         help="auto, litert (ai_edge_litert), tflite_runtime or tensorflow (default: auto)")
    catalog.add_argument("--threads", type=int, default=1, metavar="N",
                         help="interpreter threads, and numpy's BLAS threads for the floor (default: 1)")
    catalog.add_argument("--runs", type=int, default=DEFAULT_RUNS, metavar="N",
                         help=f"at least N timed calls of each, rank and floor (default: {DEFAULT_RUNS})")
    catalog.add_argument("--min-seconds", type=float, default=DEFAULT_MIN_SECONDS, metavar="S",
                         help="keep timing each model until its turns have lasted S seconds "
                         f"(default: {DEFAULT_MIN_SECONDS:g})")
    catalog.add_argument("--block", type=int, default=DEFAULT_BLOCK, metavar="N",
                         help=f"timed calls per turn (default: {DEFAULT_BLOCK})")
    where = catalog.add_mutually_exclusive_group()
    where.add_argument("--build-only", type=Path, metavar="DIR",
                       help="build the models into DIR (needs TensorFlow: the workstation) and stop")
    where.add_argument("--models", type=Path, metavar="DIR",
                       help="time the models of DIR, built before with --build-only (no TensorFlow needed: a board)")
    catalog.add_argument("--out", type=Path, metavar="FILE.json",
                         help="write the JSON report here (needed unless --build-only)")
    catalog.add_argument("--csv", type=Path, metavar="F.csv", help="write one CSV row per model here")
    catalog.add_argument("--plot", type=Path, metavar="F.png",
                         help='plot latency and memory against catalog size (needs matplotlib: pip install ".[bench]")')
    catalog.add_argument("--markdown", type=Path, metavar="F.md", help="also write the report as Markdown")
    catalog.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def _catalog_settings(args: argparse.Namespace) -> CatalogSettings:
    if args.models is not None:
        for option, value in (("--users", args.users), ("--seed", args.seed)):
            if value is not None:
                raise SettingsError(f"{option} applies to building; the models in {args.models} are already built")
    return CatalogSettings(
        items=parse_positive_ints(args.items, "--items", "10000,100000") if args.items else (
            () if args.models else DEFAULT_ITEMS
        ),
        variants=parse_variants(args.variants) if args.variants is not None else (),
        k=args.k,
        users=DEFAULT_USERS if args.users is None else args.users,
        seed=DEFAULT_SEED if args.seed is None else args.seed,
        user=args.user,
        backend=args.backend,
        threads=args.threads,
        runs=args.runs,
        min_seconds=args.min_seconds,
        block=args.block,
        build_only=args.build_only,
        models=args.models,
    )


def _catalog(args: argparse.Namespace, command: str) -> int:
    settings = _catalog_settings(args)
    outputs = (("--out", args.out), ("--csv", args.csv), ("--plot", args.plot), ("--markdown", args.markdown))
    if settings.build_only is not None:
        given = [option for option, path in outputs if path is not None]
        if given:
            raise SettingsError(
                f"--build-only writes models, not reports; drop {', '.join(given)} (time with --models)"
            )
        index = build(settings, settings.build_only, command)
        print("\n".join(summarize_build(index)))
        folder = settings.build_only
        print(f"\nwrote {folder}; time it with: {PROGRAM} catalog --models {folder} --out FILE.json")
        failures = exact_check_failures(index)
        for failure in failures:
            print(f"check failed: {failure}", file=sys.stderr)
        return EXIT_FOUND if failures else 0
    if args.out is None:
        raise SettingsError("--out FILE.json is needed (the report); or --build-only DIR to build models only")
    for option, path in outputs:
        if path is not None:
            check_output_path(path, option)
    if args.plot is not None and not matplotlib_available():
        raise BenchmarkError('--plot needs matplotlib, which is not installed; pip install ".[bench]" or drop --plot')
    report = run_catalog(settings, command, quiet=args.quiet)
    write_report_files(report, args.out, args.markdown)
    if args.csv is not None:
        write_catalog_csv(report, args.csv)
    if args.plot is not None:
        write_catalog_plot(report, args.plot)
    print(format_catalog_table(report))
    print(f"\nwrote {', '.join(str(path) for _, path in outputs if path is not None)}")
    for record in report.check_failures:
        print(f"check failed: {record.items:,} movies, {record.variant}: its top {report.k} is not numpy's",
              file=sys.stderr)
    return EXIT_FOUND if report.check_failures else 0


def _settings(args: argparse.Namespace) -> LatencySettings:
    backends = tuple(name for entry in args.backend for name in entry.split(",") if name.strip())
    return LatencySettings(
        models=tuple(args.model),
        candidates=parse_candidate_counts(args.candidates),
        threads=parse_positive_ints(args.threads, "--threads"),
        backends=backends,
        methods=parse_methods(args.methods),
        runs=args.runs,
        warmup=args.warmup,
        min_seconds=args.min_seconds,
        user=args.user,
        candidates_file=args.candidates_file,
        saved_model=args.saved_model,
        use_saved_model=not args.no_saved_model,
        loop_max_candidates=args.loop_max_candidates,
        user_input=args.user_input,
        item_input=args.item_input,
        block=args.block,
        cold=args.cold,
    )


class _OncePerMessage(logging.Filter):
    """Drops repeats: every configuration loads its own interpreter, and the
    runtime's warnings (e.g. a delegate fallback) would repeat for each."""

    def __init__(self):
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


_handler: Optional[logging.Handler] = None


def _configure_logging(quiet: bool) -> None:
    """Progress and warnings to stderr; replaces the handler of an earlier call in this process."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    _handler.addFilter(_OncePerMessage())
    root.addHandler(_handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)


def _latency(args: argparse.Namespace) -> int:
    settings = _settings(args)
    for path, option in ((args.out, "--out"), (args.csv, "--csv"), (args.plot, "--plot")):
        if path is not None:
            check_output_path(path, option)
    if args.plot is not None and not matplotlib_available():
        raise BenchmarkError('--plot needs matplotlib, which is not installed; pip install ".[bench]" or drop --plot')
    report = run_latency(settings)
    if args.out is not None:
        write_json(report, args.out)
    if args.csv is not None:
        write_csv(report, args.csv)
    if args.plot is not None:
        write_plot(report, args.plot)
    print(format_table(report))
    written = [str(p) for p in (args.out, args.csv, args.plot) if p is not None]
    if written:
        print(f"\nwrote {', '.join(written)}")
    return 0


def _mutations(args: argparse.Namespace, command: str) -> int:
    resolve_backends([args.backend])
    settings = MutationSettings(
        model=args.model,
        count=args.count,
        seed=args.seed,
        jobs=args.jobs,
        timeout_seconds=args.timeout,
        kinds=parse_kinds(args.kinds),
        backend=args.backend,
        keep=args.keep,
    )
    _check_report_paths(args)
    report = run_mutations(settings, command)
    write_report_files(report, args.out, args.markdown)
    total = len(report.cases)
    for outcome in Outcome:
        breakdown = ", ".join(f"{key} {count}" for key, count in report.breakdown(outcome).items())
        print(f"{outcome.value:>8}: {report.count(outcome):>6} of {total}" + (f"  ({breakdown})" if breakdown else ""))
    print(f"\nwrote {', '.join(str(p) for p in (args.out, args.markdown) if p is not None)}")
    if not report.clean:
        not_refused = total - report.count(Outcome.REFUSED)
        print(f"{not_refused} damaged copies were not refused with a typed error", file=sys.stderr)
        return EXIT_FOUND
    return 0


def _soak(args: argparse.Namespace, command: str) -> int:
    resolve_backends([args.backend])
    settings = SoakSettings(
        models=tuple(args.model),
        calls=args.calls,
        threads=args.threads,
        swap_every=args.swap_every,
        backend=args.backend,
    )
    _check_report_paths(args)
    report = run_soak(settings, command)
    write_report_files(report, args.out, args.markdown)
    print(f"{report.calls:,} calls in {report.seconds:.0f} s; results by model: {report.results_by_model}; "
          f"{report.swaps} swaps, {report.refused_reloads} refused reloads, {report.bad_calls:,} bad calls refused")
    print(f"failures: {report.failures}; RSS trend {describe_trend(report.rss_trend)}; {report.verdict()}")
    print(f"\nwrote {', '.join(str(p) for p in (args.out, args.markdown) if p is not None)}")
    return 0 if report.passed else EXIT_FOUND


def _check_report_paths(args: argparse.Namespace) -> None:
    for path, option in ((args.out, "--out"), (args.markdown, "--markdown")):
        if path is not None:
            check_output_path(path, option)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    _configure_logging(args.quiet)
    command = f"{PROGRAM} {shlex.join(argv)}"
    try:
        if args.command == "mutations":
            return _mutations(args, command)
        if args.command == "soak":
            return _soak(args, command)
        if args.command == "catalog":
            return _catalog(args, command)
        return _latency(args)
    except (BenchmarkError, DeviceRuntimeError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # stdout piped into e.g. `head`: stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
