"""Profile and storage names resolved to ids, and back."""

from __future__ import annotations

import pytest

from provisioning.adapters.druva.catalog import Catalog
from provisioning.adapters.druva.payloads import CatalogEntry
from provisioning.errors import CatalogError


@pytest.fixture
def catalog() -> Catalog:
    profiles = [CatalogEntry(2, "Finance"), CatalogEntry(1, "Standard"), CatalogEntry(3, "standard")]
    storages = [CatalogEntry(10, "US-East"), CatalogEntry(11, "EU-West")]
    return Catalog(profiles, storages)


def test_names_resolve_exactly_first(catalog: Catalog) -> None:
    assert catalog.profiles.id_of("Standard") == 1
    assert catalog.profiles.id_of("standard") == 3
    assert catalog.storages.id_of("EU-West") == 11


def test_case_is_forgiven_only_when_one_entry_matches(catalog: Catalog) -> None:
    assert catalog.profiles.id_of("FINANCE") == 2
    assert catalog.storages.id_of("us-east") == 10
    with pytest.raises(CatalogError):
        catalog.profiles.id_of("STANDARD")  # Standard or standard?


def test_unknown_name_lists_every_known_one(catalog: Catalog) -> None:
    with pytest.raises(CatalogError) as unknown:
        catalog.storages.id_of("Mars")
    assert str(unknown.value) == "Druva has no storage named 'Mars' (known: EU-West, US-East)"
    assert (unknown.value.kind, unknown.value.known) == ("storage", ["US-East", "EU-West"])


def test_ids_back_to_names(catalog: Catalog) -> None:
    assert catalog.profiles.names == ["Standard", "Finance", "standard"]
    assert catalog.profiles.name_of(2) == "Finance"
    assert catalog.storages.name_of(99) == "unknown storage #99"
