"""Roster import: read, validate, stage, then upsert by the keyed ID hash in one transaction.

``execute_import`` is the unit of work for the CLI and the upload page alike. It owns its
transaction because an import's outcome decides it: applied → commit; dry run → roll back
and keep only the batch record; any failure → roll back everything and record the failure.
A crash or kill mid-import leaves the database as it was (nothing is committed before the end).

The upsert is set-based: accepted rows are bulk-loaded into temporary staging tables and
merged with a handful of SQL statements (the same on SQLite and PostgreSQL), so 1.5 million
rows never travel through the ORM one by one.
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import (
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    except_,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.bulk import bulk_load
from app.models import AuditLog, County, ImportBatch, Institution, Resident, Team, resident_labels, utcnow
from app.populations import sync_labels
from app.roster.normalize import Vocabulary, infer_institution_type
from app.roster.reader import RosterFileError, open_roster
from app.roster.validate import Rejection, validate_frame
from app.spreadsheets import write_csv, write_xlsx

log = logging.getLogger(__name__)


@dataclass
class ImportOptions:
    county: str | None = None
    create_missing: bool = False
    full: bool = False
    dry_run: bool = False


@dataclass
class ImportContext:
    """Everything an import needs from the application, passed explicitly."""

    hash_key: bytes
    vocabulary: Vocabulary
    reports_dir: Path
    actor: str
    user_id: int | None = None
    today: date | None = None
    chunk_rows: int = 100_000


@dataclass
class ImportResult:
    batch_id: int
    status: str
    read: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deactivated: int = 0
    institutions_created: int = 0
    teams_created: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    error_report: Path | None = None
    message: str | None = None

    def summary_line(self) -> str:
        return (
            f"read={self.read} imported={self.imported} updated={self.updated} "
            f"unchanged={self.unchanged} rejected={self.rejected}"
        )


class ImportFailed(Exception):
    """The import did not run to the end; nothing was changed. Message in Chinese."""

    def __init__(self, message: str, batch_id: int | None = None):
        super().__init__(message)
        self.batch_id = batch_id


# ---------------------------------------------------------------------------
# The unit of work
# ---------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def execute_import(
    session: Session,
    path: str | Path,
    options: ImportOptions,
    ctx: ImportContext,
    filename: str | None = None,
    source_file: str | None = None,
    preview_of_id: int | None = None,
) -> ImportResult:
    path = Path(path)
    filename = filename or path.name
    sha = file_sha256(path) if path.exists() else ""
    started = utcnow()

    def record(status: str, result: ImportResult | None, message: str | None) -> ImportBatch:
        """A batch row written after a rollback (preview or failure)."""
        county_id = (
            session.scalar(select(County.id).where(County.name == options.county)) if options.county else None
        )
        batch = ImportBatch(
            county_id=county_id,
            filename=filename,
            sha256=sha,
            created_by=ctx.actor,
            created_by_id=ctx.user_id,
            started_at=started,
            finished_at=utcnow(),
            status=status,
            create_missing=options.create_missing,
            full=options.full,
            message=message,
            source_file=source_file,
        )
        if result is not None:
            _copy_counts(result, batch)
        session.add(batch)
        session.flush()
        return batch

    try:
        batch = ImportBatch(
            filename=filename,
            sha256=sha,
            created_by=ctx.actor,
            created_by_id=ctx.user_id,
            started_at=started,
            status="applied",
            create_missing=options.create_missing,
            full=options.full,
            source_file=source_file,
            preview_of_id=preview_of_id,
        )
        session.add(batch)
        try:
            session.flush()
        except IntegrityError as exc:  # the unique preview_of_id: confirmed twice
            raise ImportFailed("该预览已经确认导入过，不能重复导入。") from exc
        result = _run(session, path, options, ctx, batch)
        result.error_report = write_error_report(ctx.reports_dir, sha, result.rejections)
    except (RosterFileError, ImportFailed) as exc:
        session.rollback()
        failed = record("failed", None, str(exc))
        _audit(session, ctx, "roster.import.failed", failed, str(exc))
        session.commit()
        raise ImportFailed(str(exc), failed.id) from exc
    except Exception as exc:
        session.rollback()
        log.exception("roster import crashed: %s", filename)
        message = "导入过程中发生内部错误，数据库未作任何更改。请联系系统管理员。"
        failed = record("failed", None, message)
        _audit(session, ctx, "roster.import.failed", failed, type(exc).__name__)
        session.commit()
        raise ImportFailed(message, failed.id) from exc

    report_name = result.error_report.stem if result.error_report else None
    if options.dry_run:
        session.rollback()
        preview = record("preview", result, result.message)
        preview.error_report = report_name
        result.batch_id, result.status = preview.id, "preview"
        _audit(session, ctx, "roster.import.preview", preview, result.summary_line())
    else:
        batch.finished_at = utcnow()
        batch.error_report = report_name
        batch.message = result.message
        _copy_counts(result, batch)
        result.batch_id, result.status = batch.id, "applied"
        _audit(session, ctx, "roster.import", batch, result.summary_line())
    session.commit()
    return result


def _copy_counts(result: ImportResult, batch: ImportBatch) -> None:
    for name in (
        "imported",
        "updated",
        "unchanged",
        "rejected",
        "deactivated",
        "institutions_created",
        "teams_created",
    ):
        setattr(batch, name, getattr(result, name))
    batch.rows_read = result.read


def _audit(session: Session, ctx: ImportContext, action: str, batch: ImportBatch, detail: str) -> None:
    session.add(
        AuditLog(
            user_id=ctx.user_id,
            actor=ctx.actor,
            action=action,
            target=f"import_batch:{batch.id} {batch.filename}",
            detail=detail,
        )
    )


# ---------------------------------------------------------------------------
# Error report
# ---------------------------------------------------------------------------

REPORT_COLUMNS = ["工作表", "行号", "列", "值", "原因"]


def write_error_report(reports_dir: Path, sha: str, rejections: list[Rejection]) -> Path | None:
    """xlsx and csv side by side; returns the xlsx path, or None when nothing was rejected."""
    if not rejections:
        return None
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{sha[:8]}-{uuid.uuid4().hex[:6]}-错误报告"
    frame = pd.DataFrame(
        [(r.sheet, r.row, r.column, r.value, r.reason) for r in rejections], columns=REPORT_COLUMNS
    )
    frame = frame.sort_values(["工作表", "行号"], kind="stable")
    reports_dir = Path(reports_dir)
    write_csv(reports_dir / f"{stem}.csv", frame)
    return write_xlsx(reports_dir / f"{stem}.xlsx", {"错误行": frame}, {"原因": 60, "值": 30})


# ---------------------------------------------------------------------------
# Organisation lookups (and creation with --create-missing)
# ---------------------------------------------------------------------------


class OrgIndex:
    def __init__(self, session: Session, create_missing: bool, batch_county: County | None):
        self.session = session
        self.create_missing = create_missing
        self.batch_county = batch_county
        self.counties = {c.name: c for c in session.scalars(select(County))}
        self.institutions: dict[tuple[int, str], Institution] = {}
        self.institutions_by_name: dict[str, list[Institution]] = {}
        for inst in session.scalars(select(Institution)):
            self.institutions[(inst.county_id, inst.name)] = inst
            self.institutions_by_name.setdefault(inst.name, []).append(inst)
        self.codes = {inst.code: inst for insts in self.institutions_by_name.values() for inst in insts if inst.code}
        self.teams = {(t.institution_id, t.name): t for t in session.scalars(select(Team))}
        self.institutions_created = 0
        self.teams_created = 0

    def institution(
        self, county_name: str, name: str, code: str = "", create: bool = True
    ) -> tuple[Institution | None, str]:
        """(institution, '') or (None, reason). Creates it with --create-missing when asked."""
        county = self.batch_county
        if county_name:
            found = self.counties.get(county_name)
            if found is None:
                return None, f"县区“{county_name}”不存在"
            if county is not None and found.id != county.id:
                return None, f"该行县区“{county_name}”与本次导入选择的县区“{county.name}”不一致"
            county = found
        if county is None:
            candidates = self.institutions_by_name.get(name, [])
            if len(candidates) == 1:
                return candidates[0], ""
            if len(candidates) > 1:
                return None, f"机构“{name}”在多个县区重名，请在导入时指定县区"
            return None, f"机构“{name}”不存在（新建机构需指定县区）"
        inst = self.institutions.get((county.id, name))
        if inst is not None:
            return inst, ""
        if not (self.create_missing and create):
            return None, f"机构“{name}”在{county.name}不存在（可选择“自动新建机构和团队”）"
        kind = infer_institution_type(name)
        if kind is None:
            return None, f"无法从名称判断机构“{name}”的类型（应以 卫生院/中心卫生院/社区卫生服务中心 结尾）"
        if code and code in self.codes:
            return None, f"机构编码“{code}”已被机构“{self.codes[code].name}”使用"
        inst = Institution(county_id=county.id, name=name, type=kind, code=code or None)
        if code:
            self.codes[code] = inst
        self.session.add(inst)
        self.session.flush()
        self.institutions[(county.id, name)] = inst
        self.institutions_by_name.setdefault(name, []).append(inst)
        self.institutions_created += 1
        return inst, ""

    def team(self, inst: Institution, name: str, doctor: str, doctor_phone: str) -> tuple[Team | None, str]:
        team = self.teams.get((inst.id, name))
        if team is not None:
            return team, ""
        if not self.create_missing:
            return None, f"团队“{name}”在{inst.name}不存在（可选择“自动新建机构和团队”）"
        team = Team(institution_id=inst.id, name=name, leader_doctor=doctor or None, doctor_phone=doctor_phone or None)
        self.session.add(team)
        self.session.flush()
        self.teams[(inst.id, name)] = team
        self.teams_created += 1
        return team, ""


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
    Column("id_hash", String(64)),
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
    prefixes=["TEMPORARY"],
)
STAGE_LABELS = Table(
    "roster_stage_labels", _stage_meta, Column("seq", Integer), Column("label_id", Integer), prefixes=["TEMPORARY"]
)
STAGE_SEEN = Table("roster_stage_seen", _stage_meta, Column("id_hash", String(64)), prefixes=["TEMPORARY"])
STAGE_TABLES = (STAGE, STAGE_LABELS, STAGE_SEEN)

# Fields a roster row sets on the resident. Optional ones are only touched when the file
# has the column, so a roster without addresses does not erase the addresses on record.
CORE_FIELDS = ("id_masked", "name", "sex", "birth_date", "phone", "team_id", "contract_start", "contract_end")
OPTIONAL_FIELDS = {"phone2": ("phone", "phone2"), "address": ("address",), "doctor_name": ("doctor",)}


def _create_stage(session: Session) -> None:
    conn = session.connection()
    for table in STAGE_TABLES:
        table.drop(conn, checkfirst=True)
        table.create(conn)


def _drop_stage(session: Session) -> None:
    conn = session.connection()
    for table in STAGE_TABLES:
        table.drop(conn, checkfirst=True)


def _none_if_empty(value: str) -> str | None:
    return value or None


# ---------------------------------------------------------------------------
# The import proper
# ---------------------------------------------------------------------------


def _run(session: Session, path: Path, options: ImportOptions, ctx: ImportContext, batch: ImportBatch) -> ImportResult:
    today = ctx.today or date.today()
    source = open_roster(path, ctx.chunk_rows)
    county = None
    if options.county:
        county = session.scalar(select(County).where(County.name == options.county))
        if county is None:
            raise ImportFailed(f"县区“{options.county}”不存在。")
        batch.county_id = county.id
    if options.create_missing and county is None and "county" not in source.fields:
        raise ImportFailed("自动新建机构时必须指定县区（命令行 --county，或文件中有“县区”列）。")

    label_ids = sync_labels(session, ctx.vocabulary)
    org = OrgIndex(session, options.create_missing, county)
    result = ImportResult(batch_id=batch.id, status="running")
    covered_institutions: set[int] = set()
    _create_stage(session)

    seq = 0
    for chunk in source.chunks():
        if chunk.frame.empty:  # only blank or footer lines
            continue
        result.read += len(chunk.frame)
        checked = validate_frame(
            chunk.frame, chunk.row_numbers, chunk.sheet, today=today, vocabulary=ctx.vocabulary, hash_key=ctx.hash_key
        )
        result.rejections.extend(checked.rejections)
        result.rejected += checked.rejected_rows
        rows = checked.rows

        # resolve institution and team for each distinct unit in the chunk
        team_of: dict[tuple[str, str, str], int | None] = {}
        unit_reason: dict[tuple[str, str, str], tuple[str, str, str]] = {}  # (column, value, reason)
        units = rows[["county", "institution", "institution_code", "team", "doctor", "doctor_phone"]]
        for key, group in units.groupby(["county", "institution", "team"], sort=False):
            first = group.iloc[0]
            inst, reason = org.institution(key[0], key[1], first["institution_code"])
            team = None
            if inst is None:
                unit_reason[key] = ("签约机构", key[1], reason)
            else:
                covered_institutions.add(inst.id)
                team, reason = org.team(inst, key[2], first["doctor"], first["doctor_phone"])
                unit_reason[key] = ("签约团队", key[2], reason)
            team_of[key] = team.id if team else None
        keys = list(zip(rows["county"], rows["institution"], rows["team"]))
        rows = rows.assign(team_id=[team_of[k] for k in keys])
        unresolved = rows["team_id"].isna()
        if unresolved.any():
            for idx in rows.index[unresolved]:
                key = (rows.at[idx, "county"], rows.at[idx, "institution"], rows.at[idx, "team"])
                column, value, reason = unit_reason[key]
                result.rejections.append(Rejection(chunk.sheet, int(rows.at[idx, "row_no"]), column, value, reason))
            result.rejected += int(unresolved.sum())
            _stage_seen(session, rows.loc[unresolved, "id_hash"])
            rows = rows[~unresolved]

        # rejected rows that still name a resident keep that resident active under --full
        identified = checked.rejected_identified
        if options.full and len(identified):
            for county_name, inst_name in identified[["county", "institution"]].drop_duplicates().itertuples(index=False):
                inst, _reason = org.institution(county_name, inst_name, create=False)
                if inst is not None:
                    covered_institutions.add(inst.id)
            _stage_seen(session, identified["id_hash"])

        if len(rows):
            seqs = range(seq + 1, seq + 1 + len(rows))
            seq += len(rows)
            _stage_rows(session, rows, seqs, chunk.sheet)
            _stage_labels(session, rows["label_codes"], seqs, label_ids)

    result.institutions_created = org.institutions_created
    result.teams_created = org.teams_created
    if source.skipped_sheets:
        result.message = "已跳过没有表头的工作表：" + "、".join(source.skipped_sheets)

    conn = session.connection()
    conn.exec_driver_sql("CREATE INDEX ix_roster_stage_hash ON roster_stage (id_hash)")
    conn.exec_driver_sql("CREATE INDEX ix_roster_stage_labels_seq ON roster_stage_labels (seq)")
    result.rejected += _reject_duplicates(session, result.rejections)
    _merge(session, result, batch, options, source.fields, covered_institutions)
    _drop_stage(session)
    if result.read != result.imported + result.updated + result.unchanged + result.rejected:
        raise RuntimeError("import counts do not add up")  # a bug, never user input
    return result


def _stage_rows(session: Session, rows: pd.DataFrame, seqs: range, sheet: str) -> None:
    data = zip(
        seqs,
        [sheet] * len(rows),
        rows["row_no"].astype(int).tolist(),
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
    )
    bulk_load(session, "roster_stage", [c.name for c in STAGE.columns], data)


def _stage_labels(session: Session, codes: pd.Series, seqs: range, label_ids: dict[str, int]) -> None:
    pairs = ((s, label_ids[code]) for s, cell in zip(seqs, codes) for code in cell)
    bulk_load(session, "roster_stage_labels", ["seq", "label_id"], pairs)


def _stage_seen(session: Session, hashes: Iterable[str]) -> None:
    bulk_load(session, "roster_stage_seen", ["id_hash"], ((h,) for h in hashes if h))


def _reject_duplicates(session: Session, rejections: list[Rejection]) -> int:
    """The same person twice in one file: keep the first row, reject the later ones."""
    first = (
        select(STAGE.c.id_hash, func.min(STAGE.c.seq).label("first_seq"))
        .group_by(STAGE.c.id_hash)
        .having(func.count() > 1)
        .subquery()
    )
    kept = STAGE.alias("kept")
    dupes = session.execute(
        select(STAGE.c.seq, STAGE.c.sheet, STAGE.c.row_no, STAGE.c.id_masked, kept.c.sheet, kept.c.row_no)
        .join(first, first.c.id_hash == STAGE.c.id_hash)
        .join(kept, kept.c.seq == first.c.first_seq)
        .where(STAGE.c.seq != first.c.first_seq)
    ).all()
    if not dupes:
        return 0
    for _seq, sheet, row_no, masked, kept_sheet, kept_row in dupes:
        where = f"工作表“{kept_sheet}”" if kept_sheet and kept_sheet != sheet else ""
        rejections.append(Rejection(sheet, row_no, "身份证号", masked, f"与{where}第{kept_row}行的身份证号重复，已保留第一次出现的行"))
    seqs = [d[0] for d in dupes]
    for start in range(0, len(seqs), 500):
        part = seqs[start : start + 500]
        session.execute(delete(STAGE_LABELS).where(STAGE_LABELS.c.seq.in_(part)))
        session.execute(delete(STAGE).where(STAGE.c.seq.in_(part)))
    return len(seqs)


def _merge(
    session: Session,
    result: ImportResult,
    batch: ImportBatch,
    options: ImportOptions,
    fields: set[str],
    covered_institutions: set[int],
) -> None:
    residents = Resident.__table__
    now = utcnow()
    compared = list(CORE_FIELDS) + [f for f, needs in OPTIONAL_FIELDS.items() if any(n in fields for n in needs)]
    matched = residents.c.id_hash == STAGE.c.id_hash
    differs = or_(residents.c.active == false(), *[residents.c[f].is_distinct_from(STAGE.c[f]) for f in compared])

    staged_total = session.scalar(select(func.count()).select_from(STAGE))
    existing = session.scalar(select(func.count()).select_from(STAGE).join(residents, matched))

    # which existing residents change: a field, or their set of key-population labels
    staged_pairs = (
        select(residents.c.id.label("resident_id"), STAGE_LABELS.c.label_id)
        .select_from(STAGE_LABELS)
        .join(STAGE, STAGE.c.seq == STAGE_LABELS.c.seq)
        .join(residents, matched)
    )
    current_pairs = (
        select(resident_labels.c.resident_id, resident_labels.c.label_id)
        .select_from(resident_labels)
        .join(residents, residents.c.id == resident_labels.c.resident_id)
        .join(STAGE, matched)
    )
    added = except_(staged_pairs, current_pairs).subquery()
    removed = except_(current_pairs, staged_pairs).subquery()
    field_changed = select(residents.c.id.label("resident_id")).join(STAGE, matched).where(differs)
    changed = union(
        field_changed, select(added.c.resident_id), select(removed.c.resident_id)
    ).subquery()
    result.updated = session.scalar(select(func.count()).select_from(changed))
    result.imported = staged_total - existing
    result.unchanged = existing - result.updated

    if existing:
        session.execute(
            update(residents)
            .where(matched, differs)
            .values({**{f: STAGE.c[f] for f in compared}, "active": true(), "updated_at": now})
        )

    insert_cols = [*CORE_FIELDS, "phone2", "address", "doctor_name", "id_hash"]
    session.execute(
        insert(residents).from_select(
            [*insert_cols, "active", "do_not_call", "first_seen_batch_id", "last_seen_batch_id", "created_at", "updated_at"],
            select(
                *[STAGE.c[c] for c in insert_cols],
                true(),
                false(),
                literal(batch.id),
                literal(batch.id),
                literal(now),
                literal(now),
            ).where(~exists().where(matched)),
        )
    )

    # labels: drop the pairs no longer in the roster, add the new ones
    staged_resident_ids = select(residents.c.id).join(STAGE, matched)
    pair_staged = (
        select(1)
        .select_from(STAGE_LABELS)
        .join(STAGE, STAGE.c.seq == STAGE_LABELS.c.seq)
        .join(residents, matched)
        .where(
            residents.c.id == resident_labels.c.resident_id,
            STAGE_LABELS.c.label_id == resident_labels.c.label_id,
        )
    )
    if existing:
        session.execute(
            delete(resident_labels).where(
                resident_labels.c.resident_id.in_(staged_resident_ids), ~exists(pair_staged)
            )
        )
    rl = resident_labels.alias("rl")
    session.execute(
        insert(resident_labels).from_select(
            ["resident_id", "label_id"],
            staged_pairs.where(
                ~exists().where(rl.c.resident_id == residents.c.id, rl.c.label_id == STAGE_LABELS.c.label_id)
            ),
        )
    )

    if existing:
        session.execute(
            update(residents)
            .where(matched, residents.c.last_seen_batch_id.is_distinct_from(batch.id))
            .values(last_seen_batch_id=batch.id)
        )

    if options.full and covered_institutions:
        seen = STAGE_SEEN.c.id_hash == residents.c.id_hash
        teams = select(Team.id).where(Team.institution_id.in_(sorted(covered_institutions)))
        deactivated = session.execute(
            update(residents)
            .where(
                residents.c.active == true(),
                residents.c.team_id.in_(teams),
                ~exists().where(matched),
                ~exists().where(seen),
            )
            .values(active=false(), updated_at=now)
        )
        result.deactivated = deactivated.rowcount
    session.flush()
