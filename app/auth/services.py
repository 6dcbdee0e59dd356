"""Users: creation, changes, passwords (an admin's reset, the user's own change) and unlocking.

Plain functions over a session that flush and never commit; the view or command commits.
Every change made by someone is audit-logged under the actor's user name (the stable
identifier), never with a password in it.
"""
from __future__ import annotations

import json
import unicodedata
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.sessions import revoke_all
from app.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, generate_password, password_problem
from app.auth.throttle import ThrottleSettings, account_locked, normalize_username, unlock_account
from app.models import audit, ROLES, County, User, username_key
from app.core.clock import utcnow
from app.core.cells import clean_phone
from app.core.masking import mask_phone

__all__ = [
    "MAX_PASSWORD_LENGTH", "MAX_REAL_NAME_LENGTH", "MAX_USERNAME_LENGTH", "MIN_PASSWORD_LENGTH", "Actor",
    "UserError", "WrongPasswordError", "change_own_password", "check_password", "clean_real_name", "clean_user_phone", "clean_username",
    "create_user", "login_key", "reset_password", "taken_message", "unlock_user", "update_user",
]

MAX_USERNAME_LENGTH = 50
MAX_REAL_NAME_LENGTH = 20

# who acts: a signed-in user, or a name such as "cli:root" for the command line
Actor = User | str


class UserError(ValueError):
    pass


class WrongPasswordError(UserError):
    """The current password given to prove who one is was wrong (counted like a failed sign-in)."""


# ---------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def login_key(typed: str | None) -> str:
    """The key a typed user name is looked up (and throttled) by: full-width letters folded as
    when the name was stored, then case-folded like ``User.username_key``."""
    return username_key(unicodedata.normalize("NFKC", typed or ""))


def taken_message(username: str) -> str:
    return f"用户名“{username}”已存在（不区分大小写）。"


def clean_username(value: str | None) -> str:
    """The user name as stored: full-width characters folded (ＷＡＮＧ → WANG, so that it cannot
    pass for another name), no spaces or control characters, at most 50 characters."""
    name = unicodedata.normalize("NFKC", value or "").strip()
    if not name:
        raise UserError("请填写用户名。")
    if any(ch.isspace() for ch in name):
        raise UserError("用户名不能包含空格或换行。")
    if _has_control(name):
        raise UserError("用户名不能包含控制字符。")
    if len(name) > MAX_USERNAME_LENGTH or len(username_key(name)) > MAX_USERNAME_LENGTH:
        raise UserError(f"用户名不超过{MAX_USERNAME_LENGTH}个字符。")
    return name


def clean_real_name(value: str | None, *, required: bool = True) -> str | None:
    """姓名: 1–20 characters, no control characters; spaces inside are kept (少数民族 names with ·)."""
    name = unicodedata.normalize("NFKC", value or "").strip()
    if not name:
        if required:
            raise UserError("请填写姓名。")
        return None
    if _has_control(name):
        raise UserError("姓名不能包含控制字符或换行。")
    if len(name) > MAX_REAL_NAME_LENGTH:
        raise UserError(f"姓名不超过{MAX_REAL_NAME_LENGTH}个字。")
    return name


def clean_user_phone(value: str | None) -> str | None:
    """Optional: an 11-digit mobile or a landline with its area code, stored as digits."""
    phone, reason = clean_phone(value or "")
    if reason:
        raise UserError(f"手机号码“{(value or '').strip()}”无效：{reason}。")
    return phone or None


def check_password(password: str | None, username: str | None) -> None:
    problem = password_problem(password, username)
    if problem:
        raise UserError(problem)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"角色必须是 {'/'.join(ROLES)} 之一。")


def _county_by_id(session: Session, county_id: int | None) -> County | None:
    if county_id is None:
        return None
    county = session.get(County, county_id)
    if county is None:
        raise UserError("所选县区不存在。")
    return county


def _name_taken(session: Session, name: str, *, except_id: int | None = None) -> bool:
    stmt = select(User.id).where(User.username_key == username_key(name))
    if except_id is not None:
        stmt = stmt.where(User.id != except_id)
    return session.scalar(stmt) is not None


def _audit(session: Session, actor: Actor, action: str, user: User, detail: dict) -> None:
    audit(session, action, actor, target=f"user:{user.id} {user.username}", county_id=user.county_id,
          detail=json.dumps(detail, ensure_ascii=False, sort_keys=True))


# ---------------------------------------------------------------------------
# Create, change
# ---------------------------------------------------------------------------


def create_user(
    session: Session,
    username: str,
    role: str,
    password: str,
    county_name: str | None = None,
    *,
    county_id: int | None = None,
    real_name: str | None = None,
    phone: str | None = None,
    actor: Actor | None = None,
    must_change_password: bool = True,
    password_hash: str | None = None,
) -> User:
    """Create a user; the county by name (CLI, import) or by id (web). With an ``actor``, audit it.

    An admin belongs to no county: a county given for an admin is ignored. The account has to
    choose its own password at first sign-in unless ``must_change_password`` is False (demo
    accounts, scripted installs). ``password_hash``: the hash of ``password`` made beforehand
    (a bulk import hashes its passwords in parallel); the password still has to pass the rules.
    """
    username = clean_username(username)
    real_name = clean_real_name(real_name)
    phone = clean_user_phone(phone)
    _check_role(role)
    check_password(password, username)
    if _name_taken(session, username):
        raise UserError(taken_message(username))
    county = None
    if county_name:
        county = session.scalar(select(County).where(County.name == county_name.strip()))
        if county is None:
            raise UserError(f"县区“{county_name}”不存在。")
    elif county_id is not None:
        county = _county_by_id(session, county_id)
    if role == "admin":
        county = None
    elif county is None:
        hint = "（--county）" if not isinstance(actor, User) else ""
        raise UserError(f"县级督导和调查员必须指定所属县区{hint}。")
    user = User(username=username, real_name=real_name, phone=phone, role=role,
                county_id=county.id if county else None, is_enabled=True,
                must_change_password=bool(must_change_password))
    if password_hash is not None:
        user.password_hash = password_hash
    else:
        user.set_password(password)
    try:
        with session.begin_nested():  # the same name created at the same moment elsewhere
            session.add(user)
    except IntegrityError:
        raise UserError(taken_message(username)) from None
    if actor is not None:
        _audit(session, actor, "user_create", user, {
            "role": role, "county": county.name if county else None, "enabled": True, "real_name": real_name,
            "phone": mask_phone(phone) or None, "must_change_password": bool(must_change_password),
        })
    return user


