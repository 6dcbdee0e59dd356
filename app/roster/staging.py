"""The staged path of a roster import: accepted rows are bulk-loaded into temporary staging
tables as the chunks come, repeated IDs are rejected, and the staged rows are merged into the
residents with a handful of set-based SQL statements (the same on SQLite and PostgreSQL).

Also the pieces the first import into an empty table (app.roster.fresh_load) shares with it:
the resident fields of a row, the duplicate watch, keys and indexes set aside for a bulk
insert, and the ids an import numbers itself.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import (
    case,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import AddConstraint, DropConstraint
from sqlalchemy.orm import Session

from app.core.bulk import bulk_load
from app.core.clock import utcnow
from app.models import ImportBatch, Resident, Team, resident_labels
from app.models.roster import HASH_TYPE
from app.roster.batch import ImportOptions, ImportResult
from app.core.sheets import Rejection


log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Staging tables (temporary: per connection, gone with the transaction)
# ---------------------------------------------------------------------------

_stage_meta = MetaData()
STAGE = Table(
    "roster_stage",
    _stage_meta,
    Column("seq", Integer, primary_key=True),
    Column("sheet", String(100)),
    Column("row_no", Integer),
    Column("id_hash", HASH_TYPE),
    Column("id_masked", String(18)),
    Column("name", String(50)),
    Column("sex", String(1)),
    Column("birth_date", Date),
    Column("phone", String(20)),
    Column("phone2", String(20)),
    Column("address", String(200)),
    Column("team_id", Integer),
    Column("doctor_name", String(50)),
    Column("contract_start", Date),
    Column("contract_end", Date),
    Column("label_count", Integer),
    prefixes=["TEMPORARY"],
)
STAGE_LABELS = Table(
    "roster_stage_labels", _stage_meta, Column("seq", Integer), Column("label_id", Integer), prefixes=["TEMPORARY"]
)
STAGE_SEEN = Table("roster_stage_seen", _stage_meta, Column("id_hash", HASH_TYPE), prefixes=["TEMPORARY"])
# staged rows that are residents already: which one, and whether anything changed
MATCH = Table(
    "roster_match",
    _stage_meta,
    Column("seq", Integer, primary_key=True),
    Column("resident_id", Integer),
    Column("changed", Integer),
    prefixes=["TEMPORARY"],
)
# ID hashes that may occur twice in the file (found while staging, checked exactly here)
DUP_CANDIDATES = Table(
    "roster_dup_candidates", _stage_meta, Column("id_hash", HASH_TYPE, primary_key=True), prefixes=["TEMPORARY"]
)
STAGE_TABLES = (STAGE, STAGE_LABELS, STAGE_SEEN, MATCH, DUP_CANDIDATES)

# Fields a roster row sets on the resident. Optional ones are only touched when the file
# has the column, so a roster without addresses does not erase the addresses on record.
CORE_FIELDS = ("id_masked", "name", "sex", "birth_date", "phone", "team_id", "contract_start", "contract_end")
OPTIONAL_FIELDS = {"phone2": ("phone", "phone2"), "address": ("address",), "doctor_name": ("doctor",)}


# SQLite: a page cache large enough for the resident indexes while a big roster merges,
# reset when the import ends (the connection goes back to the pool). Staging tables live in
# memory (temp_store=MEMORY, set for every connection in create_app).
SQLITE_IMPORT_PRAGMAS = ("PRAGMA cache_size=-524288",)
SQLITE_DEFAULT_PRAGMAS = ("PRAGMA cache_size=-2000",)


# PostgreSQL: memory for the sorts and index builds of one big transaction (SET LOCAL: gone
# at its end). With the 4 MB default every sort of a city roster spills to disk.
POSTGRES_IMPORT_SETTINGS = ("SET LOCAL work_mem = '256MB'", "SET LOCAL maintenance_work_mem = '512MB'")


def create_stage(session: Session) -> None:
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        for pragma in SQLITE_IMPORT_PRAGMAS:
            conn.exec_driver_sql(pragma)
    elif conn.dialect.name == "postgresql":
        for setting in POSTGRES_IMPORT_SETTINGS:
            conn.exec_driver_sql(setting)
    for table in STAGE_TABLES:
        table.drop(conn, checkfirst=True)
        table.create(conn)


def drop_stage(session: Session) -> None:
    conn = session.connection()
    for table in STAGE_TABLES:
        table.drop(conn, checkfirst=True)
    if conn.dialect.name == "sqlite":
        for pragma in SQLITE_DEFAULT_PRAGMAS:
            conn.exec_driver_sql(pragma)


def _none_if_empty(value: str) -> str | None:
    return value or None


# ---------------------------------------------------------------------------
# Staging the accepted rows, and the repeated IDs among them
# ---------------------------------------------------------------------------


def resident_values(rows: pd.DataFrame) -> list[Iterable]:
    """The accepted rows' resident fields as columns, in the order of RESIDENT_FIELDS."""
    return [
        rows["id_hash"].tolist(),
        rows["id_masked"].tolist(),
        rows["name"].tolist(),
        rows["sex"].tolist(),
        rows["birth_date"].tolist(),
        rows["phone"].tolist(),
        map(_none_if_empty, rows["phone2"].tolist()),
        map(_none_if_empty, rows["address"].tolist()),
        rows["team_id"].astype(int).tolist(),
        map(_none_if_empty, rows["doctor"].tolist()),
        rows["contract_start"].tolist(),
        rows["contract_end"].tolist(),
    ]


