"""pytest fixture: a fresh fake provider per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakeprovider.server import FakeProvider


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp
