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

import functools
import hashlib
import itertools
import logging
import multiprocessing
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
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
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.schema import AddConstraint, DropConstraint
from sqlalchemy.orm import Session

from app.core.bulk import bulk_load
from app.models import AuditLog, County, ImportBatch, Institution, Resident, Team, resident_labels
from app.core.clock import utcnow
from app.models.roster import HASH_TYPE
from app.org.maintenance import Actor, record_change
from app.roster.labels import sync_labels
from app.roster.normalize import infer_institution_type
from app.core.populations import Vocabulary
from app.roster.reader import Chunk, CsvBlock, CsvLayout, RosterFileError, RosterSource, open_roster
from app.roster.validate import Rejection, ValidatedChunk, validate_frame
from app.core.spreadsheets import write_error_report

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
    workers: int = 2  # processes validating chunks of large files; 0 validates inline


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
# Organisation lookups (and creation with --create-missing)
# ---------------------------------------------------------------------------


class OrgIndex:
    def __init__(self, session: Session, create_missing: bool, batch_county: County | None, actor: Actor | None = None):
        self.session = session
        self.actor = actor or Actor("名册导入")
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
        record_change(self.session, self.actor, "institution", inst.id, "create", None,
                      {"name": name, "code": code or None, "type": kind, "county": county.name}, "名册导入时自动新建")
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
        record_change(self.session, self.actor, "team", team.id, "create", None,
                      {"name": name, "leader_doctor": doctor or None, "doctor_phone": doctor_phone or None,
                       "institution": inst.name}, "名册导入时自动新建")
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


def _create_stage(session: Session) -> None:
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


def _drop_stage(session: Session) -> None:
    conn = session.connection()
    for table in STAGE_TABLES:
        table.drop(conn, checkfirst=True)
    if conn.dialect.name == "sqlite":
        for pragma in SQLITE_DEFAULT_PRAGMAS:
            conn.exec_driver_sql(pragma)


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
    org = OrgIndex(session, options.create_missing, county, Actor(ctx.actor, ctx.user_id))
    result = ImportResult(batch_id=batch.id, status="running")
    covered_institutions: set[int] = set()
    _create_stage(session)

    seq = 0
    duplicates = _DuplicateWatch()
    fresh = _FreshLoad.start(session, batch)
    for sheet, read, checked in _validated_chunks(source, ctx, today):
        result.read += read
        result.rejections.extend(checked.rejections)
        result.rejected += checked.rejected_rows
        rows = checked.rows

        # resolve institution and team for each distinct unit in the chunk
        # (each distinct unit once, in order of first appearance; the rows get theirs by number)
        unit_keys = ["county", "institution", "team"]
        unit_no = rows.groupby(unit_keys, sort=False, dropna=False).ngroup().to_numpy()
        firsts = rows.drop_duplicates(unit_keys)[[*unit_keys, "institution_code", "doctor", "doctor_phone"]]
        team_ids: list[float] = []
        unit_reason: list[tuple[str, str, str]] = []  # (column, value, reason)
        for county_name, inst_name, team_name, inst_code, doctor, doctor_phone in firsts.itertuples(index=False):
            inst, reason = org.institution(county_name, inst_name, inst_code)
            team = None
            if inst is None:
                unit_reason.append(("签约机构", inst_name, reason))
            else:
                covered_institutions.add(inst.id)
                team, reason = org.team(inst, team_name, doctor, doctor_phone)
                unit_reason.append(("签约团队", team_name, reason))
            team_ids.append(team.id if team else np.nan)
        rows = rows.assign(team_id=np.asarray(team_ids, dtype=float)[unit_no])
        unresolved = rows["team_id"].isna()
        if unresolved.any():
            for row_no, number in zip(rows.loc[unresolved, "row_no"], unit_no[unresolved.to_numpy()]):
                column, value, reason = unit_reason[number]
                result.rejections.append(Rejection(sheet, int(row_no), column, value, reason))
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

        if len(rows) and fresh is not None:
            result.rejected += fresh.insert(session, rows, sheet, label_ids, result.rejections)
        elif len(rows):
            seqs = range(seq + 1, seq + 1 + len(rows))
            seq += len(rows)
            _stage_rows(session, rows, seqs, sheet)
            duplicates.add(rows["id_hash"], seqs)
            _stage_labels(session, rows["label_codes"], seqs, label_ids)

    result.institutions_created = org.institutions_created
    result.teams_created = org.teams_created
    if source.skipped_sheets:
        result.message = "已跳过没有表头的工作表：" + "、".join(source.skipped_sheets)

    if fresh is not None:
        result.imported = fresh.finish(session)
        _drop_stage(session)
        if result.read != result.imported + result.rejected:
            raise RuntimeError("import counts do not add up")  # a bug, never user input
        return result

    conn = session.connection()
    # no index on the staged hashes: they are matched by the residents' unique index
    # (SQLite) or a hash join (PostgreSQL), and duplicates come from _DuplicateWatch
    conn.exec_driver_sql("CREATE INDEX ix_roster_stage_labels_seq ON roster_stage_labels (seq)")
    if conn.dialect.name == "postgresql":  # temporary tables have no statistics until analysed
        conn.exec_driver_sql("ANALYZE roster_stage")
        conn.exec_driver_sql("ANALYZE roster_stage_labels")
    result.rejected += _reject_duplicates(session, result.rejections, duplicates.candidates)
    _merge(session, result, batch, options, source.fields, covered_institutions)
    _drop_stage(session)
    if result.read != result.imported + result.updated + result.unchanged + result.rejected:
        raise RuntimeError("import counts do not add up")  # a bug, never user input
    return result


