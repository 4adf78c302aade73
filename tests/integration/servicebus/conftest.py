"""Fixtures for the wire tests: every broker started here is stopped here."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.integration.servicebus.peers import AmqpPeer, MutePort


@pytest.fixture
def start_peer() -> Iterator[Callable[[str], AmqpPeer]]:
    started: list[AmqpPeer] = []

    def start(mode: str = "accept") -> AmqpPeer:
        started.append(AmqpPeer(mode))
        return started[-1]

    yield start
    for peer in started:
        peer.stop()


@pytest.fixture
def mute_port() -> Iterator[MutePort]:
    port = MutePort()
    yield port
    port.stop()
