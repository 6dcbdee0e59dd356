"""Sign-in throttling: too many failures lock an account name for a while, and slow an address down.

Pure functions over a session; the caller passes ``now`` (naive UTC) so tests pin the clock.
Every attempt is recorded, including those refused because of the lock: they count as failures,
so whoever keeps trying stays locked out, while the lock of someone who waits lifts once the
failures have left the window. Unknown user names are counted like real ones, so the lock does
not disclose which accounts exist.

An account name is locked hard (``max_failures_per_account`` in the window) until the failures
leave the window or an administrator unlocks it. An address is never locked: past
``max_failures_per_address`` failures, each further attempt must wait a delay after the
address's last failure, doubling with every failure up to ``address_max_delay_seconds``, so an
office behind one NAT address is slowed, not shut out, by a guesser among them.

``admit`` makes the count atomic: under a lock per user name and per address it counts and
records the attempt as a failure *before* the password is checked; ``settle`` turns it into a
success afterwards. Of many parallel attempts, only as many as the limit get their password
checked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from app.core.locks import SIGN_IN_ADDRESS, SIGN_IN_NAME, begin_write
from app.models import LoginAttempt

USERNAME_MAX = 50
IP_MAX = 45
KEEP_FOR = timedelta(days=1)  # rows older than this are pruned when a new attempt is recorded


@dataclass(frozen=True)
class ThrottleSettings:
    max_failures_per_account: int = 5
    max_failures_per_address: int = 20
    lock_minutes: int = 15
    address_max_delay_seconds: int = 60

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.lock_minutes)

    @classmethod
    def from_config(cls, config) -> ThrottleSettings:
        return cls(
            max_failures_per_account=int(config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]),
            max_failures_per_address=int(config["LOGIN_MAX_FAILURES_PER_ADDRESS"]),
            lock_minutes=int(config["LOGIN_LOCK_MINUTES"]),
            address_max_delay_seconds=int(config["LOGIN_ADDRESS_MAX_DELAY_SECONDS"]),
        )


def normalize_username(username: str | None) -> str:
    return (username or "").strip()[:USERNAME_MAX]


def normalize_ip(ip: str | None) -> str:
    return (ip or "unknown")[:IP_MAX]


def record_attempt(session: Session, username: str | None, ip: str | None, success: bool, *, now: datetime,
                   keep: timedelta = KEEP_FOR) -> LoginAttempt:
    """Record one attempt, pruning rows older than ``keep`` (never less than the window). The caller commits."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - keep))
    attempt = LoginAttempt(username=normalize_username(username), ip=normalize_ip(ip), at=now, success=success)
    session.add(attempt)
    session.flush()
    return attempt


def account_failures(session: Session, username: str | None, *, now: datetime, settings: ThrottleSettings) -> int:
    """Failures for this name in the window and after its last successful sign-in. "After" is
    in the order the attempts were admitted (their ids, handed out under the name's lock), not
    their clock times: a time is taken before the attempt waits for the lock, so a failure
    admitted after a success may carry an earlier time and would otherwise not count."""
    name = normalize_username(username)
    since = now - settings.window
    last_success = session.scalar(
        select(func.max(LoginAttempt.id)).where(
            LoginAttempt.username == name, LoginAttempt.success.is_(True), LoginAttempt.at >= since
        )
    )
    stmt = select(func.count()).where(
        LoginAttempt.username == name, LoginAttempt.success.is_(False), LoginAttempt.at >= since
    )
    if last_success is not None:
        stmt = stmt.where(LoginAttempt.id > last_success)
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


def address_wait(session: Session, ip: str | None, *, now: datetime, settings: ThrottleSettings) -> int:
    """Seconds this address must still wait before its next attempt is checked: 0 below the
    limit; then 1, 2, 4 … seconds (at most ``address_max_delay_seconds``) after its last failure,
    doubling with each failure beyond the limit."""
    failures = address_failures(session, ip, now=now, settings=settings)
    over = failures - settings.max_failures_per_address
    if over < 0:
        return 0
    delay = min(2 ** min(over, 30), settings.address_max_delay_seconds)
    last = session.scalar(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.ip == normalize_ip(ip), LoginAttempt.success.is_(False),
            LoginAttempt.at >= now - settings.window,
        )
    )
    remaining = (last + timedelta(seconds=delay) - now).total_seconds() if last else 0
    return max(0, math.ceil(remaining))


def address_blocked(session: Session, ip: str | None, *, now: datetime, settings: ThrottleSettings) -> bool:
    return address_wait(session, ip, now=now, settings=settings) > 0


def is_throttled(session: Session, username: str | None, ip: str | None, *, now: datetime,
                 settings: ThrottleSettings) -> bool:
    """True when the password must not even be checked."""
    return account_locked(session, username, now=now, settings=settings) or address_blocked(
        session, ip, now=now, settings=settings
    )


# advisory lock purposes, numbered with the others in app/core/locks.py
_NAME_LOCK = SIGN_IN_NAME
_ADDRESS_LOCK = SIGN_IN_ADDRESS


@dataclass(frozen=True)
class Admission:
    """``admit``'s answer: the attempt recorded (as a failure until settled), and why it was
    refused: "account" (locked) or "address" (wait ``wait_seconds``), None when admitted."""

    attempt_id: int
    refused: str | None = None
    wait_seconds: int = 0

    @property
    def allowed(self) -> bool:
        return self.refused is None


def admit(session: Session, username: str | None, ip: str | None, *, now: datetime, settings: ThrottleSettings,
          keep: timedelta = KEEP_FOR) -> Admission:
    """Decide whether this attempt's password may be checked, and record it as a failure, in
    one transaction holding the locks of its user name and address (PostgreSQL: advisory
    transaction locks, always the name's first; SQLite: the database's write lock). A parallel
    attempt for the same name or address waits, then counts this one. Must begin the
    caller's transaction; the caller commits before checking the password, then ``settle``s."""
    begin_write(session)
    if session.get_bind().dialect.name == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(:purpose, hashtext(:key))")
        session.execute(lock, {"purpose": _NAME_LOCK, "key": normalize_username(username)})
        session.execute(lock, {"purpose": _ADDRESS_LOCK, "key": normalize_ip(ip)})
    refused, wait = None, 0
    if account_locked(session, username, now=now, settings=settings):
        refused = "account"
    else:
        wait = address_wait(session, ip, now=now, settings=settings)
        if wait:
            refused = "address"
    attempt = record_attempt(session, username, ip, False, now=now, keep=keep)
    return Admission(attempt.id, refused, wait)


def settle(session: Session, attempt_id: int, success: bool) -> None:
    """The password was right: the attempt ``admit`` recorded as a failure becomes a success."""
    if success:
        session.execute(update(LoginAttempt).where(LoginAttempt.id == attempt_id).values(success=True))


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