PARALLEL_MIN_ROWS = 20_000


def _validated_chunks(source: RosterSource, ctx: ImportContext, today: date
                      ) -> Iterator[tuple[str, int, ValidatedChunk]]:
    """Each chunk's sheet, rows read and validation. Validation is pure and CPU-bound; for a
    large file it runs in worker processes while this process writes the chunks already
    validated. A CSV file goes to them as raw blocks of whole rows, which they parse too:
    this process then only cuts the bytes (no parsing, no chunk pickled on its way out)."""
    args = {"today": today, "vocabulary": ctx.vocabulary, "hash_key": ctx.hash_key}
    if source.csv is not None:
        items = source.blocks()
        work = functools.partial(_parse_and_validate, source.csv, **args)
        size = lambda block: block.lines  # noqa: E731
    else:
        items = source.chunks()
        work = functools.partial(_validate_chunk, **args)
        size = lambda chunk: len(chunk.frame)  # noqa: E731
    first = next(items, None)
    if first is None:
        return
    items = itertools.chain([first], items)
    if ctx.workers <= 0 or size(first) < min(PARALLEL_MIN_ROWS, ctx.chunk_rows):
        for item in items:
            done = work(item)
            if done is not None:
                yield done
        return
    # fork: the workers start at once and import nothing (spawn would re-run the caller's
    # main script); they only compute, never touch the parent's database connections, and
    # leave through os._exit, so nothing inherited is closed twice
    with ProcessPoolExecutor(max_workers=ctx.workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) > ctx.workers:
                done = pending.popleft().result()
                if done is not None:
                    yield done
        while pending:
            done = pending.popleft().result()
            if done is not None:
                yield done


def _validate_chunk(chunk: Chunk, **args) -> tuple[str, int, ValidatedChunk] | None:
    if chunk.frame.empty:  # only blank or footer lines
        return None
    return chunk.sheet, len(chunk.frame), validate_frame(chunk.frame, chunk.row_numbers, chunk.sheet, **args)


def _parse_and_validate(layout: CsvLayout, block: CsvBlock, **args) -> tuple[str, int, ValidatedChunk] | None:
    return _validate_chunk(layout.parse(block), **args)


def _resident_values(rows: pd.DataFrame) -> list[Iterable]:
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


def _stage_rows(session: Session, rows: pd.DataFrame, seqs: range, sheet: str) -> None:
    data = zip(seqs, [sheet] * len(rows), rows["row_no"].astype(int).tolist(), *_resident_values(rows),
               rows["label_codes"].map(len).tolist())
    bulk_load(session, "roster_stage", ["seq", "sheet", "row_no", *RESIDENT_FIELDS, "label_count"], data)


def _stage_labels(session: Session, codes: pd.Series, seqs: range, label_ids: dict[str, int]) -> None:
    pairs = ((s, label_ids[code]) for s, cell in zip(seqs, codes) for code in cell)
    bulk_load(session, "roster_stage_labels", ["seq", "label_id"], pairs)


def _stage_seen(session: Session, hashes: Iterable[str]) -> None:
    bulk_load(session, "roster_stage_seen", ["id_hash"], ((h,) for h in hashes if h))


class _DuplicateWatch:
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


def _repeated_id(sheet: str, row_no: int, masked: str, kept_sheet: str, kept_row: int) -> Rejection:
    where = f"工作表“{kept_sheet}”" if kept_sheet and kept_sheet != sheet else ""
    return Rejection(sheet, int(row_no), "身份证号", masked, f"与{where}第{kept_row}行的身份证号重复，已保留第一次出现的行")


