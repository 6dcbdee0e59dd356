"""Fast bulk loading inside the current transaction: COPY on PostgreSQL, executemany of
plain tuples on SQLite. Both run on the session's own connection, so a rollback undoes
them like any other statement."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session


def bulk_load(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    connection = session.connection()
    dialect = connection.dialect.name
    driver = connection.connection.driver_connection
    cols = ", ".join(columns)
    if dialect == "postgresql":
        with driver.cursor() as cur:
            with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    elif dialect == "sqlite":
        marks = ", ".join("?" for _ in columns)
        driver.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
    else:  # pragma: no cover - other databases are not supported
        raise RuntimeError(f"unsupported database: {dialect}")
