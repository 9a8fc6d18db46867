"""What every command line of the project shares: exit 0 when done, 2 for bad input, 1 for a failure while
running; in both error cases one line on stderr (``error: ...``) and no traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """What a user's input can be wrong with: settings, data sources, checkpoints, paths that are not there or not
    allowed (imported when a command runs, so that parsing its arguments stays light: no torch)."""
    from core.checkpoint import CheckpointError
    from core.config import ConfigError
    from core.sources import DataSourceError

    return (ConfigError, DataSourceError, CheckpointError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's bad-input line: a wrong option or value is one line on stderr, which names the
    command and where its options are listed (argparse's own prints the whole usage first), and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (`{self.prog} --help` lists the options)\n")


def reader_gone() -> int:
    """The exit of a command whose reader went away (``| head``): nothing left to tell it, no error line; stdout
    goes to /dev/null so the interpreter's own flush at exit stays quiet too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_FAILED


def run_command(body: Callable[[], int | None], bad_input: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's body and map what it raises to the project's exit codes (one line, no traceback)."""
    bad = bad_input_errors() + bad_input
    try:
        code = int(body() or EXIT_OK)
        sys.stdout.flush()  # here, so a reader gone away is met below rather than at the interpreter's exit
        return code
    except bad as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return reader_gone()
    except Exception as e:  # noqa: BLE001 - a failure while running: one line, the details are not for the user
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
