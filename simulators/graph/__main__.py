"""``python -m simulators.graph --port N [--seed tenant.json] [--roles User.Read.All,...]
[--realism kind|production]``.

``--realism production`` runs Graph as it behaves in production (``simulators/realism.py``): late
replication and notifications, skeleton users, mailboxes provisioned over minutes; the tenant it loads
also has a fraction of members without ``userType``, as old tenants do.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path

from simulators.graph.permissions import GRANTED_BY_BICEP, parse_roles
from simulators.graph.simulator import GraphSimulator
from simulators.http import Router, serve_from_command_line
from simulators.realism import KIND, PROFILES, Realism
from simulators.tenants import Tenant, seed_use_case, without_user_types


def build(seed: str | None, roles: Iterable[str] = GRANTED_BY_BICEP, realism: Realism = KIND) -> Router:
    tenant = Tenant.load(Path(seed)) if seed else seed_use_case()
    if realism.graph.untyped_users:
        tenant = without_user_types(tenant, realism.graph)
    return GraphSimulator(tenant, roles=roles, realism=realism).router


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: the shared simulator flags plus ``--roles`` (comma-separated app roles) and
    ``--realism``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--roles", default=",".join(sorted(GRANTED_BY_BICEP)))
    parser.add_argument("--realism", choices=PROFILES, default=KIND.profile.value)
    known, rest = parser.parse_known_args(argv)
    realism = Realism.named(known.realism)
    serve_from_command_line("graph", lambda seed: build(seed, parse_roles(known.roles), realism), rest)


if __name__ == "__main__":
    main()
