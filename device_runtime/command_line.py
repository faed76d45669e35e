"""What every command line of the kit shares: a usage mistake is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (exit 2) instead of the usage block.

    Subcommands made with `add_subparsers` inherit the class, so their mistakes are one line too.
    """

    def error(self, message: str):  # noqa: D102 (argparse's hook)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")
