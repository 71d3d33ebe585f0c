"""What the format tests share: a configuration with overrides, and the touchpoint check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from workers.config import Config, load
from workers.core.touchpoints import IntakeLimits, Touchpoint, TouchpointParser


@pytest.fixture(scope="session")
def config() -> Config:
    return load(env={})


@pytest.fixture(scope="session")
def with_format() -> Callable[..., Config]:
    """The defaults with some keys of one ``intake.<format>`` section changed."""

    def make(section: str, **changes: Any) -> Config:
        base = load(env={})
        fmt = dataclasses.replace(getattr(base.intake, section), **changes)
        return dataclasses.replace(base, intake=dataclasses.replace(base.intake,
                                                                    **{section: fmt}))

    return make


@pytest.fixture(scope="session")
def accept() -> Callable[[Config, dict[str, Any]], Touchpoint]:
    """The touchpoint intake's verdict on an adapter's event (InvalidEvent if refused)."""

    def check(config: Config, event: dict[str, Any]) -> Touchpoint:
        return TouchpointParser(IntakeLimits.from_config(config)).check(event)

    return check
