from __future__ import annotations

import pytest

from herorepo import InvalidLoadError, eager, joined

from ..models import Hero, Team


def test_string_specs_need_a_model() -> None:
    with pytest.raises(InvalidLoadError, match="pass the model too"):
        eager("heroes")
    assert len(eager("heroes", model=Team)) == 1


def test_joined_needs_a_relationship() -> None:
    with pytest.raises(InvalidLoadError, match="at least one relationship"):
        joined()


def test_eager_builds_one_option_per_spec() -> None:
    options = eager(Team.heroes, (Team.heroes, Hero.powers), joined(Hero.team), model=None)
    assert len(options) == 3
