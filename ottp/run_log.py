"""A quiet terminal for long commands: library output to a log file, progress lines on screen.

``ottp demo`` runs dbt, Dagster, GX and Spark in this process and in child
processes; their output (dbt's console lines, Dagster's log, the JVM's,
Python warnings) goes to a log file under ``OTTP_DATA_DIR/logs`` while the
terminal gets one line per stage. The file descriptors 1 and 2 are redirected,
not only ``sys.stdout``: child processes (dbt, the JVM) inherit them.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path

# Lines of the log shown when a command fails: enough for dbt's or Dagster's error.
TAIL_LINES = 40


def log_path(logs_dir: Path, command: str) -> Path:
    """``<logs_dir>/<command>-<local time>.log``: one file per run, sorted by time."""
    return logs_dir / f"{command}-{datetime.now():%Y%m%d-%H%M%S}.log"


@contextmanager
def quiet_terminal(path: Path) -> Iterator[Callable[[str], None]]:
    """Send everything written to stdout and stderr to ``path``; yield a function that
    writes a line to the terminal. An exception is logged with its traceback before
    the terminal is restored, then raised again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)

    def say(line: str) -> None:
        terminal.write(line + "\n")

    with open(path, "a", buffering=1, encoding="utf-8", errors="replace") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            # sys.stdout may not write to fd 1 (a test's capture): point it at the log too
            with redirect_stdout(log), redirect_stderr(log):
                yield say
        except BaseException:
            traceback.print_exc(file=log)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()


def show_tail(path: Path, lines: int = TAIL_LINES) -> None:
    """The last lines of the log on stderr, with its path: what failed, without a search."""
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    print(f"\nFAILED; the last {min(lines, len(text))} lines of {path}:", file=sys.stderr)
    for line in text[-lines:]:
        print("  " + line, file=sys.stderr)
