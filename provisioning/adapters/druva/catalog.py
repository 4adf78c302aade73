"""Profiles and storages, by name and by id: the admin writes names, Druva's API speaks ids."""

from __future__ import annotations

from collections.abc import Iterable

from provisioning.adapters.druva.payloads import CatalogEntry
from provisioning.errors import CatalogError


class _Names:
    def __init__(self, kind: str, entries: Iterable[CatalogEntry]) -> None:
        self.kind = kind
        self._by_id = {entry.entry_id: entry.name for entry in entries}

    @property
    def names(self) -> list[str]:
        return [self._by_id[entry_id] for entry_id in sorted(self._by_id)]

    def id_of(self, name: str) -> int:
        exact = [entry_id for entry_id, known in self._by_id.items() if known == name]
        if exact:
            return min(exact)
        # Admins type "us-east" for "US-East"; accept that only when it points at one entry.
        folded = [entry_id for entry_id, known in self._by_id.items() if known.casefold() == name.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise CatalogError(self.kind, name, self.names)

    def name_of(self, entry_id: int) -> str:
        # A user on a profile this credential cannot list still has to be shown as something.
        return self._by_id.get(entry_id, f"unknown {self.kind} #{entry_id}")


class Catalog:
    def __init__(self, profiles: Iterable[CatalogEntry], storages: Iterable[CatalogEntry]) -> None:
        self.profiles = _Names("profile", profiles)
        self.storages = _Names("storage", storages)