RESIDENT_FIELDS = ["id_hash", "id_masked", "name", "sex", "birth_date", "phone", "phone2", "address", "team_id",
                   "doctor_name", "contract_start", "contract_end"]


def stage_rows(session: Session, rows: pd.DataFrame, seqs: range, sheet: str) -> None:
    data = zip(seqs, [sheet] * len(rows), rows["row_no"].astype(int).tolist(), *resident_values(rows),
               rows["label_codes"].map(len).tolist())
    bulk_load(session, "roster_stage", ["seq", "sheet", "row_no", *RESIDENT_FIELDS, "label_count"], data)


def stage_labels(session: Session, codes: pd.Series, seqs: range, label_ids: dict[str, int]) -> None:
    pairs = ((s, label_ids[code]) for s, cell in zip(seqs, codes) for code in cell)
    bulk_load(session, "roster_stage_labels", ["seq", "label_id"], pairs)


def stage_seen(session: Session, hashes: Iterable[str]) -> None:
    bulk_load(session, "roster_stage_seen", ["id_hash"], ((h,) for h in hashes if h))


class DuplicateWatch:
    """Spots ID hashes seen twice as the chunks go by, from the hashes' Python hash values
    (8 bytes each, not the 32-character strings), each with the number of the first row that
    had it: a value seen before makes its hash a candidate, to be checked exactly (against the
    earlier rows that had the value). Two different IDs sharing a value (about one chance in
    10^7 for a city roster) only add a candidate."""

    def __init__(self, key=hash) -> None:
        self._key = key
        self._first: dict[int, int] = {}  # value -> number of the first row that had it
        self._also: dict[int, list[int]] = {}  # value -> the later rows that had it too
        self.candidates: set[str] = set()

    def earlier(self, hashes: Iterable[str]) -> dict[str, list[int]]:
        """Those of these hashes whose value was added before, each with the numbers of the
        rows that had the value (the hashes themselves are not added)."""
        first, also, key_of = self._first, self._also, self._key
        found: dict[str, list[int]] = {}
        for value in hashes:
            key = key_of(value)
            number = first.get(key)
            if number is not None:
                found[value] = [number, *also.get(key, ())]
        return found

    def add(self, hashes: Iterable[str], numbers: Iterable[int]) -> None:
        """Watch these hashes too, with their rows' numbers; those whose value was added
        before (or earlier in this call) become candidates."""
        first, also, key_of, candidates = self._first, self._also, self._key, self.candidates
        for value, number in zip(hashes, numbers):
            key = key_of(value)
            if key in first:
                candidates.add(value)
                also.setdefault(key, []).append(number)
            else:
                first[key] = number


def repeated_id(sheet: str, row_no: int, masked: str, kept_sheet: str, kept_row: int) -> Rejection:
    where = f"工作表“{kept_sheet}”" if kept_sheet and kept_sheet != sheet else ""
    return Rejection(sheet, int(row_no), "身份证号", masked, f"与{where}第{kept_row}行的身份证号重复，已保留第一次出现的行")


def reject_duplicates(session: Session, rejections: list[Rejection], candidates: set[str]) -> int:
    """The same person twice in one file: keep the first row, reject the later ones."""
    if not candidates:
        return 0
    bulk_load(session, "roster_dup_candidates", ["id_hash"], ((h,) for h in sorted(candidates)))
    staged = session.execute(
        select(STAGE.c.seq, STAGE.c.sheet, STAGE.c.row_no, STAGE.c.id_masked, STAGE.c.id_hash)
        .join(DUP_CANDIDATES, DUP_CANDIDATES.c.id_hash == STAGE.c.id_hash)
        .order_by(STAGE.c.seq)
    ).all()
    first: dict[str, tuple] = {}
    seqs = []
    for seq, sheet, row_no, masked, id_hash in staged:
        kept = first.setdefault(id_hash, (sheet, row_no))
        if kept == (sheet, row_no):
            continue
        rejections.append(repeated_id(sheet, row_no, masked, *kept))
        seqs.append(seq)
    for start in range(0, len(seqs), 500):
        part = seqs[start : start + 500]
        session.execute(delete(STAGE_LABELS).where(STAGE_LABELS.c.seq.in_(part)))
        session.execute(delete(STAGE).where(STAGE.c.seq.in_(part)))
    return len(seqs)


