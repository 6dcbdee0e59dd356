"""Server-side sessions: every sign-in opens a row that each request checks.

The cookie carries a random token; the database keeps only its SHA-256, so a copy of the
table opens nothing. A session ends when it is revoked (signing out, "sign out everywhere",
an administrator disabling the account or resetting its password), after
``SESSION_MAX_HOURS`` from the sign-in whatever the activity, and after
``SESSION_IDLE_MINUTES`` without a request. ``last_seen_at`` is written at most once a
minute, so a busy session costs one indexed read per request and no write.

Plain functions over a session that flush and never commit; ``now`` is naive UTC.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.models import User, UserSession

SEEN_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often
KEEP_FOR = timedelta(days=7)  # rows of sessions opened longer ago are deleted at each sign-in
USER_AGENT_MAX = 200
IP_MAX = 45


@dataclass(frozen=True)
class SessionSettings:
    max_hours: int = 12
    idle_minutes: int = 30

    @classmethod
    def from_config(cls, config) -> SessionSettings:
        return cls(max_hours=int(config["SESSION_MAX_HOURS"]), idle_minutes=int(config["SESSION_IDLE_MINUTES"]))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, *, now: datetime, ip: str | None, user_agent: str | None) -> str:
    """Record a new session for ``user`` and return its token (for the cookie only). Rows of
    sessions opened more than ``KEEP_FOR`` ago (long ended) are deleted on the way."""
    session.execute(delete(UserSession).where(UserSession.created_at < now - KEEP_FOR))
    token = secrets.token_urlsafe(32)
    session.add(UserSession(token_hash=token_hash(token), user_id=user.id, created_at=now, last_seen_at=now,
                            ip=(ip or None) and ip[:IP_MAX], user_agent=(user_agent or None) and user_agent[:USER_AGENT_MAX]))
    session.flush()
    return token


def find_session(session: Session, token: str | None, *, now: datetime,
                 settings: SessionSettings) -> tuple[User, UserSession] | None:
    """The user and the session of this token when it is still valid: one indexed query."""
    if not token or len(token) > 100:
        return None
    row = session.execute(
        select(User, UserSession).join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None
    user, record = row
    if record.revoked_at is not None or not user.is_enabled:
        return None
    if record.created_at <= now - timedelta(hours=settings.max_hours):
        return None
    if record.last_seen_at <= now - timedelta(minutes=settings.idle_minutes):
        return None
    return user, record


def needs_touch(record: UserSession, now: datetime) -> bool:
    return now - record.last_seen_at >= SEEN_EVERY


def touch(session: Session, session_id: int, *, now: datetime) -> None:
    session.execute(update(UserSession).where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
                    .values(last_seen_at=now))


def revoke(session: Session, token: str | None, *, now: datetime) -> bool:
    """End the session of this token; False when there was none open."""
    if not token:
        return False
    result = session.execute(update(UserSession).where(UserSession.token_hash == token_hash(token),
                                                       UserSession.revoked_at.is_(None)).values(revoked_at=now))
    return bool(result.rowcount)


def revoke_all(session: Session, user: User, *, now: datetime, keep_token: str | None = None) -> int:
    """End every open session of ``user`` (but the one of ``keep_token``); how many ended."""
    stmt = update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    if keep_token:
        stmt = stmt.where(UserSession.token_hash != token_hash(keep_token))
    return session.execute(stmt.values(revoked_at=now)).rowcount or 0
