"""Command line: rank movies for a user or for a history of ratings, or describe a model.

    python -m device_runtime rank --model M (--user 42 | --history-file FILE)
                                  (--all | --candidate T ... | --candidates-file F) [--top-k 10] [--json] [--strict]
    python -m device_runtime info --model M [--json]

`--history-file` reads UTF-8 lines of `title<TAB>rating` ('-' = stdin): the
ratings of a user the model never saw, folded into a user state on the device.
Expected mistakes (missing file, wrong model, bad id, bad history line, ...)
print one `error:` line each to stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from device_runtime.backends import Backend
from device_runtime.command_line import EXIT_USAGE, OneLineParser
from device_runtime.errors import DeviceRuntimeError, one_line
from device_runtime.history import check_history_entry
from device_runtime.info import RankerInfo
from device_runtime.prepared import PersonalizedUser
from device_runtime.ranker import Ranker

DEFAULT_TOP_K = 10


class _UsageError(Exception):
    """A mistake in the command line's own inputs (e.g. an empty candidates file); one line per message."""

    def __init__(self, *messages: str):
        super().__init__(*messages)
        self.messages = messages


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m device_runtime", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add_model_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", required=True, type=Path, help="the .tflite file")
        sub.add_argument(
            "--backend",
            default=Backend.AUTO.value,
            choices=[b.value for b in Backend],
            help="interpreter package (default: auto = ai_edge_litert, then tflite_runtime, then tensorflow)",
        )
        sub.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the backend's)")
        sub.add_argument("--user-input", default=None, help="signature input holding user ids, if not user_id")
        sub.add_argument("--item-input", default=None, help="signature input holding movie titles, if not movie_title")
        sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        sub.add_argument("-v", "--verbose", action="store_true", help="log what the runtime does")

    rank = commands.add_parser("rank", help="rank candidate movies for one user")
    add_model_options(rank)
    who = rank.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="the user id, e.g. 42")
    who.add_argument(
        "--history-file",
        type=Path,
        metavar="FILE",
        help="the user's own ratings, one 'title<TAB>rating' per line, UTF-8 ('-' = stdin); needs a personalized model",
    )
    source = rank.add_mutually_exclusive_group(required=True)
    source.add_argument("--candidate", action="append", metavar="TITLE", help="a candidate title (repeatable)")
    source.add_argument("--candidates-file", type=Path, metavar="FILE", help="one title per line, UTF-8 ('-' = stdin)")
    source.add_argument("--all", action="store_true", help="every movie in the model's vocabulary")
    rank.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help=f"how many to show (default {DEFAULT_TOP_K})")
    rank.add_argument("--strict", action="store_true", help="refuse ids (and history titles) the model does not know")

    info = commands.add_parser("info", help="show the backend, signature, manifest and size of a model")
    add_model_options(info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit code.

    Only the user's own mistakes (the runtime's typed errors and this command's
    checks of its options) exit 2 with one line; anything else is a bug and
    keeps its traceback.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    personalization = logging.getLogger("device_runtime.ranker")
    personalization.addFilter(_reported_as_notes)
    try:
        _check_options(args)
        ranker = Ranker(
            args.model,
            num_threads=args.threads,
            backend=args.backend,
            strict=getattr(args, "strict", False),
            user_input=args.user_input,
            item_input=args.item_input,
        )
        if args.command == "info":
            _print_info(ranker.info(), args.json)
        else:
            _rank(ranker, args)
    except _UsageError as error:
        for message in error.messages:
            print(f"error: {one_line(message)}", file=sys.stderr)
        return EXIT_USAGE
    except DeviceRuntimeError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        personalization.removeFilter(_reported_as_notes)
    return 0


def _reported_as_notes(record: logging.LogRecord) -> bool:
    """Drops the runtime's personalization warnings: `rank` prints them as notes (and in --json)."""
    return not record.getMessage().startswith("personalizing:")


