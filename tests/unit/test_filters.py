"""Parsing API filters and sort keys: no database needed."""

from __future__ import annotations

import pytest

from herorepo import ConfigurationError, FilterSet, InvalidFilterError

from ..models import HERO_FILTERS, Hero


@pytest.mark.parametrize(
    "order_by", ["name; DROP TABLE hr_hero", "-secret_name", "name,(SELECT 1)", "team"]
)
def test_hostile_or_unlisted_sort_keys_are_refused(order_by: str) -> None:
    with pytest.raises(InvalidFilterError, match="Sortable fields: age, id, name"):
        HERO_FILTERS.parse({"order_by": order_by})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"age": "abc"}, "Invalid value for 'age'"),
        ({"age__in": "1,x"}, "Invalid value for 'age'"),
        ({"age__isnull": "maybe"}, "takes true or false"),
        ({"team_id__lt": "3"}, "not allowed on 'team_id'. Allowed: eq, in, isnull"),
        ({"age__contains": "3"}, "not allowed on 'age'"),
        ({"limit": "6"}, "limit must be between 1 and 5"),
        ({"limit": "-1"}, "limit must be a whole number"),
        ({"offset": "x"}, "offset must be a whole number"),
        ({"limit": "\u00b2"}, "limit must be a whole number"),
        ({"name": "a\x00b"}, "NUL character or a lone surrogate"),
        ({"name__icontains": "\x00"}, "NUL character or a lone surrogate"),
        ({"name__startswith": "x\ud800"}, "NUL character or a lone surrogate"),
        ({"age": str(2**31)}, r"outside the range of its INTEGER column"),
        (
            {"age__in": f"1,{-(2**40)}"},
            r"outside the range of its INTEGER column",
        ),  # a digit to isdigit(), not int()
        ({"offset": "\u0663"}, "offset must be a whole number"),  # Arabic-Indic three
        ({"age__in": ","}, "takes 1 to 500"),
        ({"age__in": ",".join(["1"] * 501)}, "takes 1 to 500"),
    ],
)
def test_invalid_filter_values_are_clear_errors(params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidFilterError, match=message):
        HERO_FILTERS.parse(params)


def test_filter_query_paging_and_defaults() -> None:
    query = HERO_FILTERS.parse({"limit": "3", "offset": "6", "after": "abc", "order_by": "-age"})
    assert (query.limit, query.offset, query.after, query.order_by_names) == (3, 6, "abc", ["-age"])
    assert (query.before, HERO_FILTERS.parse({"before": "xyz"}).before) == (None, "xyz")
    with pytest.raises(InvalidFilterError, match="not both"):
        HERO_FILTERS.parse({"after": "abc", "before": "xyz"})
    assert HERO_FILTERS.parse({}).limit == 5
    assert HERO_FILTERS.allowed["team_id"] == ["eq", "in", "isnull"]


def test_filter_set_declaration_errors() -> None:
    with pytest.raises(ConfigurationError, match="has no column 'power'"):
        FilterSet(Hero, filters={"power": "*"})
    with pytest.raises(ConfigurationError, match="unknown operator"):
        FilterSet(Hero, filters={"name": ["regex"]})
    with pytest.raises(ConfigurationError, match="has no column"):
        FilterSet(Hero, filters={}, sort=["power"])
