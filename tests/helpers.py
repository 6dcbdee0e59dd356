"""Plain helpers and constants shared by test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import os
import re
import uuid
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from app.extensions import db
from app.models import AuditChainHead, Resident
from app.models.audit import GENESIS

TODAY = date(2026, 11, 23)
PASSWORD = "test-password-1"
OUTPUT_DIR = Path(__file__).parent / "output"


def _create_pg_database(url: str) -> tuple[str, callable]:
    base = make_url(url)
    name = f"survey_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


@contextmanager
def fresh_database(folder: Path):
    """A new empty database: on the PostgreSQL server of TEST_DATABASE_URL, or a SQLite file."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url and url.startswith("postgresql"):
        fresh, drop = _create_pg_database(url)
        try:
            yield fresh
        finally:
            drop()
    else:
        yield f"sqlite:///{folder / 'test.db'}"


def empty_tables() -> None:
    """Delete every row of every table (in the current app context's database)."""
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
        # the audit chain starts again from its head, as a new database does
        conn.execute(AuditChainHead.__table__.insert().values(id=1, seq=0, audit_id=None, hash=GENESIS))


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', html
    )
    assert match, "page has no CSRF token"
    return match.group(1)


def resident_count() -> int:
    return db.session.scalar(db.select(db.func.count()).select_from(Resident))
