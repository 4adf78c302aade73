"""The mappings file ships inside the app package: check it before anything is provisioned.

Usage: python3 infra/scripts/check_mappings.py <mappings.yaml>

With the app's requirements installed (``pip install -r requirements.txt``) the file goes through the
product's own loader, the one the deployed functions use, and every problem is listed with its line.
Without them it is parsed as YAML (PyYAML) and must hold a non-empty ``mappings`` list; without PyYAML,
only its presence and a ``mappings:`` key are checked, and the script says so. Exit status 1 when the
file is missing or unusable. Groups are not resolved here: that needs Graph (``doctor`` does it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MISSING = (
    "{path}: missing. Copy examples/mappings.yaml next to function_app.py and edit it (README, mappings)."
)


def check(path: Path) -> list[str]:
    """The problems with the mappings file at ``path``; none when it can be deployed."""
    if not path.is_file():
        return [MISSING.format(path=path)]
    try:
        from provisioning.config import ConfigError, load_config
    except ImportError:
        return _parsed_only(path)
    try:
        config = load_config(path)
    except ConfigError as error:
        return list(error.problems)
    print(f"{path}: {len(config.mappings)} mapping(s), valid")
    return []


def _parsed_only(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        import yaml
    except ImportError:
        if not re.search(r"^mappings\s*:", text, re.MULTILINE):
            return [f"{path}: no top-level 'mappings:' list"]
        print(f"{path}: present (not validated: pip install -r requirements.txt to check it fully)")
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return [f"{path}: not valid YAML: {error}"]
    if not isinstance(data, dict) or not isinstance(data.get("mappings"), list) or not data["mappings"]:
        return [f"{path}: the top level must be a mapping with a non-empty 'mappings' list"]
    count = len(data["mappings"])
    print(f"{path}: valid YAML with {count} mapping(s) (pip install -r requirements.txt to check it fully)")
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_mappings.py <mappings.yaml>", file=sys.stderr)
        return 2
    problems = check(Path(argv[1]))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
