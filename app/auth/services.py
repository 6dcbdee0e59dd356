from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ROLES, County, User

MIN_PASSWORD_LENGTH = 8


class UserError(ValueError):
    pass


def create_user(session: Session, username: str, role: str, password: str, county_name: str | None = None) -> User:
    username = (username or "").strip()
    if not username or len(username) > 50:
        raise UserError("用户名不能为空，且不超过50个字符。")
    if role not in ROLES:
        raise UserError(f"角色必须是 {'/'.join(ROLES)} 之一。")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(f"密码至少{MIN_PASSWORD_LENGTH}位。")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UserError(f"用户名“{username}”已存在。")
    county = None
    if county_name:
        county = session.scalar(select(County).where(County.name == county_name))
        if county is None:
            raise UserError(f"县区“{county_name}”不存在。")
    if role != "admin" and county is None:
        raise UserError("县级督导和调查员必须指定所属县区（--county）。")
    user = User(username=username, role=role, county_id=county.id if county else None)
    user.set_password(password)
    session.add(user)
    session.flush()
    return user
