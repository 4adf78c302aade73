"""SCM_ALLOWED_IP_RANGES, checked before provisioning: the only addresses Kudu/SCM (deployments) answers.

Usage: python3 infra/scripts/check_scm_ranges.py '<ranges>'    (run by azd-preprovision.sh)

The template removes the spaces, splits the value on commas and gives each entry to App Service as an
access restriction's ``ipAddress``, in CIDR form. So each entry must be an IPv4 range (``a.b.c.d/n``,
every octet 0-255, ``n`` at most 32) or an IPv6 range (``n`` at most 128). A range of prefix 0
(``0.0.0.0/0``, ``::/0``, or any address with ``/0``) is every address: SCM open to the whole internet,
refused unless ``SCM_ALLOW_ANY=yes`` says that is meant. Exit status 1 with every refused entry named.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys

EXAMPLE = "such as 203.0.113.7/32 or 2001:db8::/48"
PREFIX = re.compile(r"0|[1-9][0-9]{0,2}")


def problems(ranges: str, *, allow_any: bool) -> tuple[list[str], list[str]]:
    """The refused entries of ``ranges`` and the warnings about accepted ones."""
    refused: list[str] = []
    warnings: list[str] = []
    for number, entry in enumerate(ranges.replace(" ", "").split(","), start=1):
        problem = _problem(entry, number)
        if problem:
            refused.append(f"SCM_ALLOWED_IP_RANGES: {problem}")
            continue
        network = ipaddress.ip_network(entry, strict=False)
        if network.prefixlen == 0:
            every = (
                f"{entry!a} is every IPv{network.version} address: Kudu/SCM, where code is deployed, "
                "would answer the whole internet"
            )
            if allow_any:
                warnings.append(f"warning: SCM_ALLOWED_IP_RANGES: {every} (SCM_ALLOW_ANY=yes)")
            else:
                refused.append(
                    f"SCM_ALLOWED_IP_RANGES: {every}. Name the addresses you deploy from; to open it to "
                    "every address on purpose: azd env set SCM_ALLOW_ANY yes"
                )
    return refused, warnings


def _problem(entry: str, number: int) -> str | None:
    """Why ``entry`` is not an IPv4 or IPv6 range in CIDR form, or None."""
    if not entry:
        return f"entry {number} is empty (a comma too many?)"
    shown = ascii(entry)  # quoted, and a control or non-ASCII character shows as an escape
    address, slash, prefix = entry.partition("/")
    version = 6 if ":" in address else 4
    try:
        parsed = ipaddress.IPv6Address(address) if version == 6 else ipaddress.IPv4Address(address)
    except ValueError as error:
        return f"{shown} is not an IPv{version} address range in CIDR form ({EXAMPLE}): {error}"
    if "%" in address:  # a scope id (fe80::1%eth0) is no part of an access restriction
        return f"{shown}: a zone index ('%...') has no place in an address range"
    longest = parsed.max_prefixlen
    if not slash:
        return f"{shown} is an address, not a range in CIDR form: write {address}/{longest} for it alone"
    if not PREFIX.fullmatch(prefix):
        return f"{shown}: the prefix {'/' + prefix!a} is not a number from 0 to {longest}"
    if int(prefix) > longest:
        return f"{shown}: the prefix /{prefix} is longer than an IPv{version} address (at most /{longest})"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_scm_ranges.py '<comma-separated CIDR ranges>'", file=sys.stderr)
        return 2
    refused, warnings = problems(argv[1], allow_any=os.environ.get("SCM_ALLOW_ANY", "") == "yes")
    for line in (*warnings, *refused):
        print(line, file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
