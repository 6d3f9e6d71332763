from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED

SHARED_DATA = SHARED / "data"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache (outside tmp_path, which tests fill with image folders)."""
    d = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CNNLAB_CACHE", str(d))
    return d


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the tests that read ../shared/data, so each real file is decoded once per session."""
    return tmp_path_factory.mktemp("shared-cache")