def _reject_duplicates(session: Session, rejections: list[Rejection], candidates: set[str]) -> int:
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
        rejections.append(_repeated_id(sheet, row_no, masked, *kept))
        seqs.append(seq)
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
    """Apply the staged rows. One pass finds the staged rows that are residents already and
    whether each changed (a field, or its set of labels); everything after works from that."""
    residents = Resident.__table__
    now = utcnow()
    compared = list(CORE_FIELDS) + [f for f, needs in OPTIONAL_FIELDS.items() if any(n in fields for n in needs)]
    fields_differ = or_(residents.c.active == false(), *[residents.c[f].is_distinct_from(STAGE.c[f]) for f in compared])
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
            .values({**{f: STAGE.c[f] for f in compared}, "active": true(), "updated_at": now})
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


def _bulk_keys() -> list:
    return [fk.constraint for fk in Resident.__table__.c.team_id.foreign_keys] + sorted(
        resident_labels.foreign_key_constraints, key=lambda c: c.name)


# How long a big import waits for the lock that dropping a key or an index takes (ACCESS
# EXCLUSIVE on PostgreSQL: it waits for every open transaction that read the table). When a
# reader holds on longer, the import keeps its keys and indexes and checks row by row instead.
BULK_LOCK_WAIT = "3s"


@dataclass
class _SetAside:
    """Foreign keys and indexes dropped for a bulk load, to be put back before commit."""

    keys: list = field(default_factory=list)
    indexes: list = field(default_factory=list)

    @classmethod
    def take(cls, session: Session, keys: list, indexes: list) -> _SetAside:
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
    aside = _SetAside()
    base = _new_id_base(session)
    if postgres:
        present = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'residents'").scalar() or 0
        if new_rows >= BULK_KEYS_MIN_NEW and new_rows >= max(present, 0) * BULK_KEYS_MIN_SHARE:
            aside = _SetAside.take(session, _bulk_keys(), [])
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
    _advance_id_sequence(session)


def _new_id_base(session: Session) -> int:
    """The largest resident id, with the residents table locked against other writers until
    commit (PostgreSQL; SQLite has one writer anyway): new ids are numbered after it."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE residents IN SHARE ROW EXCLUSIVE MODE")
    return int(session.scalar(select(func.coalesce(func.max(Resident.__table__.c.id), 0))))


def _advance_id_sequence(session: Session) -> None:
    """Move PostgreSQL's id sequence past the ids an import numbered itself."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('residents', 'id'), (SELECT max(id) FROM residents))"
        )


# ---------------------------------------------------------------------------
# A first import into an empty residents table
# ---------------------------------------------------------------------------


