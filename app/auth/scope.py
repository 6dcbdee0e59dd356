"""County scoping: a supervisor or caller sees only their own county, an admin all.

Every query of county data goes through these helpers, and a unit outside the user's
scope answers 404 (not 403), so its existence is not disclosed either.
"""
from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import current_user
from sqlalchemy import Select

from app.models import County, User


def county_filter(user: User, stmt: Select, county_column) -> Select:
    if user.is_admin:
        return stmt
    return stmt.where(county_column == user.county_id)


def can_see_county(user: User, county_id: int | None) -> bool:
    return user.is_admin or (county_id is not None and user.county_id == county_id)


def require_county(user: User, county: County | None) -> County:
    if county is None or not can_see_county(user, county.id):
        abort(404)
    return county


def roles_required(*roles: str):
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                from app.extensions import login_manager

                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator
