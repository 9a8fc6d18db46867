"""What every command line of the project shares: exit 0 when done, 2 for bad input, 1 for a failure while
running; in both error cases one line on stderr (``error: ...``) and no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from core.checkpoint import CheckpointError
from core.config import ConfigError
from core.sources import DataSourceError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# what a user's input can be wrong with: settings, data sources, checkpoints, paths that are not there or not allowed
BAD_INPUT: tuple[type[BaseException], ...] = (ConfigError, DataSourceError, CheckpointError, FileNotFoundError,
                                              NotADirectoryError, IsADirectoryError, PermissionError)


def run_command(body: Callable[[], int | None], bad_input: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's body and map what it raises to the project's exit codes (one line, no traceback)."""
    try:
        return int(body() or EXIT_OK)
    except BAD_INPUT + bad_input as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a failure while running: one line, the details are not for the user
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
