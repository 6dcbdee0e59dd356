from __future__ import annotations

import hashlib
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.core.clock import utcnow

ROLES = {"admin": "市级管理员", "supervisor": "县级督导", "caller": "调查员"}


def username_key(username: str) -> str:
    return (username or "").strip().casefold()


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'supervisor', 'caller')", name="role_known"),
        # Supervisors and callers always belong to one county: scoping depends on it.
        CheckConstraint("role = 'admin' OR county_id IS NOT NULL", name="county_scoped"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50), unique=True)
    # the user name case-folded: unique, so "Admin" and "admin" cannot both exist
    username_key: Mapped[str] = mapped_column(String(50), unique=True)
    real_name: Mapped[str | None] = mapped_column(String(50))  # 姓名, shown wherever people read who
    phone: Mapped[str | None] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(12))
    county_id: Mapped[int | None] = mapped_column(ForeignKey("counties.id"))
    is_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # set for an account created or reset by someone else: every page asks for a new password
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())
    password_changed_at: Mapped[datetime | None]

    county = relationship("County")

    @validates("username")
    def _keep_key(self, _key: str, value: str) -> str:
        self.username_key = username_key(value)
        return value

    @property
    def display_name(self) -> str:
        """The real name where known, else the user name."""
        return self.real_name or self.username

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def session_mark(self) -> str:
        """Changes whenever the password does: a session carries it (see get_id), so a new
        password ends every session opened with the old one."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]

    def get_id(self) -> str:  # Flask-Login keeps this in the (signed) session cookie
        return f"{self.id}.{self.session_mark}"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses disabled accounts
        return self.is_enabled

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def role_label(self) -> str:
        return ROLES[self.role]


class LoginAttempt(db.Model):
    """A sign-in attempt, for throttling failures per account and per address."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50))
    ip: Mapped[str] = mapped_column(String(45))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    success: Mapped[bool] = mapped_column(default=False)


class UserSession(db.Model):
    """A signed-in session, checked on every request: signing out, "sign out everywhere", a
    disabled account or a reset password revoke it, and a cookie copied from it is refused
    from then on. Only the SHA-256 of the session's random token is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(200))
