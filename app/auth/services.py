from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ROLES, AuditLog, County, User

MIN_PASSWORD_LENGTH = 8
MAX_USERNAME_LENGTH = 50


class UserError(ValueError):
    pass


def _check_password(password: str | None) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(f"密码至少{MIN_PASSWORD_LENGTH}位。")


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


def _audit(session: Session, actor: User, action: str, user: User, detail: dict) -> None:
    session.add(
        AuditLog(
            user_id=actor.id,
            actor=actor.username,
            action=action,
            target=f"user:{user.id} {user.username}",
            detail=json.dumps(detail, ensure_ascii=False, sort_keys=True),
        )
    )


def create_user(
    session: Session,
    username: str,
    role: str,
    password: str,
    county_name: str | None = None,
    *,
    county_id: int | None = None,
    actor: User | None = None,
) -> User:
    """Create a user; the county by name (CLI) or by id (web). With an ``actor``, audit it.

    An admin belongs to no county: a county given for an admin is ignored.
    """
    username = (username or "").strip()
    if not username or len(username) > MAX_USERNAME_LENGTH:
        raise UserError(f"用户名不能为空，且不超过{MAX_USERNAME_LENGTH}个字符。")
    _check_role(role)
    _check_password(password)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UserError(f"用户名“{username}”已存在。")
    county = None
    if county_name:
        county = session.scalar(select(County).where(County.name == county_name))
        if county is None:
            raise UserError(f"县区“{county_name}”不存在。")
    elif county_id is not None:
        county = _county_by_id(session, county_id)
    if role == "admin":
        county = None
    elif county is None:
        hint = "（--county）" if actor is None else ""
        raise UserError(f"县级督导和调查员必须指定所属县区{hint}。")
    user = User(username=username, role=role, county_id=county.id if county else None, is_enabled=True)
    user.set_password(password)
    session.add(user)
    session.flush()
    if actor is not None:
        _audit(session, actor, "user_create", user,
               {"role": role, "county": county.name if county else None, "enabled": True})
    return user


def update_user(
    session: Session,
    user: User,
    *,
    role: str,
    county_id: int | None,
    enabled: bool,
    password: str | None = None,
    actor: User,
) -> dict:
    """Change a user's role, county, state and (optionally) password, and audit what changed.

    Returns the changes ({field: [old, new]}, and "password": "changed" — never the password);
    nothing is written, audit row included, when nothing changed.
    """
    _check_role(role)
    if role == "admin":
        county = None
    else:
        county = _county_by_id(session, county_id)
        if county is None:
            raise UserError("县级督导和调查员必须指定所属县区。")
    if password:
        _check_password(password)
    if user.id == actor.id:
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
    if password:
        changes["password"] = "changed"
    if not changes:
        return changes

    user.role = role
    user.county_id = new_county_id
    user.county = county
    user.is_enabled = bool(enabled)
    if password:
        user.set_password(password)
    session.flush()
    _audit(session, actor, "user_update", user, changes)
    return changes
