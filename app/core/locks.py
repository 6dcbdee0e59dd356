"""Database locks for work that must happen once, whatever number of processes attempt it.

PostgreSQL: a transaction-scoped advisory lock per (purpose, key), released at commit or
rollback. SQLite: BEGIN IMMEDIATE, the database's single write lock, taken as the transaction
starts (a lock taken later could fail at once on a stale snapshot instead of waiting).
Either way the unique constraints remain the final guarantee.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session, scoped_session

DRAW = 1  # key: county id
CLOSE = 2  # key: round id


def _plain(session: Session) -> Session:
    return session() if isinstance(session, scoped_session) else session


def begin_write(session: Session) -> Session:
    """Make the session's work from here on a safe write transaction. On SQLite: end the
    current transaction (committing it) and start one that holds the write lock at once
    (BEGIN IMMEDIATE), so a read-then-write cannot fail on a stale snapshot. On PostgreSQL
    nothing to do: row locks taken by the statements themselves (FOR UPDATE / FOR SHARE)
    decide, and READ COMMITTED lets each statement see what was committed before it.
    Returns the plain session."""
    session = _plain(session)
    if session.get_bind().dialect.name == "sqlite":
        if session.in_transaction():
            session.commit()
        session.connection(execution_options={"sqlite_immediate": True})
    return session


def begin_locked(session: Session, purpose: int, key: int) -> None:
    """Start a new transaction holding the lock. Ends the session's current transaction
    first (committing it): the lock must be the new transaction's first act."""
    session = _plain(session)
    if session.in_transaction():
        session.commit()
    if session.get_bind().dialect.name == "sqlite":
        session.connection(execution_options={"sqlite_immediate": True})
    else:
        session.execute(text("SELECT pg_advisory_xact_lock(:purpose, :key)"), {"purpose": purpose, "key": key})
