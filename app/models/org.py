"""The organisation: county (县市区) → institution (基层医疗卫生机构) → team (家庭医生团队)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import utcnow

INSTITUTION_TYPES = ("乡镇卫生院", "中心卫生院", "社区卫生服务中心")


class County(db.Model):
    __tablename__ = "counties"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    institutions: Mapped[list[Institution]] = relationship(
        back_populates="county", order_by="Institution.name"
    )


class Institution(db.Model):
    __tablename__ = "institutions"
    __table_args__ = (
        UniqueConstraint("county_id", "name"),
        CheckConstraint(
            "type IN ('乡镇卫生院', '中心卫生院', '社区卫生服务中心')", name="type_known"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    county_id: Mapped[int] = mapped_column(ForeignKey("counties.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    code: Mapped[str | None] = mapped_column(String(30), unique=True)
    type: Mapped[str] = mapped_column(String(20))
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
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    institution: Mapped[Institution] = relationship(back_populates="teams")