# ---------------------------------------------------------------------------
# Merging the staged rows into the residents
# ---------------------------------------------------------------------------


def merge(
    session: Session,
    result: ImportResult,
    batch: ImportBatch,
    options: ImportOptions,
    fields: set[str],
    covered_institutions: set[int],
) -> None:
    """Apply the staged rows. One pass finds the staged rows that are residents already and
    whether each changed (a field, or its set of labels); everything after works from that."""
    residents = Resident.__table__
    now = utcnow()
    compared = list(CORE_FIELDS) + [f for f, needs in OPTIONAL_FIELDS.items() if any(n in fields for n in needs)]
    # a resident erased by the retention period (app/privacy) is filled again from the row
    fields_differ = or_(residents.c.active == false(), residents.c.erased_at.is_not(None),
                        *[residents.c[f].is_distinct_from(STAGE.c[f]) for f in compared])
    # equal label sets: the same size, and every staged label is already there
    rl = resident_labels.alias("rl")
    current_count = select(func.count()).select_from(rl).where(rl.c.resident_id == residents.c.id).scalar_subquery()
    missing_label = exists().where(
        STAGE_LABELS.c.seq == STAGE.c.seq,
        ~exists().where(rl.c.resident_id == residents.c.id, rl.c.label_id == STAGE_LABELS.c.label_id),
    )
    labels_differ = or_(current_count != STAGE.c.label_count, missing_label)
    session.execute(
        insert(MATCH).from_select(
            ["seq", "resident_id", "changed"],
            select(
                STAGE.c.seq,
                residents.c.id,
                case((or_(fields_differ, labels_differ), 1), else_=0),
            ).join(residents, residents.c.id_hash == STAGE.c.id_hash),
        )
    )
    if session.connection().dialect.name == "postgresql":
        session.connection().exec_driver_sql("ANALYZE roster_match")
    staged_total = session.scalar(select(func.count()).select_from(STAGE))
    existing, changed = session.execute(select(func.count(), func.coalesce(func.sum(MATCH.c.changed), 0))).one()
    existing, changed = int(existing), int(changed)
    result.imported = staged_total - existing
    result.updated = int(changed)
    result.unchanged = existing - result.updated

    changed_ids = select(MATCH.c.resident_id).where(MATCH.c.changed == 1)
    if result.updated:
        session.execute(
            update(residents)
            .where(residents.c.id == MATCH.c.resident_id, MATCH.c.changed == 1, STAGE.c.seq == MATCH.c.seq)
            .values({**{f: STAGE.c[f] for f in compared}, "active": true(), "updated_at": now, "erased_at": None})
        )
        # a changed resident's labels are replaced by the staged ones
        session.execute(delete(resident_labels).where(resident_labels.c.resident_id.in_(changed_ids)))
        session.execute(
            insert(resident_labels).from_select(
                ["resident_id", "label_id"],
                select(MATCH.c.resident_id, STAGE_LABELS.c.label_id)
                .join(STAGE_LABELS, STAGE_LABELS.c.seq == MATCH.c.seq)
                .where(MATCH.c.changed == 1),
            )
        )
    if existing:
        session.execute(
            update(residents)
            .where(residents.c.id.in_(select(MATCH.c.resident_id)))
            .values(last_seen_batch_id=batch.id)
        )

    if result.imported:
        _insert_new_residents(session, batch, now, result.imported)

    if options.full and covered_institutions:
        seen = or_(
            exists().where(STAGE.c.id_hash == residents.c.id_hash),
            exists().where(STAGE_SEEN.c.id_hash == residents.c.id_hash),
        )
        teams = select(Team.id).where(Team.institution_id.in_(sorted(covered_institutions)))
        deactivated = session.execute(
            update(residents)
            .where(residents.c.active == true(), residents.c.team_id.in_(teams), ~seen)
            .values(active=false(), updated_at=now)
        )
        result.deactivated = deactivated.rowcount
    session.flush()


# ---------------------------------------------------------------------------
# Bulk inserts: keys and indexes set aside, ids numbered by the import
# ---------------------------------------------------------------------------

