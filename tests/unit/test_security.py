"""Security checks on the source and on messages: no SQL from formatted text, no passwords."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from herorepo import ConfigurationError, Database

SRC = Path(__file__).resolve().parents[2] / "src" / "herorepo"
SQL_SINKS = {"text", "literal_column", "exec_driver_sql", "execute", "exec"}


def _is_formatted(node: ast.expr) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    )


def test_no_sql_is_built_by_string_formatting() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in SQL_SINKS and _is_formatted(node.args[0]):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize(
    "password", ["p@ss:w/rd%", "s3cr3t", "with space", "ünïcødé", "%40at%3Acolon"]
)
def test_passwords_with_url_characters_never_show(password: str) -> None:
    from urllib.parse import quote

    encoded = quote(password, safe="")
    db = Database(f"postgresql://app:{encoded}@db.example:5432/app")
    shown = [repr(db), db.safe_url, repr(db.engine), repr(db.engine.url), str(db.engine.url)]
    for text in shown:
        assert password not in text
        assert encoded not in text
    for url in (
        f"postgresql+psycopg2://app:{encoded}@db/app",
        f"oracle://app:{encoded}@db/app",
        f"mysql+pymysql://app:{encoded}@db/app",
    ):
        with pytest.raises(ConfigurationError) as caught:
            Database(url)
        assert password not in str(caught.value)
        assert encoded not in str(caught.value)
