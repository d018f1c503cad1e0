"""The code's shape, enforced: environment variables are read in one place, functions stay short.

ottp/config.py is the one module that maps environment variables to settings;
everything else asks it. A function over MAX_FUNCTION_LINES is several functions
waiting to be named.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = REPO_ROOT / "ottp" / "config.py"
MAX_FUNCTION_LINES = 100
_ENV_READ = re.compile(r"os\.environ|os\.getenv|getenv\(")


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO_ROOT / folder).rglob("*.py"))


def _where(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def test_environment_variables_are_read_only_in_config():
    offenders = [
        f"{_where(path)}:{number}: {line.strip()}"
        for path in _python_files("ottp", "ml", "orchestration")
        if path != CONFIG
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if _ENV_READ.search(line.split("#", 1)[0])  # code, not a comment naming it
    ]
    assert not offenders, "read environment variables through ottp/config.py:\n" + "\n".join(
        offenders
    )


def test_no_function_is_longer_than_the_limit():
    offenders = []
    for path in _python_files("ottp", "ml", "orchestration", "benchmarks"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(f"{_where(path)}:{node.name}:{length}")
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)
