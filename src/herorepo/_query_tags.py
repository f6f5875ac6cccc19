"""Query tags: a comment on every statement that says which application, route and unit of work
sent it, in the sqlcommenter format (https://google.github.io/sqlcommenter/spec/).

``EngineConfig(query_tags=QueryTags(application="billing"))`` makes the engine append to each
statement it sends a comment such as::

    SELECT ... WHERE hero.id = $1 /*application='billing',route='%2Fheroes%2F%7Bid%7D'*/

Keys are sorted; each value is URL-encoded (every character but letters, digits and ``_.-~``),
so no value can contain ``'``, ``*/`` or a newline: a tag cannot end the comment, whatever it
holds. The values are stable by design: the application is fixed in the configuration, the
route is the path *template* of the request (``/heroes/{hero_id}``, never ``/heroes/7``) and the
unit of work's name is a fixed name. A statement therefore keeps one text per route and unit of
work, which asyncpg's prepared-statement cache and ``pg_stat_statements`` (which strips comments
anyway) key on.

The hook is installed only when ``query_tags`` is set: a connection event puts every statement
of the engine on SQLAlchemy's slower path with events.
"""

from __future__ import annotations

import re
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import event

from ._errors import ConfigurationError
from ._transaction import connection_state

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["QueryTags", "install_query_tags", "reset_route", "set_route"]

_APPLICATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:/@+-]{0,99}")

_MAX_VALUE = 200
"""Characters of a route or unit-of-work name kept in a tag (before encoding)."""

_MAX_CACHED = 1024
"""Comments kept per engine, one per (route, unit of work) pair seen; then the cache restarts."""


@dataclass(frozen=True, kw_only=True)
class QueryTags:
    """Which tags to append to every statement, as a sqlcommenter comment.

    ::

        db = Database(url, EngineConfig(query_tags=QueryTags(application="billing")))

    Only stable, low-cardinality values are tagged, so that the server's statement statistics
    and asyncpg's prepared-statement cache still group statements: never a request id, a user
    or a concrete URL. See docs/observability.md.

    Args:
        application: A fixed name of the application (``application='billing'``): up to 100
            letters, digits, spaces and ``. _ : / @ + -``, starting with a letter or digit.
        route: Tag the path template of the FastAPI route being served
            (``route='/heroes/{hero_id}'``), as set by the dependencies of
            :mod:`herorepo.integrations.fastapi`.
        unit_of_work: Tag the name of the unit of work whose transaction runs the statement
            (``unit_of_work='transfer'``): ``db.unit_of_work(name=...)`` or
            :meth:`Database.run <herorepo.Database.run>`'s work function.

    Raises:
        ConfigurationError: a value has the wrong type or form, or nothing is tagged.

    .. versionadded:: 0.1.0
    """

    application: str | None = None
    route: bool = True
    unit_of_work: bool = True

    def __post_init__(self) -> None:
        application: object = self.application
        if application is not None and (
            not isinstance(application, str) or not _APPLICATION.fullmatch(application)
        ):
            raise ConfigurationError(
                "QueryTags(application=...) must be a fixed name of up to 100 letters, digits, "
                "spaces and . _ : / @ + - (starting with a letter or digit), such as "
                f"'billing'; got {application!r}."
            )
        for name in ("route", "unit_of_work"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"QueryTags({name}=...) must be True or False, got {getattr(self, name)!r}."
                )
        if application is None and not self.route and not self.unit_of_work:
            raise ConfigurationError(
                "QueryTags() with no application, route=False and unit_of_work=False tags "
                "nothing; leave query_tags unset instead."
            )


# The path template of the route the current task serves; the FastAPI dependencies set it.
_route: ContextVar[str | None] = ContextVar("herorepo_route", default=None)


def set_route(route: str | None) -> Token[str | None]:
    """Tag this task's statements with ``route`` (a path template) until :func:`reset_route`."""
    return _route.set(route)


def reset_route(token: Token[str | None]) -> None:
    try:
        _route.reset(token)
    except ValueError:  # reset in another context than it was set in: that context ends anyway
        pass


def install_query_tags(engine: Engine, tags: QueryTags) -> None:
    """Append the comment of ``tags`` to every statement ``engine`` sends."""
    # pymysql (aiomysql) fills parameters in with Python's % operator, so the comment's % signs
    # must be doubled whenever it does; the other drivers get the statement as it is.
    percent_formats = engine.dialect.paramstyle in ("format", "pyformat")
    comments: dict[tuple[str | None, str | None], str] = {}

    def comment_for(route: str | None, work: str | None) -> str:
        comment = comments.get((route, work))
        if comment is None:
            pairs = [("application", tags.application), ("route", route), ("unit_of_work", work)]
            comment = format_comment({key: value for key, value in pairs if value is not None})
            if len(comments) >= _MAX_CACHED:
                comments.clear()
            comments[(route, work)] = comment
        return comment

    def before_cursor_execute(
        conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        route = _route.get() if tags.route else None
        work: str | None = None
        if tags.unit_of_work:
            state = connection_state(conn)
            work = state.name if state is not None else None
        if route is None and work is None and tags.application is None:
            return statement, parameters
        comment = comment_for(route, work)
        if percent_formats:
            if executemany:
                # pymysql turns an INSERT's executemany into one multi-row INSERT only when
                # nothing follows VALUES (...): leave those statements untagged.
                return statement, parameters
            if parameters or context is None or not context.no_parameters:
                comment = comment.replace("%", "%%")
        return append_comment(statement, comment), parameters

    event.listen(engine, "before_cursor_execute", before_cursor_execute, retval=True)


def format_comment(tags: dict[str, str]) -> str:
    """The sqlcommenter comment of ``tags``: ``/*key='value',...*/``, keys sorted."""
    return "/*" + ",".join(f"{key}='{_encode(tags[key])}'" for key in sorted(tags)) + "*/"


def _encode(value: str) -> str:
    # quote() with safe="" encodes ' and * and / too, so no value can end the comment or the
    # quoted string; the spec's escaping of ' after encoding has nothing left to escape.
    return quote(value[:_MAX_VALUE], safe="")


def append_comment(statement: str, comment: str) -> str:
    """``statement`` with ``comment`` at its end (before a final ``;``)."""
    body = statement.rstrip()
    end = ""
    if body.endswith(";"):
        body, end = body[:-1].rstrip(), ";"
    # A trailing -- comment would swallow ours on the same line.
    separator = "\n" if "--" in body.rpartition("\n")[2] else " "
    return f"{body}{separator}{comment}{end}"
