"""The example apps' tests use herorepo.testing, as a user's suite would, on every backend.

tests/conftest.py turns the plugin on; here its fixtures get the backend's URL, the app's tables,
the app's policies and the app. Every test runs inside a transaction that is rolled back at its
end.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData

from examples.heroes_api.app import POLICIES, Base, app
from herorepo import Policy

from ..conftest import backend_url

TENANT = "acme"
"""The tenant of ``client``'s requests."""


@pytest.fixture(scope="session")
def herorepo_url(backend: str) -> str:
    return backend_url(backend)


@pytest.fixture(scope="session")
def herorepo_metadata() -> MetaData:
    return Base.metadata


@pytest.fixture(scope="session")
def herorepo_policies() -> list[Policy]:
    """The app's policies: herorepo_db, herorepo_client's requests and their tenants are scoped
    as in the app."""
    return POLICIES


@pytest.fixture
def herorepo_app() -> FastAPI:
    return app


@pytest.fixture
def client(herorepo_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """herorepo_client, its requests made for tenant acme, as the app's gateway would send them.

    A request may name another tenant with ``headers={"X-Tenant": ...}``.
    """
    herorepo_client.headers["X-Tenant"] = TENANT
    return herorepo_client
