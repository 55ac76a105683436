"""SQL quoting for the statements the platform builds itself (DuckDB, PostgreSQL, SQLite all double
identifier quotes and single literal quotes). One place, so every builder escapes the same way."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"
