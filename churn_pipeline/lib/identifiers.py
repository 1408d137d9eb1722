"""SQL identifiers: only names that match one fixed pattern ever reach a SQL string."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class IdentifierError(ValueError):
    pass


def validate_identifier(name: str, what: str = "identifier") -> str:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise IdentifierError(f"{what} {name!r} is not a plain SQL name (letters, digits, underscore)")
    return name


def qualified(schema: str, table: str) -> str:
    return f"{validate_identifier(schema, 'schema')}.{validate_identifier(table, 'table')}"
