"""OData query text for Graph, built so that no value can change the shape of the query.

A value only ever appears inside a string literal, whose one special character, ``'``, is doubled
(OData ABNF: ``SQUOTE-in-string = SQUOTE SQUOTE``). Everything else (``)``, ``%``, ``&``, ``#``, ``+``,
quotes of other kinds, any Unicode) is literal text inside the quotes; percent-encoding for the URL is
the SDK's job (kiota's URI template encodes every reserved character of a query value).
"""

from __future__ import annotations

# The properties a manual search looks at: each supports ``startsWith`` in a default (strongly
# consistent) query, so the search needs neither ``ConsistencyLevel: eventual`` nor ``$count``
# (microsoft-graph-docs-contrib, includes/filter-directory-objects.md).
SEARCH_PROPERTIES = ("displayName", "givenName", "surname", "mail", "userPrincipalName")


def odata_string(value: str) -> str:
    """An OData string literal: single quotes around, single quotes inside doubled."""
    return "'" + value.replace("'", "''") + "'"


def prefix_filter(prefix: str) -> str:
    """``$filter`` for accounts any of whose ``SEARCH_PROPERTIES`` starts with ``prefix`` (Graph compares
    directory strings without case)."""
    literal = odata_string(prefix)
    return " or ".join(f"startswith({name},{literal})" for name in SEARCH_PROPERTIES)
