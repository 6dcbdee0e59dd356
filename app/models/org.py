"""The organisation: county (县市区) → institution (基层医疗卫生机构) → team (家庭医生团队)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.core.clock import utcnow

INSTITUTION_TYPES = ("乡镇卫生院", "中心卫生院", "社区卫生服务中心", "社区卫生服务站", "其他基层医疗卫生机构")
UNIT_KINDS = {"county": "县市区", "institution": "机构", "team": "团队"}


class County(db.Model):
    __tablename__ = "counties"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    institutions: Mapped[list[Institution]] = relationship(
        back_populates="county", order_by="Institution.name"
    )


class Institution(db.Model):
    __tablename__ = "institutions"
    __table_args__ = (
        UniqueConstraint("county_id", "name"),
        CheckConstraint(
            "type IN (" + ", ".join(f"'{t}'" for t in INSTITUTION_TYPES) + ")", name="type_known"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    county_id: Mapped[int] = mapped_column(ForeignKey("counties.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    code: Mapped[str | None] = mapped_column(String(30), unique=True)
    type: Mapped[str] = mapped_column(String(20))
    # an inactive institution keeps its residents and results; its residents are not drawn
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    county: Mapped[County] = relationship(back_populates="institutions")
    teams: Mapped[list[Team]] = relationship(back_populates="institution", order_by="Team.name")


class Team(db.Model):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("institution_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    leader_doctor: Mapped[str | None] = mapped_column(String(50))
    doctor_phone: Mapped[str | None] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    # set when the team was merged into another (then inactive): its residents moved there
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    institution: Mapped[Institution] = relationship(back_populates="teams")


class OrgChange(db.Model):
    """One change of a county, institution or team (created, edited, renamed, moved, merged,
    deactivated, reactivated), with the values before and after, the reason and who made it:
    the unit's own history, shown on its page (former names included)."""

    __tablename__ = "org_changes"
    __table_args__ = (Index("ix_org_changes_unit", "unit_kind", "unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    unit_kind: Mapped[str] = mapped_column(String(12))
    unit_id: Mapped[int]
    action: Mapped[str] = mapped_column(String(12))
    before: Mapped[str | None] = mapped_column(Text)  # JSON
    after: Mapped[str | None] = mapped_column(Text)  # JSON
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(80))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
