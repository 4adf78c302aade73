"""State stores: Table Storage in Azure, an embedded SQLite file everywhere else; one contract.

``open_state_store`` picks one from the settings: Table Storage when ``PROVISIONING_TABLE_CONNECTION_STRING``
or ``PROVISIONING_TABLE_ENDPOINT`` is set (the connection string wins when both are), otherwise SQLite
under ``PROVISIONING_STATE``. The Azure SDK is imported only when Table Storage is chosen: the CLI and
the tests of the SQLite path never pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioning.adapters.state.sqlite import FILE_NAME, SqliteStateStore
from provisioning.errors import NoState, StateFileError
from provisioning.ports import Clock, StateStore
from provisioning.settings import Settings

__all__ = ["NoState", "StateFileError", "open_state_store", "state_location"]

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential


async def open_state_store(
    settings: Settings,
    *,
    clock: Clock | None = None,
    credential: AsyncTokenCredential | None = None,
    create_missing: bool = True,
    existing_only: bool = False,
) -> StateStore:
    """``credential`` is used with ``PROVISIONING_TABLE_ENDPOINT``; without one, the app's Azure identity
    (``provisioning.adapters.identity``). ``create_missing`` False: see ``SqliteStateStore.open``.
    ``existing_only`` (``status``): open what exists, read-only for SQLite, and create nothing; where
    nothing exists yet, raise ``NoState``."""
    if settings.uses_table_storage:
        from provisioning.adapters.state.table import TableStateStore

        secret = settings.provisioning_table_connection_string
        owns = credential is None and secret is None
        if owns:
            from provisioning.adapters.identity import azure_credential

            credential = azure_credential(settings)
        return await TableStateStore.open(
            connection_string=secret.get_secret_value() if secret else None,
            endpoint=settings.provisioning_table_endpoint,
            credential=credential,
            owns_credential=owns,
            clock=clock,
            create_table=not existing_only,
        )
    folder = settings.provisioning_state
    if existing_only and not (folder / FILE_NAME).exists():
        raise NoState(f"{folder / FILE_NAME} does not exist (nothing has run here)")
    return SqliteStateStore.open(folder, clock=clock, create_missing=create_missing and not existing_only)


def state_location(settings: Settings) -> str:
    """Where the state is, for a message: the file, or the table and how it is reached (never the
    connection string, which holds the account key)."""
    if not settings.uses_table_storage:
        return f"state file {settings.provisioning_state / FILE_NAME}"
    from provisioning.adapters.state.table import DEFAULT_TABLE

    if settings.provisioning_table_connection_string is not None:
        return f"Table Storage table {DEFAULT_TABLE!r} (by PROVISIONING_TABLE_CONNECTION_STRING)"
    return f"Table Storage table {DEFAULT_TABLE!r} at {settings.provisioning_table_endpoint}"
