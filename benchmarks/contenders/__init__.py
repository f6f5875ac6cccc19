"""The contenders, one module per family, behind the interface in :mod:`.base`."""

from __future__ import annotations

from .base import Contender, Env, Unsupported, UowArgs, supports
from .core import Core
from .herorepo_ import Herorepo
from .others import AdvancedAlchemy, Fastcrud
from .raw import RAW, AsyncpgCopy
from .sqlmodel_idiom import SQLModelIdiom

__all__ = ["Contender", "Env", "Unsupported", "UowArgs", "contenders_for", "supports"]

ORDER = ["raw", "raw_copy", "core", "sqlmodel", "herorepo", "advanced_alchemy", "fastcrud"]
"""Column order in the report."""


def contenders_for(env: Env, only: set[str] | None = None) -> list[Contender]:
    """Every contender that runs on ``env.backend`` (or those named in ``only``)."""
    classes: list[type[Contender]] = [RAW[env.backend]]
    if env.backend == "postgres":
        classes.append(AsyncpgCopy)
    classes += [Core, SQLModelIdiom, Herorepo, AdvancedAlchemy, Fastcrud]
    return [cls(env) for cls in classes if only is None or cls.key in only]
