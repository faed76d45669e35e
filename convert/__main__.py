"""Command line: python -m convert SAVED_MODEL --out MODEL.tflite [options].

Exit status: 0 accepted; 1 converted but rejected (a check failed, or the model
needs ops the device cannot run); 2 a bad input (path, option, signature,
parity data). Expected mistakes print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from convert.config import ConversionConfig, Quantization, Tolerances, DEFAULT_RANKING_USERS
from convert.errors import ConversionError, ConvertError, InputError, ValidationError
from convert.summary import describe, markdown_tables, report_problem
from convert.targets import TARGETS, Target
from device_runtime.command_line import EXIT_USAGE, OneLineParser
from device_runtime.errors import one_line

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = EXIT_USAGE
# How much of TensorFlow's last native message a failure line quotes; its info lines say nothing of a failure.
NATIVE_LINE_CHARS = 160
_NATIVE_INFO_LINE = re.compile(r"I\d{4} \d\d:\d\d:")  # e.g. "I0000 00:00:1796282290.17 port.cc:153] ..."

_MODES = [q.value for q in Quantization if q is not Quantization.FULL_INT8]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m convert",
        description="Convert a ranking SavedModel to a .tflite (builtin ops only), embed its manifest, "
        "and validate it: signature by name, parity with the SavedModel, every installed runtime, each target.",
        epilog="Exit status: 0 accepted, 1 rejected (the file is kept as MODEL.rejected.tflite), 2 bad input. "
        "Tolerances: " + ", ".join(f.name for f in Tolerances.__dataclass_fields__.values()) + ".",
    )
    parser.add_argument(
        "saved_model", nargs="?", metavar="SAVED_MODEL", help="SavedModel folder, or a `python -m train` export folder"
    )
    parser.add_argument(
        "--out", metavar="MODEL.tflite", help="where to write the .tflite (its report goes to MODEL.parity.json)"
    )
    parser.add_argument(
        "--quantize",
        default=Quantization.NONE.value,
        metavar="MODE",
        help=f"one of: {', '.join(_MODES)} (default none)",
    )
    parser.add_argument(
        "--parity-data",
        metavar="SOURCE",
        help="ratings to check parity on: recbole (default, offline), tfds, or an ml-100k folder",
    )
    parser.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one parity bound; 'none' drops it (repeatable)",
    )
    parser.add_argument("--user-input", metavar="NAME", help="the signature input holding user ids (default user_id)")
    parser.add_argument(
        "--item-input", metavar="NAME", help="the signature input holding movie titles (default movie_title)"
    )
    parser.add_argument(
        "--signature-key",
        default=ConversionConfig.signature_key,
        metavar="KEY",
        help="signature to convert (default serving_default)",
    )
    parser.add_argument(
        "--target",
        action="append",
        metavar="TARGET",
        help="runtime the file must run on (repeatable; default litert): "
        + "; ".join(f"{t.value} = {spec.description}" for t, spec in TARGETS.items()),
    )
    parser.add_argument(
        "--runtime-python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="also load and run the file in this Python, e.g. a venv with tflite-runtime (repeatable)",
    )
    parser.add_argument(
        "--ranking-users",
        type=int,
        default=DEFAULT_RANKING_USERS,
        metavar="N",
        help=f"users ranked against every movie (default {DEFAULT_RANKING_USERS})",
    )
    parser.add_argument(
        "--model-name", metavar="NAME", help="name stored in the manifest (default from the export's preset)"
    )
    parser.add_argument(
        "--hash-vocabularies-only",
        action="store_true",
        help="store only the vocabularies' sha256 in the manifest, not the ids",
    )
    parser.add_argument(
        "--summary-markdown",
        nargs="+",
        metavar="REPORT",
        help="print Markdown tables of MODEL.parity.json reports and exit",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress and show TensorFlow's native messages"
    )
    return parser


def _tolerances(items: Sequence[str], mode: Quantization) -> Optional[Tolerances]:
    if not items:
        return None
    from convert.config import DEFAULT_TOLERANCES

    overrides = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator:
            raise InputError(f"--tolerance {item!r} is not NAME=VALUE, e.g. --tolerance max_abs_diff=1e-3")
        if value.strip().lower() == "none":
            overrides[name.strip()] = None
            continue
        try:
            overrides[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--tolerance {item!r}: {value!r} is not a number") from None
    return DEFAULT_TOLERANCES[mode].replace(overrides)


class _NativeOutput:
    """TensorFlow's C++ log lines (written straight to file descriptor 2), kept in a file while converting.

    Python's own stderr keeps pointing at the terminal, so messages and
    tracebacks still show. On success the file is deleted; when the conversion
    fails, `keep()` leaves it in place and says where it is.
    """

    def __init__(self, enabled: bool):
        self._enabled = enabled
        self.path: Optional[Path] = None
        self._saved_fd: Optional[int] = None

    def __enter__(self) -> "_NativeOutput":
        if not self._enabled:
            return self
        sys.stderr.flush()
        descriptor, name = tempfile.mkstemp(prefix="convert-tensorflow-", suffix=".log")
        self.path = Path(name)
        self._saved_fd = os.dup(2)
        self._terminal = os.fdopen(os.dup(self._saved_fd), "w", buffering=1, encoding="utf-8", errors="replace")
        self._original_stderr = sys.stderr
        os.dup2(descriptor, 2)
        os.close(descriptor)
        sys.stderr = self._terminal
        # Log handlers made earlier hold the old stderr object, which now writes to the file.
        handlers = logging.getLogger().handlers
        self._handlers = [h for h in handlers if getattr(h, "stream", None) is self._original_stderr]
        for handler in self._handlers:
            handler.setStream(self._terminal)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._saved_fd is None:
            return
        sys.stderr = self._original_stderr
        for handler in self._handlers:
            handler.setStream(self._original_stderr)
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        self._saved_fd = None
        self._terminal.close()

    def keep(self) -> str:
        """Keeps the captured lines; returns a clause naming the file, or "" when nothing was captured."""
        if self.path is None or not self.path.is_file():
            return ""
        text = self.path.read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip() and not _NATIVE_INFO_LINE.match(line)]
        if not lines:
            self.discard()
            return ""
        kept, self.path = self.path, None  # so that `discard` leaves it
        last = one_line(lines[-1], NATIVE_LINE_CHARS)
        return f"; TensorFlow said: {last!r} (all {len(lines)} of its native messages are in {kept})"

    def discard(self) -> None:
        """Deletes the captured lines unless `keep` kept them."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.summary_markdown:
        if args.saved_model or args.out:
            return _fail("--summary-markdown takes only report files; run it without SAVED_MODEL and --out")
        return _print_tables(args.summary_markdown)
    if not args.saved_model or not args.out:
        return _fail("give SAVED_MODEL and --out MODEL.tflite (see python -m convert --help)")

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    native = _NativeOutput(enabled=not args.verbose)
    try:
        from convert.config import parse_quantization
        from convert.convert import convert_saved_model

        mode = parse_quantization(args.quantize)
        config = ConversionConfig(
            quantization=mode,
            user_input=args.user_input,
            item_input=args.item_input,
            signature_key=args.signature_key,
            parity_data=args.parity_data,
            tolerances=_tolerances(args.tolerance, mode) if mode is not Quantization.FULL_INT8 else None,
            targets=tuple(args.target or (Target.LITERT,)),
            runtime_pythons=tuple(args.runtime_python),
            ranking_users=args.ranking_users,
            model_name=args.model_name,
            embed_vocabularies=not args.hash_vocabularies_only,
        )
        with native:
            result = convert_saved_model(Path(args.saved_model), Path(args.out), config)
    except ValidationError as error:
        if error.result is not None:
            print("\n".join(describe(error.result.to_dict())))
        for failure in error.failures:
            print(f"error: {failure}", file=sys.stderr)
        kept = f"; the file was kept as {error.result.tflite_path}" if error.result is not None else ""
        print(f"error: {args.out} was not written: {len(error.failures)} check(s) failed{kept}", file=sys.stderr)
        return EXIT_REJECTED
    except ConversionError as error:  # the converter failed: its native messages say why
        return _fail(str(error) + native.keep(), EXIT_REJECTED)
    except ConvertError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception:  # a bug: the traceback follows, with where the native messages are
        saved = native.keep()
        if saved:
            print(f"error: the conversion crashed{saved}", file=sys.stderr)
        raise
    finally:
        native.discard()
    print("\n".join(describe(result.to_dict())))
    return EXIT_OK


def _print_tables(paths: Sequence[str]) -> int:
    reports = []
    for name in paths:
        try:
            reports.append(json.loads(Path(name).read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            return _fail(
                f"cannot read report {name} ({error}); pass MODEL.parity.json files written by python -m convert"
            )
        problem = report_problem(reports[-1])
        if problem:
            return _fail(f"{name} is not a report written by python -m convert ({problem}); pass MODEL.parity.json")
    sys.stdout.write(markdown_tables(reports))
    return EXIT_OK


def _fail(message: str, status: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {one_line(message)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
