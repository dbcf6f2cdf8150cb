"""Fixtures for the data-plane tests: the shared emulator's store, unique names, small helpers."""

from __future__ import annotations

import uuid

import pytest

from d365_components.emulator.storage.store import Store


@pytest.fixture(scope="session")
def store(emulator) -> Store:
    """The shared emulator's store, for setting up rows faster than over HTTP."""
    return emulator.app.state.store


@pytest.fixture
def unique() -> str:
    """A short marker that keeps one test's rows apart from the others' in the shared org."""
    return uuid.uuid4().hex[:10]