_KEEP = object()


def update_user(
    session: Session,
    user: User,
    *,
    role: str,
    county_id: int | None,
    enabled: bool,
    real_name: str | None | object = _KEEP,
    phone: str | None | object = _KEEP,
    actor: Actor,
) -> dict:
    """Change a user's role, county, state, name and phone (left alone when not given), and
    audit what changed. Passwords change through ``reset_password`` and ``change_own_password``.

    Returns the changes ({field: [old, new]}); nothing is written, audit row included, when
    nothing changed. A real name can be added to an older account but not removed.
    """
    _check_role(role)
    if role == "admin":
        county = None
    else:
        county = _county_by_id(session, county_id)
        if county is None:
            raise UserError("县级督导和调查员必须指定所属县区。")
    new_name = user.real_name if real_name is _KEEP else clean_real_name(real_name, required=bool(user.real_name))
    new_phone = user.phone if phone is _KEEP else clean_user_phone(phone)
    if isinstance(actor, User) and user.id == actor.id:
        if not enabled:
            raise UserError("不能停用自己的账号。")
        if user.role == "admin" and role != "admin":
            raise UserError("不能取消自己的市级管理员角色。")

    changes: dict = {}
    if user.role != role:
        changes["role"] = [user.role, role]
    new_county_id = county.id if county else None
    if user.county_id != new_county_id:
        changes["county"] = [user.county.name if user.county else None, county.name if county else None]
    if bool(user.is_enabled) != bool(enabled):
        changes["enabled"] = [bool(user.is_enabled), bool(enabled)]
    if (user.real_name or None) != new_name:
        changes["real_name"] = [user.real_name, new_name]
    if (user.phone or None) != new_phone:
        changes["phone"] = [mask_phone(user.phone) or None, mask_phone(new_phone) or None]
    if not changes:
        return changes

    user.role = role
    user.county_id = new_county_id
    user.county = county
    user.is_enabled = bool(enabled)
    user.real_name = new_name
    user.phone = new_phone
    session.flush()
    if not user.is_enabled and "enabled" in changes:
        revoke_all(session, user, now=utcnow())  # the account's open sessions end
    _audit(session, actor, "user_update", user, changes)
    return changes


# ---------------------------------------------------------------------------
# Passwords, lock
# ---------------------------------------------------------------------------


def reset_password(session: Session, user: User, *, actor: Actor, password: str | None = None,
                   now: datetime | None = None, settings: ThrottleSettings | None = None) -> str:
    """An administrator sets a temporary password (typed, or generated when ``password`` is
    None) and returns it: the user must choose their own at the next sign-in, and every open
    session of the account ends (the session mark follows the password). A locked account is
    unlocked as well, since the user was locked out for not knowing the old one."""
    if isinstance(actor, User) and actor.id == user.id:
        raise UserError("不能重置自己的密码：请在“修改密码”页面修改。")
    generated = password is None
    if generated:
        password = generate_password(user.username)
    check_password(password, user.username)
    now = now or utcnow()
    key = normalize_username(login_key(user.username))
    unlocked = settings is not None and account_locked(session, key, now=now, settings=settings)
    user.set_password(password)
    user.must_change_password = True
    if unlocked:
        unlock_account(session, key, now=now)
    session.flush()
    revoke_all(session, user, now=now)
    _audit(session, actor, "user_password_reset", user, {"generated": generated, "unlocked": unlocked})
    return password


def change_own_password(session: Session, user: User, *, current: str, new: str, now: datetime | None = None,
                        keep_token: str | None = None) -> None:
    """The user's own change: the current password proves it is them; the new one follows the
    rules and differs from it. Clears the forced change. Every other session of the account
    ends; the one of ``keep_token`` (the view's) goes on."""
    if not user.check_password(current or ""):
        raise WrongPasswordError("当前密码不正确。")
    if new == current:
        raise UserError("新密码不能与当前密码相同。")
    check_password(new, user.username)
    forced = bool(user.must_change_password)
    user.set_password(new)
    user.must_change_password = False
    user.password_changed_at = now or utcnow()
    session.flush()
    revoke_all(session, user, now=now or utcnow(), keep_token=keep_token)
    _audit(session, user, "password_change", user, {"forced": forced})


def unlock_user(session: Session, user: User, *, actor: Actor, now: datetime, settings: ThrottleSettings) -> bool:
    """Lift the lock that failed sign-ins put on the account; False (and nothing written) when
    it was not locked."""
    key = normalize_username(login_key(user.username))
    if not account_locked(session, key, now=now, settings=settings):
        return False
    unlock_account(session, key, now=now)
    _audit(session, actor, "user_unlock", user, {})
    return True
