"""The unit of work: one transaction per request, command or job, committed at that boundary.

Services take the session, ``flush()`` when they need the database to answer (an id, a
constraint) and never commit. The boundary wraps them::

    with transaction(db.session, write=True):
        case = claim_next(db.session, ...)

and commits when the block ends or rolls back when it raises, so a refused request leaves
nothing behind. The few services that must run several transactions of their own say so in
their name (``..._and_commit``): the per-county draw of a month and the roster import's
atomic batch.

The session records whether its transaction has written anything, so the lock helpers in
``app.core.locks`` can refuse to end a transaction that holds the caller's writes instead of
committing them behind the caller's back.
"""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

WROTE = "unit_of_work.wrote"  # session.info: the current transaction has written
WRITE_LOCKED = "unit_of_work.write_locked"  # session.info: it was begun holding the write lock


def plain(session: Session) -> Session:
    return session() if isinstance(session, scoped_session) else session


@contextmanager
def transaction(session: Session, *, write: bool = False, commit: bool = True):
    """Run the block as one transaction: commit when it ends, roll back when it raises.
    ``write=True`` begins it holding SQLite's write lock (see ``locks.begin_write``), for
    work that reads and then writes the same rows. ``commit=False`` makes the block a
    rehearsal (a dry run, a preview): rolled back however it ends."""
    session = plain(session)
    if write:
        from app.core.locks import begin_write

        begin_write(session)
    try:
        yield session
        if commit:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise


def has_writes(session: Session) -> bool:
    """Whether the session's current transaction holds writes (flushed or pending)."""
    session = plain(session)
    return bool(session.new or session.dirty or session.deleted or session.info.get(WROTE))


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
