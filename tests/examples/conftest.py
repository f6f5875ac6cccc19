"""The example apps' tests use herorepo.testing, as a user's suite would, on every backend.

tests/conftest.py turns the plugin on; here its fixtures get the backend's URL, the app's tables
and the app. Every test runs inside a transaction that is rolled back at its end.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData

from examples.heroes_api.app import Base, app

from ..conftest import backend_url


@pytest.fixture(scope="session")
def herorepo_url(backend: str) -> str:
    return backend_url(backend)


@pytest.fixture(scope="session")
def herorepo_metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def herorepo_app() -> FastAPI:
    return app
