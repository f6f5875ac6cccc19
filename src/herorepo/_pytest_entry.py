"""herorepo's pytest11 entry point: the ``--herorepo-url`` option and the switch for the fixtures.

pytest loads this module in every run of every project that has herorepo installed, so it does
no more than declare its options. The fixtures live in :mod:`herorepo.testing`, which is loaded
only when a project asks for it, in one of these ways:

* ``pytest_plugins = ["herorepo.testing"]`` in the top-level ``conftest.py`` (or ``-p
  herorepo.testing``);
* a database URL in ``--herorepo-url``, the ``HEROREPO_TEST_URL`` environment variable or the
  ``herorepo_url`` ini option.

``-p no:herorepo`` switches the entry point off; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set,
``-p herorepo`` switches it on.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["add_options", "configured_url"]

ENV_VAR = "HEROREPO_TEST_URL"
_DEST = "herorepo_url"


def add_options(parser: pytest.Parser) -> None:
    """Declare ``--herorepo-url`` and the ``herorepo_url`` ini option."""
    group = parser.getgroup("herorepo", "herorepo test database")
    group.addoption(
        "--herorepo-url",
        dest=_DEST,
        default=None,
        metavar="URL",
        help=(
            "database URL for herorepo.testing's fixtures, and turns them on "
            f"(also: {ENV_VAR}, or the herorepo_url ini option)"
        ),
    )
    parser.addini(
        _DEST,
        "database URL for herorepo.testing's fixtures; setting it turns them on",
        default="",
    )


def configured_url(config: pytest.Config) -> str | None:
    """The URL from ``--herorepo-url``, then ``HEROREPO_TEST_URL``, then the ini option."""
    option: object = config.getoption(_DEST, default=None)
    if isinstance(option, str) and option.strip():
        return option.strip()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    try:
        ini: object = config.getini(_DEST)
    except ValueError:  # the option was not declared: this entry point is switched off
        return None
    return ini.strip() if isinstance(ini, str) and ini.strip() else None


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    if configured_url(config) is not None:
        config.pluginmanager.import_plugin("herorepo.testing")
