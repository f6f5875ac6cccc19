"""Query tags' configuration and comment format (tests/integration/test_query_tags.py: the rest)."""

from __future__ import annotations

from typing import Any

import pytest

from herorepo import ConfigurationError, EngineConfig, QueryTags, create_engine
from herorepo._query_tags import append_comment, format_comment


def test_no_hook_without_query_tags() -> None:
    for url in ("sqlite+aiosqlite://", "postgresql://u@h/d", "mysql://u@h/d"):
        plain = create_engine(url).sync_engine.dispatch.before_cursor_execute
        tags = EngineConfig(query_tags=QueryTags(application="a"))
        hooked = create_engine(url, tags).sync_engine.dispatch.before_cursor_execute
        assert len(hooked) == len(plain) + 1, url


@pytest.mark.parametrize(
    "application", ["", " billing", "a*/b", "bill'ing", "x" * 101, "two\nlines", 42]
)
def test_an_application_name_must_be_a_plain_fixed_name(application: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"QueryTags\(application=...\) must be"):
        QueryTags(application=application)


def test_query_tags_are_checked() -> None:
    assert QueryTags(application="Billing API v2.1").application == "Billing API v2.1"
    with pytest.raises(ConfigurationError, match=r"QueryTags\(route=...\) must be True or"):
        QueryTags(route="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="tags nothing"):
        QueryTags(route=False, unit_of_work=False)
    with pytest.raises(ConfigurationError, match="query_tags must be a QueryTags"):
        EngineConfig(query_tags="billing")  # type: ignore[arg-type]


def test_the_comment_follows_sqlcommenter() -> None:
    # Keys sorted; values URL-encoded, so ' * / and newlines never appear in them.
    comment = format_comment({"route": "/param*d", "controller": "it's"})
    assert comment == "/*controller='it%27s',route='%2Fparam%2Ad'*/"
    assert append_comment("SELECT 1", comment) == f"SELECT 1 {comment}"
    assert append_comment("SELECT 1;\n", comment) == f"SELECT 1 {comment};"
    assert append_comment("SELECT 1 -- why", comment) == f"SELECT 1 -- why\n{comment}"
