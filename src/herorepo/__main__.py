"""The ``herorepo`` command: ``python -m herorepo demo [--url URL]``.

Exit status: 0 on success, 1 when the demo could not run or a step failed, 2 for a bad command
line or a database URL herorepo cannot use.
"""

from __future__ import annotations

import argparse
import sys

from ._version import __version__

__all__ = ["main"]

_DEMO_DEFAULT_URL = "sqlite+aiosqlite:///:memory:"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herorepo",
        description="Typed async repositories, unit of work and eager loading for SQLModel.",
    )
    parser.add_argument("--version", action="version", version=f"herorepo {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="walk through herorepo on a database, printing each step",
        description=(
            "Walk through herorepo: create, read, update and delete rows, a unit of work with a "
            "savepoint, eager loading and the errors it raises. The demo creates the tables "
            "demo_team and demo_hero, drops them at the end, and touches no other table."
        ),
    )
    demo.add_argument(
        "--url",
        default=_DEMO_DEFAULT_URL,
        help=(
            "database URL, e.g. postgresql+asyncpg://user:password@localhost:5432/app or "
            "mysql+aiomysql://user:password@localhost:3306/app (default: %(default)s, an "
            "in-memory SQLite database). The password is never printed."
        ),
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``herorepo`` command line and return its exit status.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status. A malformed command line exits with status 2 from ``argparse``.
    """
    args = _parser().parse_args(argv)
    if args.command == "demo":
        # Imported here, not at the top: the demo module declares its own table models.
        from ._demo import run

        url: str = args.url
        return run(url)
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
