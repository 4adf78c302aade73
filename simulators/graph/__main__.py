"""``python -m simulators.graph --port N [--seed tenant.json] [--roles User.Read.All,...]``."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path

from simulators.graph.permissions import GRANTED_BY_BICEP, parse_roles
from simulators.graph.simulator import GraphSimulator
from simulators.http import Router, serve_from_command_line
from simulators.tenants import Tenant, seed_use_case


def build(seed: str | None, roles: Iterable[str] = GRANTED_BY_BICEP) -> Router:
    tenant = Tenant.load(Path(seed)) if seed else seed_use_case()
    return GraphSimulator(tenant, roles=roles).router


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: the shared simulator flags plus ``--roles`` (comma-separated app roles)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--roles", default=",".join(sorted(GRANTED_BY_BICEP)))
    known, rest = parser.parse_known_args(argv)
    serve_from_command_line("graph", lambda seed: build(seed, parse_roles(known.roles)), rest)


if __name__ == "__main__":
    main()
