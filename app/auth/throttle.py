"""Sign-in throttling: too many failures lock an account name, or block an address, for a while.

Pure functions over a session; the caller passes ``now`` (naive UTC) so tests pin the clock.
Every attempt is recorded, including those refused because of the lock: they count as failures,
so whoever keeps trying stays locked out, while the lock of someone who waits lifts once the
failures have left the window. Unknown user names are counted like real ones, so the lock does
not disclose which accounts exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.models import LoginAttempt

USERNAME_MAX = 50
IP_MAX = 45
KEEP_FOR = timedelta(days=1)  # rows older than this are pruned when a new attempt is recorded


@dataclass(frozen=True)
class ThrottleSettings:
    max_failures_per_account: int = 5
    max_failures_per_address: int = 20
    lock_minutes: int = 15

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.lock_minutes)

    @classmethod
    def from_config(cls, config) -> ThrottleSettings:
        return cls(
            max_failures_per_account=int(config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]),
            max_failures_per_address=int(config["LOGIN_MAX_FAILURES_PER_ADDRESS"]),
            lock_minutes=int(config["LOGIN_LOCK_MINUTES"]),
        )


def normalize_username(username: str | None) -> str:
    return (username or "").strip()[:USERNAME_MAX]


def normalize_ip(ip: str | None) -> str:
    return (ip or "unknown")[:IP_MAX]


def record_attempt(session: Session, username: str | None, ip: str | None, success: bool, *, now: datetime,
                   keep: timedelta = KEEP_FOR) -> None:
    """Record one attempt, pruning rows older than ``keep`` (never less than the window). The caller commits."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - keep))
    session.add(LoginAttempt(username=normalize_username(username), ip=normalize_ip(ip), at=now, success=success))
    session.flush()


def account_failures(session: Session, username: str | None, *, now: datetime, settings: ThrottleSettings) -> int:
    """Failures for this name in the window and after its last successful sign-in."""
    name = normalize_username(username)
    since = now - settings.window
    last_success = session.scalar(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.username == name, LoginAttempt.success.is_(True), LoginAttempt.at >= since
        )
    )
    stmt = select(func.count()).where(
        LoginAttempt.username == name, LoginAttempt.success.is_(False), LoginAttempt.at >= since
    )
    if last_success is not None:
        stmt = stmt.where(LoginAttempt.at > last_success)
    return session.scalar(stmt) or 0


def address_failures(session: Session, ip: str | None, *, now: datetime, settings: ThrottleSettings) -> int:
    """Failures from this address in the window (any user name)."""
    return session.scalar(
        select(func.count()).where(
            LoginAttempt.ip == normalize_ip(ip),
            LoginAttempt.success.is_(False),
            LoginAttempt.at >= now - settings.window,
        )
    ) or 0


def account_locked(session: Session, username: str | None, *, now: datetime, settings: ThrottleSettings) -> bool:
    return account_failures(session, username, now=now, settings=settings) >= settings.max_failures_per_account


def address_blocked(session: Session, ip: str | None, *, now: datetime, settings: ThrottleSettings) -> bool:
    return address_failures(session, ip, now=now, settings=settings) >= settings.max_failures_per_address


def is_throttled(session: Session, username: str | None, ip: str | None, *, now: datetime,
                 settings: ThrottleSettings) -> bool:
    """True when the password must not even be checked."""
    return account_locked(session, username, now=now, settings=settings) or address_blocked(
        session, ip, now=now, settings=settings
    )


# An administrator's unlock is recorded as a successful attempt from this pseudo-address: the
# account's earlier failures stop counting (as after a real sign-in), while they stay on record
# and keep counting against the addresses they came from. Deleting them instead would also lift
# an attacker's address block and erase the trace of the attack.
UNLOCK_MARK = "admin-unlock"


def unlock_account(session: Session, username: str | None, *, now: datetime, keep: timedelta = KEEP_FOR) -> None:
    """Lift the account lock: the failures so far no longer count. The caller commits."""
    record_attempt(session, username, UNLOCK_MARK, True, now=now, keep=keep)


def locked_accounts(session: Session, usernames: list[str], *, now: datetime, settings: ThrottleSettings) -> set[str]:
    """Which of these names are locked now (the same count as account_failures, for a page of
    names in one query)."""
    names = {normalize_username(n) for n in usernames if n}
    if not names:
        return set()
    rows = session.execute(
        select(LoginAttempt.username, LoginAttempt.at, LoginAttempt.success).where(
            LoginAttempt.username.in_(names), LoginAttempt.at >= now - settings.window
        )
    ).all()
    last_success: dict[str, datetime] = {}
    for name, at, success in rows:
        if success and (name not in last_success or at > last_success[name]):
            last_success[name] = at
    failures: dict[str, int] = {}
    for name, at, success in rows:
        if not success and (name not in last_success or at > last_success[name]):
            failures[name] = failures.get(name, 0) + 1
    return {name for name, count in failures.items() if count >= settings.max_failures_per_account}