def _check_options(args) -> None:
    """Refuses option values the Ranker would refuse, in the command line's own words."""
    if args.threads is not None and args.threads < 1:
        raise _UsageError(f"--threads must be at least 1, got {args.threads}")
    for option, value in (("--user-input", args.user_input), ("--item-input", args.item_input)):
        if value is not None:
            _check_text(value, option, "a signature input name")
    if args.command == "rank":
        if args.top_k < 1:
            raise _UsageError(f"--top-k must be at least 1, got {args.top_k}")
        if args.user is not None:
            _check_text(args.user, "--user", "a user id such as 42")
        if str(args.history_file) == "-" and str(args.candidates_file) == "-":
            raise _UsageError("--history-file and --candidates-file cannot both read stdin ('-'); pass a file for one")
        for title in args.candidate or ():
            _check_text(title, "--candidate", "a movie title", allow_empty=True)


def _check_text(value: str, option: str, example: str, allow_empty: bool = False) -> None:
    if not value and not allow_empty:
        raise _UsageError(f"{option} is empty; pass {example}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes the terminal could not decode reach argv as lone surrogates
        raise _UsageError(f"{option} {value!r} is not valid UTF-8 text; pass {example} in UTF-8") from None


def _read_text(path: Path, what: str, expected: str) -> str:
    """A UTF-8 file's text ('-' = stdin)."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        return raw.decode("utf-8")
    except FileNotFoundError:
        raise _UsageError(f"{what} {path} does not exist; pass a file with {expected}") from None
    except IsADirectoryError:
        raise _UsageError(f"{what} {path} is a folder; pass a file with {expected}") from None
    except OSError as error:
        raise _UsageError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise _UsageError(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None


def _candidates(args) -> list[str]:
    if args.candidate:
        return args.candidate
    path = args.candidates_file
    titles = [line for line in _read_text(path, "candidates file", "one title per line").splitlines() if line.strip()]
    if not titles:
        raise _UsageError(f"candidates file {path} has no titles; write one title per line")
    return titles


def read_history_file(path: Path) -> list[tuple[str, float]]:
    """Parses a history file: UTF-8, one `title<TAB>rating` per line, blank lines skipped.

    Raises:
        _UsageError: one message per bad line, each naming the file and line number.
    """
    text = _read_text(path, "history file", "one 'title<TAB>rating' per line")
    history, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"history file {path} line {number}"
        title, tab, rating_text = line.rpartition("\t")
        if not tab:
            errors.append(f"{where}: expected 'title<TAB>rating', found no tab in {line!r}")
            continue
        if not title.strip():
            errors.append(f"{where}: the title is empty; write 'title<TAB>rating'")
            continue
        try:
            rating = float(rating_text)
        except ValueError:
            errors.append(f"{where}: the rating {rating_text!r} is not a number; write a rating from 1 to 5")
            continue
        try:
            history.append(check_history_entry(title, rating, where))
        except DeviceRuntimeError as error:
            errors.append(str(error))
    if errors:
        raise _UsageError(*errors)
    return history


def _rank(ranker: Ranker, args) -> None:
    if args.all:
        manifest = ranker.manifest
        if manifest is None or manifest.movie_vocabulary is None:
            raise _UsageError(
                f"{args.model} carries no movie vocabulary, so --all has nothing to rank; "
                "pass --candidate or --candidates-file, or convert the model with `python -m convert`"
            )
        candidates, count = None, manifest.movie_count
    else:
        candidates = _candidates(args)
        count = len(candidates)
    user = args.user
    if args.history_file is not None:
        if not ranker.can_personalize:
            ranker.personalize([])  # raises the SignatureError that names the model and the presets to use
        user = ranker.personalize(read_history_file(args.history_file))
    ranked = ranker.rank(user, candidates, k=args.top_k)
    vocabularies = ranker.has_vocabularies
    user_known = ranker.is_known_user(args.user) if vocabularies and args.user is not None else None
    info = ranker.info()
    if args.json:
        results = [
            {
                "rank": position,
                "movie_title": title,
                "score": score,
                "known": ranker.is_known_movie(title) if vocabularies else None,
            }
            for position, (title, score) in enumerate(ranked, start=1)
        ]
        report = {
            "user_id": args.user,
            "user_known": user_known,
            "history": _history_report(user, args.history_file) if isinstance(user, PersonalizedUser) else None,
            "candidates": count,
            "backend": info.backend,
            "backend_version": info.backend_version,
            "results": results,
        }
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    who = f"user {args.user}" if args.user is not None else f"a user described by {len(user.history)} ratings"
    print(f"top {len(ranked)} of {count} candidates for {who} ({info.backend} {info.backend_version})")
    if user_known is False:
        print(f"note: user {args.user!r} is not in the model's vocabulary; its scores come from the unknown-user row")
    if isinstance(user, PersonalizedUser):
        for note in _history_notes(user):
            print(f"note: {note}")
    width = max(len(f"{score:.4f}") for _, score in ranked) if ranked else 6
    print(f"{'rank':>4}  {'score':>{width}}  movie")
    for position, (title, score) in enumerate(ranked, start=1):
        mark = "  (unknown to the model)" if vocabularies and not ranker.is_known_movie(title) else ""
        print(f"{position:>4}  {score:>{width}.4f}  {title}{mark}")


def _history_report(user: PersonalizedUser, path: Path) -> dict:
    return {
        "file": str(path),
        "ratings_used": len(user.history),
        "unknown_titles": list(user.unknown_titles),
        "dropped": user.dropped,
        "replaced": user.replaced,
    }


def _history_notes(user: PersonalizedUser) -> list[str]:
    notes = []
    if user.unknown_titles:
        shown = ", ".join(repr(title) for title in user.unknown_titles[:5])
        more = f" and {len(user.unknown_titles) - 5} more" if len(user.unknown_titles) > 5 else ""
        notes.append(f"skipped {len(user.unknown_titles)} title(s) the model does not know: {shown}{more}")
    if user.replaced:
        notes.append(f"{user.replaced} rating(s) replaced by a later rating of the same title")
    if user.dropped:
        notes.append(f"the history was too long: its {user.dropped} oldest rating(s) were left out")
    return notes


def _print_info(info: RankerInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info.to_dict(), ensure_ascii=False, indent=2))
        return
    signature = info.signature
    delegates = info.delegates
    if info.delegate_fallback:
        delegates += f" (default delegates failed: {info.delegate_fallback})"
    rows = [
        ("model", f"{info.model_path} ({info.model_size_bytes:,} bytes)"),
        ("checksum", f"sha256 {info.checksum} (verified)" if info.checksum else "none (not converted by the kit)"),
        ("loaded", f"{info.loaded_at} in {info.load_ms:.1f} ms"),
        ("signatures", ", ".join(info.signatures)),
        ("backend", f"{info.backend} {info.backend_version} (numpy {info.numpy_version})"),
        ("delegates", delegates),
        ("threads", "backend default" if info.num_threads is None else str(info.num_threads)),
        (
            "signature",
            f"{signature.signature_key}: {signature.user_input}, {signature.item_input} -> "
            f"{signature.output} {list(signature.output_shape)}",
        ),
        ("operators", ", ".join(info.operators)),
        ("max batch", str(info.max_batch)),
    ]
    manifest = info.manifest
    if manifest is None:
        rows.append(("manifest", "none (not converted by the kit; known ids cannot be checked)"))
    else:
        metrics = manifest.get("training_metrics") or {}
        rows += [
            ("manifest", f"{manifest['model_name']}, created {manifest['created_at']}"),
            ("quantization", str(manifest["quantization"])),
            ("converted by", f"TensorFlow {manifest['tensorflow_version']}"),
            ("vocabularies", f"{manifest['users']} users, {manifest['movies']} movies"),
        ]
        if metrics.get("test_rmse") is not None:
            rows.append(("test RMSE", str(metrics["test_rmse"])))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name + ':':<{width + 1}} {value}")


if __name__ == "__main__":
    sys.exit(main())
