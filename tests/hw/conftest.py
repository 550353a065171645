"""Fixtures for the hw tests; the fakes themselves are in hw_fakes.py."""

import pytest

from hw_fakes import FakePhone


@pytest.fixture
def phone(tmp_path, monkeypatch) -> FakePhone:
    return FakePhone(tmp_path, monkeypatch)