class _FreshLoad:
    """When the residents table is empty as the import starts (a city's or county's first
    roster, the biggest import it will ever have), there is nothing to match or update: every
    accepted row is a new resident, written straight into ``residents`` and
    ``resident_labels`` as its chunk is validated, instead of staged and copied at the end.
    The database work then overlaps the reading and validating of the next chunks.

    The table stays empty for everyone else until the import commits: PostgreSQL locks it
    against other writers from the check on (SQLite: the import already holds the write lock,
    its batch row being written first). A repeated ID is rejected like on the staged path: within
    a chunk by pandas, across chunks by ``_DuplicateWatch`` candidates checked exactly against
    the rows already written, read back by their ids (a row's id tells its number in the load:
    id = base + 1 + number), so no lookup needs the hash index. For a big file the residents'
    and labels' foreign keys (PostgreSQL), the team index and the unique hash index are set
    aside for the load and put back at the end (see _SetAside): the table was empty, so that
    checks and indexes only this import's rows, and building the hash index once (a sort)
    costs a fraction of 1.5 million inserts at random places in it. Were a repeat ever let
    through, building the unique index would fail the import."""

    def __init__(self, session: Session, batch: ImportBatch, base: int) -> None:
        self.batch = batch
        self.base = base
        self.aside: _SetAside | None = None  # decided on the first chunk
        self.count = 0
        self.watch = _DuplicateWatch()
        self.sheets: list[str] = []
        self.sheet_of: array = array("H")  # per loaded row: index into self.sheets
        self.row_of: array = array("L")  # per loaded row: its row number in the file
        self.sqlite = session.connection().dialect.name == "sqlite"
        now = utcnow()
        # the timestamp as SQLAlchemy stores it on SQLite (ISO text); PostgreSQL takes the value
        self.now = now.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else now

    @classmethod
    def start(cls, session: Session, batch: ImportBatch) -> _FreshLoad | None:
        any_resident = select(Resident.__table__.c.id).limit(1)
        if session.scalar(any_resident) is not None:
            return None
        base = _new_id_base(session)
        if session.scalar(any_resident) is not None:
            return None  # another import got in before the lock
        return cls(session, batch, base)

    def insert(self, session: Session, rows: pd.DataFrame, sheet: str, label_ids: dict[str, int],
               rejections: list[Rejection]) -> int:
        """Write the chunk's accepted rows; returns how many were rejected as repeats (of a row
        kept in an earlier chunk, or earlier in this one)."""
        hashes = rows["id_hash"]
        repeat = hashes.duplicated(keep="first").to_numpy()
        candidates = self.watch.earlier(hashes[~repeat])
        earlier = self._written(session, candidates) if candidates else {}
        again = hashes.isin(list(earlier)).to_numpy() if earlier else np.zeros(len(rows), dtype=bool)
        dropped = repeat | again
        if not dropped.any():
            rejected = 0
        else:
            first_row = dict(zip(hashes[~repeat], rows["row_no"][~repeat]))
            for row_no, masked, id_hash in zip(rows["row_no"][dropped], rows["id_masked"][dropped], hashes[dropped]):
                if id_hash in earlier:
                    number = earlier[id_hash]
                    kept = (self.sheets[self.sheet_of[number]], self.row_of[number])
                else:
                    kept = (sheet, int(first_row[id_hash]))
                rejections.append(_repeated_id(sheet, row_no, masked, *kept))
            rejected = int(dropped.sum())
            rows = rows[~dropped]
        if not len(rows):
            return rejected
        if self.aside is None:
            # a big file (its first chunk says so): the keys (PostgreSQL) are checked once at
            # the end and the indexes built once (a sort) instead of row by row. A small one
            # keeps them all: dropping them takes locks that would make the pages reading
            # these tables wait.
            big = len(rows) >= BULK_KEYS_MIN_NEW // 2
            self.aside = _SetAside.take(session, _bulk_keys(), _rebuilt_indexes()) if big else _SetAside()
        first_id = self.base + self.count + 1
        ids = range(first_id, first_id + len(rows))
        if not self.sheets or self.sheets[-1] != sheet:
            self.sheets.append(sheet)
        self.sheet_of.extend([len(self.sheets) - 1] * len(rows))
        self.row_of.extend(rows["row_no"].astype(int).tolist())
        self.watch.add(rows["id_hash"], range(self.count, self.count + len(rows)))
        self.count += len(rows)
        batch_id, now = self.batch.id, self.now
        yes, no = (1, 0) if self.sqlite else (True, False)
        data = zip(ids, *_resident_values(rows), itertools.repeat(yes), itertools.repeat(no),
                   itertools.repeat(batch_id), itertools.repeat(batch_id), itertools.repeat(now), itertools.repeat(now))
        bulk_load(session, "residents", FRESH_COLUMNS, data)
        pairs = ((i, label_ids[code]) for i, cell in zip(ids, rows["label_codes"]) for code in cell)
        bulk_load(session, "resident_labels", ["resident_id", "label_id"], pairs)
        return rejected

    def _written(self, session: Session, candidates: dict[str, list[int]]) -> dict[str, int]:
        """Of the candidates, those written already: each with its row's number in the load."""
        residents = Resident.__table__
        ids = sorted({self.base + 1 + number for numbers in candidates.values() for number in numbers})
        stored: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            stored.update(session.execute(select(residents.c.id, residents.c.id_hash)
                                          .where(residents.c.id.in_(part))).all())
        found: dict[str, int] = {}
        for id_hash, numbers in candidates.items():
            for number in numbers:
                if stored[self.base + 1 + number] == id_hash:
                    found[id_hash] = number
                    break
        return found

    def finish(self, session: Session) -> int:
        if self.aside is not None:
            self.aside.put_back(session)
        _advance_id_sequence(session)
        return self.count


def _rebuilt_indexes() -> list:
    return sorted((index for index in Resident.__table__.indexes
                   if index.name in ("ix_residents_team_id_active", "uq_residents_id_hash")), key=lambda i: i.name)


FRESH_COLUMNS = ["id", *RESIDENT_FIELDS, "active", "do_not_call", "first_seen_batch_id", "last_seen_batch_id",
                 "created_at", "updated_at"]
