"""Database locks for work that must happen once, whatever number of processes attempt it.

PostgreSQL: a transaction-scoped advisory lock per (purpose, key), released at commit or
rollback. SQLite: BEGIN IMMEDIATE, the database's single write lock, taken as the transaction
starts (a lock taken later could fail at once on a stale snapshot instead of waiting).
Either way the unique constraints remain the final guarantee.

A lock must be its transaction's first act, so these helpers end a transaction that has only
read (a view has loaded the user, say) and refuse one that holds writes: they never commit
behind the caller's back. To tell the two apart, every session records (in ``session.info``)
whether its current transaction has written. The commit belongs to the boundary
(``app.core.transactions``).
"""
from __future__ import annotations

from sqlalchemy import event, text
from sqlalchemy.orm import Session, scoped_session

WROTE = "unit_of_work.wrote"  # session.info: the current transaction has written
WRITE_LOCKED = "unit_of_work.write_locked"  # session.info: it was begun holding the write lock


def plain(session: Session) -> Session:
    return session() if isinstance(session, scoped_session) else session


DRAW = 1  # key: county id
CLOSE = 2  # key: round id
PURGE = 3  # key: 0 (one retention purge at a time)
PHONE_SEARCH = 5  # key: user id (the case list's phone searches are counted one at a time)
SIGN_IN_NAME = 6  # key: hashtext(user name) (app/auth/throttle.py)
SIGN_IN_ADDRESS = 7  # key: hashtext(address)


def has_writes(session: Session) -> bool:
    """Whether the session's current transaction holds writes: pending ORM changes, or
    statements run through the session (flushes, ``session.execute`` of DML or other SQL).
    Writes made on the raw connection (``bulk_load``, the driver's cursor) are not seen."""
    session = plain(session)
    if session.new or session.deleted or session.info.get(WROTE):
        return True
    return any(session.is_modified(obj) for obj in session.dirty)


@event.listens_for(Session, "after_flush")
def _flushed(session, _context):
    session.info[WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state):
    if state.is_select:
        return
    statement = state.statement
    if getattr(statement, "is_dml", False) or not str(statement).lstrip()[:6].upper() in ("SELECT", "PRAGMA"):
        state.session.info[WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _ended(session, transaction):
    if transaction.parent is None:
        session.info.pop(WROTE, None)
        session.info.pop(WRITE_LOCKED, None)


class LockOrderError(RuntimeError):
    """A lock was asked for in a transaction that has already written: a programming error."""


def _fresh_transaction(session: Session, helper: str) -> None:
    if not session.in_transaction():
        return
    if has_writes(session):
        raise LockOrderError(f"{helper} must begin its transaction, but this one holds uncommitted writes")
    session.rollback()  # it has only read: nothing is lost


def begin_write(session: Session) -> Session:
    """Make the session's work from here on a safe write transaction. On SQLite: begin one
    that holds the write lock at once (BEGIN IMMEDIATE), so a read-then-write cannot fail on
    a stale snapshot; inside such a transaction already, nothing to do. On PostgreSQL nothing
    to do: row locks taken by the statements themselves (FOR UPDATE / FOR SHARE) decide, and
    READ COMMITTED lets each statement see what was committed before it.
    Returns the plain session."""
    session = plain(session)
    if session.in_transaction() and session.info.get(WRITE_LOCKED):
        return session
    if session.get_bind().dialect.name != "sqlite":
        # nothing to take, but the same mistake is refused as on SQLite
        if session.in_transaction() and has_writes(session):
            raise LockOrderError("begin_write must begin its transaction, but this one holds uncommitted writes")
        session.info[WRITE_LOCKED] = True
        return session
    _fresh_transaction(session, "begin_write")
    session.connection(execution_options={"sqlite_immediate": True})
    session.info[WRITE_LOCKED] = True
    return session


def begin_locked(session: Session, purpose: int, key: int) -> None:
    """Begin a transaction holding the lock for (purpose, key)."""
    session = plain(session)
    _fresh_transaction(session, "begin_locked")
    if session.get_bind().dialect.name == "sqlite":
        session.connection(execution_options={"sqlite_immediate": True})
        session.info[WRITE_LOCKED] = True
    else:
        session.execute(text("SELECT pg_advisory_xact_lock(:purpose, :key)"), {"purpose": purpose, "key": key})