# PostgreSQL checks a foreign key with one trigger call per inserted row: for a city roster
# (1.5M residents, 1.9M label pairs, three keys) that is more than half the import. When an
# import brings many new residents, the three keys are dropped inside the import's
# transaction and added back before it commits: adding a key checks the whole table in one
# set-based pass, and a row that broke it would abort the import like any other error. The
# cost: until the import commits, the residents and label tables are locked against readers
# too (roster and organisation pages, a draw, wait; the calling pages never read them). Below
# the threshold, or when the table is already large compared with what comes in (checking the
# whole table would then cost more than the triggers), the keys stay.
BULK_KEYS_MIN_NEW = 100_000
BULK_KEYS_MIN_SHARE = 0.25  # new rows as a share of the residents already there


def bulk_keys() -> list:
    return [fk.constraint for fk in Resident.__table__.c.team_id.foreign_keys] + sorted(
        resident_labels.foreign_key_constraints, key=lambda c: c.name)


# How long a big import waits for the lock that dropping a key or an index takes (ACCESS
# EXCLUSIVE on PostgreSQL: it waits for every open transaction that read the table). When a
# reader holds on longer, the import keeps its keys and indexes and checks row by row instead.
BULK_LOCK_WAIT = "3s"


@dataclass
class SetAside:
    """Foreign keys and indexes dropped for a bulk load, to be put back before commit."""

    keys: list = field(default_factory=list)
    indexes: list = field(default_factory=list)

    @classmethod
    def take(cls, session: Session, keys: list, indexes: list) -> SetAside:
        conn = session.connection()
        if conn.dialect.name != "postgresql":
            for index in indexes:
                index.drop(conn)
            return cls([], list(indexes))
        try:
            # a savepoint: a lock not granted in time undoes only this (and the SET LOCAL)
            with conn.begin_nested():
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{BULK_LOCK_WAIT}'")
                for key in keys:
                    conn.execute(DropConstraint(key))
                for index in indexes:
                    index.drop(conn)
                conn.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            log.warning("roster import: tables in use, foreign keys and indexes kept for this import")
            return cls()
        return cls(list(keys), list(indexes))

    def put_back(self, session: Session) -> None:
        conn = session.connection()
        for index in self.indexes:
            index.create(conn)
        for key in self.keys:
            conn.execute(AddConstraint(key))


def _insert_new_residents(session: Session, batch: ImportBatch, now: datetime, new_rows: int) -> None:
    """New residents get the id ``base + seq`` (base: the largest id so far; seq: the staged
    row's number), so the labels go in by that same sum without looking a resident up again
    (ids of rows that were duplicates or residents already are simply skipped). The rows go
    in by id, the file's order (measured on a city roster: faster than ID-hash order on both
    databases, most of all on SQLite, where the table itself is the B-tree keyed by id). The
    residents table is locked against other writers meanwhile (PostgreSQL; SQLite has one
    writer anyway), and the id sequence is moved past the new ids afterwards."""
    residents = Resident.__table__
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    aside = SetAside()
    base = new_id_base(session)
    if postgres:
        present = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'residents'").scalar() or 0
        if new_rows >= BULK_KEYS_MIN_NEW and new_rows >= max(present, 0) * BULK_KEYS_MIN_SHARE:
            aside = SetAside.take(session, bulk_keys(), [])
    insert_cols = [*CORE_FIELDS, "phone2", "address", "doctor_name", "id_hash"]
    session.execute(
        insert(residents).from_select(
            ["id", *insert_cols, "active", "do_not_call", "first_seen_batch_id", "last_seen_batch_id", "created_at", "updated_at"],
            select(
                STAGE.c.seq + base,
                *[STAGE.c[c] for c in insert_cols],
                true(),
                false(),
                literal(batch.id),
                literal(batch.id),
                literal(now),
                literal(now),
            )
            .where(~exists().where(MATCH.c.seq == STAGE.c.seq))
            .order_by(STAGE.c.seq),
        )
    )
    session.execute(
        insert(resident_labels).from_select(
            ["resident_id", "label_id"],
            select(STAGE_LABELS.c.seq + base, STAGE_LABELS.c.label_id)
            .where(~exists().where(MATCH.c.seq == STAGE_LABELS.c.seq))
            .order_by(STAGE_LABELS.c.seq),
        )
    )
    aside.put_back(session)
    advance_id_sequence(session)


def new_id_base(session: Session) -> int:
    """The largest resident id, with the residents table locked against other writers until
    commit (PostgreSQL; SQLite has one writer anyway): new ids are numbered after it."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE residents IN SHARE ROW EXCLUSIVE MODE")
    return int(session.scalar(select(func.coalesce(func.max(Resident.__table__.c.id), 0))))


def advance_id_sequence(session: Session) -> None:
    """Move PostgreSQL's id sequence past the ids an import numbered itself."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('residents', 'id'), (SELECT max(id) FROM residents))"
        )

