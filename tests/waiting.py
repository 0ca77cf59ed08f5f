"""Waiting for something a real server does in its own time, with a deadline."""

from __future__ import annotations

import time


def wait_for(predicate, seconds: float = 30, what: str = "the condition", interval: float = 0.1):
    """The predicate's first truthy value within `seconds`; AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")
