"""The unit of work: one transaction per request, command or job, committed at that boundary.

Services take the session, ``flush()`` when they need the database to answer (an id, a
constraint) and never commit. The boundary wraps them::

    with transaction(db.session, write=True):
        case = claim_next(db.session, ...)

and commits when the block ends or rolls back when it raises, so a refused request leaves
nothing behind. The few services that must run several transactions of their own say so in
their name (``..._and_commit``): the per-county draw of a month and the roster import's
atomic batch.

The lock helpers in ``app.core.locks`` know whether a transaction has written anything, so
they refuse to end one that holds the caller's writes instead of committing it behind the
caller's back.
"""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy.orm import Session

from app.core.locks import begin_write, plain


@contextmanager
def transaction(session: Session, *, write: bool = False, commit: bool = True):
    """Run the block as one transaction: commit when it ends, roll back when it raises.
    ``write=True`` begins it holding SQLite's write lock (see ``locks.begin_write``), for
    work that reads and then writes the same rows. ``commit=False`` makes the block a
    rehearsal (a dry run, a preview): rolled back however it ends."""
    session = plain(session)
    if write:
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
