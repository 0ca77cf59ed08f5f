"""Both log-stream hubs implement the declared LogHub protocol, with the same signatures."""

from __future__ import annotations

import inspect

import pytest

from instances.logstream import LogHub, MemoryHub, RedisHub

PROTOCOL_METHODS = [
    name for name, member in vars(LogHub).items() if inspect.isfunction(member) and not name.startswith("_")
]


@pytest.mark.parametrize("hub_class", [MemoryHub, RedisHub])
@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_hub_has_the_protocols_signature(hub_class, name):
    assert inspect.signature(getattr(hub_class, name)) == inspect.signature(getattr(LogHub, name))


def test_hubs_are_log_hubs():
    assert isinstance(MemoryHub(), LogHub)
    assert isinstance(RedisHub("redis://127.0.0.1:6379/3"), LogHub)  # no connection until first use
    assert len(PROTOCOL_METHODS) == 13
