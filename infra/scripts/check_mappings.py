"""The mappings file ships inside the app package: check it before anything is provisioned.

Usage: python3 infra/scripts/check_mappings.py <mappings.yaml>   (the repository root on PYTHONPATH)

The file goes through the product's own loader (``provisioning.config.load_config``), the one the
deployed functions use, and every problem is listed with its line. That loader needs the app's
requirements (PyYAML, pydantic, ...) and Python 3.11 or later: without them nothing is passed, the check
fails closed and says what to install. A file it could not validate is never reported as fine.
Groups are not resolved here: that needs Graph (``doctor`` does it).

Exit status: 0 valid; 1 the file is missing, not a regular file, or refused (each problem listed);
3 the file could not be checked (this Python is too old or lacks the app's requirements); 2 usage.
The hooks (lib.sh, ``mappings_check``) check the Python's version before running this file: a Python
older than 3.7 cannot even parse it.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

PYTHON_MIN = (3, 11)  # requires-python in pyproject.toml; tests/infra/test_hooks.py keeps them equal
INSTALL = (
    "install the app's requirements for the Python that runs the hooks: pip install -r requirements.txt "
    "(or run from the project's venv: python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt, "
    "then activate it, or set PYTHON=.venv/bin/python)"
)
MISSING = (
    "{path}: missing. Copy examples/mappings.yaml next to function_app.py and edit it (README, mappings)."
)
KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class CannotCheck(Exception):
    """The file could not be validated here: not a verdict on the file, and never a pass."""


def check(path: Path) -> list[str]:
    """The problems with the mappings file at ``path``; none when it can be deployed. ``CannotCheck``
    when this Python cannot run the app's loader."""
    problem = _not_a_file(path)
    if problem:
        return [problem]
    if sys.version_info < PYTHON_MIN:
        version = ".".join(map(str, sys.version_info[:2]))
        needed = ".".join(map(str, PYTHON_MIN))
        raise CannotCheck(
            f"{sys.executable} is Python {version}, too old: the app needs Python {needed} or later"
        )
    try:
        from provisioning.config import ConfigError, load_config
    except ImportError as error:
        raise CannotCheck(
            f"the app's own mappings loader (provisioning.config) cannot be imported by {sys.executable}: "
            f"{error}; {INSTALL}"
        ) from None
    try:
        config = load_config(path)
    except ConfigError as error:
        return list(error.problems)
    except Exception as error:  # a crash of the loader is no verdict on the file: never a pass either
        raise CannotCheck(f"the mappings loader failed: {type(error).__name__}: {error}") from None
    print(f"{path}: {len(config.mappings)} mapping(s), valid")
    return []


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` is no mappings file, found without opening it (a FIFO would block the hook)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return MISSING.format(path=path)
    except OSError as error:
        return f"{path}: cannot be read: {error.strerror or error}"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in KINDS if test(mode)), "not a file")
    return (
        f"{path}: is {kind}, not a regular file. mappings.yaml must be a regular file "
        "(start from examples/mappings.yaml)."
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_mappings.py <mappings.yaml>", file=sys.stderr)
        return 2
    path = Path(argv[1])
    try:
        problems = check(path)
    except CannotCheck as error:
        print(f"{path}: not checked, so not passed: {error}", file=sys.stderr)
        return 3
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
