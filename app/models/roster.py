"""Contracted residents (签约居民), their key-population labels, and import batches."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.core.clock import utcnow


# Keyed hashes (the first 128 bits of HMAC-SHA256, as 32 hex characters: see hash_id) are
# compared byte for byte: PostgreSQL's "C" collation makes every index insert, sort and join
# on them a memcmp instead of a locale comparison (SQLite compares bytes already).
HASH_LENGTH = 32
HASH_TYPE = String(HASH_LENGTH).with_variant(String(HASH_LENGTH, collation="C"), "postgresql")


class PopulationLabel(db.Model):
    """One key population (重点人群); the vocabulary itself lives in populations.json."""

    __tablename__ = "population_labels"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


resident_labels = Table(
    "resident_labels",
    db.metadata,
    Column("resident_id", Integer, ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True),
    Column("label_id", Integer, ForeignKey("population_labels.id"), primary_key=True),
    Index("ix_resident_labels_label_id", "label_id"),
    # SQLite: the primary key is the table (no separate rowid tree): one B-tree less to
    # write for each of the millions of pairs a city roster brings
    sqlite_with_rowid=False,
)


class Resident(db.Model):
    """A contracted resident. The clear ID number is never stored: only a keyed hash
    (to recognise the same person across imports) and a masked form for display."""

    __tablename__ = "residents"
    __table_args__ = (
        Index("ix_residents_team_id_active", "team_id", "active"),
        # a unique index rather than a table constraint: a city's first roster drops it and
        # builds it once at the end (a sort), which SQLite cannot do with a constraint's index
        Index("uq_residents_id_hash", "id_hash", unique=True),
        # PostgreSQL: room in every page for a new version of each row in it, so that the
        # next import's last_seen stamp on every resident of a roster is a HOT update (the
        # row's new version on its own page, no index touched). At 85 only a fifth of them
        # fitted: the stamp took 23-29 s for a city, at 45 about 7 s. The table is about twice
        # as big when first loaded, and stays that size (at 85 it grows to it by the second
        # import, with the rows that did not fit moved away from their team's pages).
        {"postgresql_with": {"fillfactor": 45}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    id_hash: Mapped[str] = mapped_column(HASH_TYPE)
    id_masked: Mapped[str] = mapped_column(String(18))
    name: Mapped[str] = mapped_column(String(50))
    sex: Mapped[str] = mapped_column(String(1))  # "M" / "F", from the ID number
    birth_date: Mapped[date]
    phone: Mapped[str] = mapped_column(String(20))
    phone2: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(200))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    doctor_name: Mapped[str | None] = mapped_column(String(50))
    contract_start: Mapped[date]
    contract_end: Mapped[date]
    active: Mapped[bool] = mapped_column(default=True)
    do_not_call: Mapped[bool] = mapped_column(default=False)
    # Import batches that first and last contained this resident. Plain integers, not foreign
    # keys: batches are never deleted, and on PostgreSQL a foreign key here costs a trigger
    # call per resident on every import (the last_seen stamp touches every row of a roster).
    first_seen_batch_id: Mapped[int | None]
    last_seen_batch_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # set when the retention period erased this inactive resident's personal data (app/privacy);
    # the id hash stays, so a later import recognises the person and fills the row again
    erased_at: Mapped[datetime | None]

    team = relationship("Team")
    labels: Mapped[list[PopulationLabel]] = relationship(
        secondary=resident_labels, order_by=PopulationLabel.id
    )


class ImportBatch(db.Model):
    """One roster import, applied, previewed (dry run), failed, or a preview cancelled."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    county_id: Mapped[int | None] = mapped_column(ForeignKey("counties.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_by: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(10))  # applied / preview / failed / cancelled
    create_missing: Mapped[bool] = mapped_column(default=False)
    full: Mapped[bool] = mapped_column(default=False)
    rows_read: Mapped[int] = mapped_column(default=0)
    imported: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    deactivated: Mapped[int] = mapped_column(default=0)
    institutions_created: Mapped[int] = mapped_column(default=0)
    teams_created: Mapped[int] = mapped_column(default=0)
    error_report: Mapped[str | None] = mapped_column(String(255))  # file stem in IMPORT_REPORTS_DIR
    source_file: Mapped[str | None] = mapped_column(String(255))  # uploaded copy in UPLOAD_DIR
    # an applied import confirmed from a preview points at it; unique, so a double click
    # on "确认导入" can never apply the same preview twice
    preview_of_id: Mapped[int | None] = mapped_column(ForeignKey("import_batches.id"), unique=True)
    message: Mapped[str | None] = mapped_column(Text)

    county = relationship("County")
