from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.core.clock import utcnow


class AuditLog(db.Model):
    """Who did what, when: imports, exports, edits of answers, redraws."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(Text)


def audit(
    session,
    action: str,
    actor,
    *,
    user_id: int | None = None,
    target: str | None = None,
    detail: str | dict | list | None = None,
    at: datetime | None = None,
) -> AuditLog:
    """Record who did what. ``actor`` is the person (a User) or a process named by a string
    (``"scheduler"``, ``"cli:…"``), with ``user_id`` when a person set it going. A dict or
    list ``detail`` is kept as JSON. Added to the session: the boundary's commit keeps it
    with the work it describes, and a rollback drops both."""
    if hasattr(actor, "username"):
        user_id = actor.id if user_id is None else user_id
        actor = actor.username
    if isinstance(detail, (dict, list)):
        detail = json.dumps(detail, ensure_ascii=False)
    entry = AuditLog(user_id=user_id, actor=actor, action=action, target=target[:255] if target else target,
                     detail=detail)
    if at is not None:
        entry.at = at
    session.add(entry)
    return entry
