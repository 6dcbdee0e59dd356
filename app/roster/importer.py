"""Roster import: read, validate, stage, then upsert by the keyed ID hash in one transaction.

``import_and_commit`` is the unit of work for the CLI and the upload page alike. It owns its
transaction because an import's outcome decides it: applied → commit; dry run → roll back
and keep only the batch record; any failure → roll back everything and record the failure.
A crash or kill mid-import leaves the database as it was (nothing is committed before the end).

The upsert is set-based: accepted rows are bulk-loaded into temporary staging tables and
merged with a handful of SQL statements (the same on SQLite and PostgreSQL), so 1.5 million
rows never travel through the ORM one by one (app.roster.staging). A first import into an
empty residents table writes its rows straight in instead (app.roster.fresh_load). The files
are read by app.core.sheets and validated by app.roster.pipeline; institutions and teams
are looked up by app.roster.units.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import date
from pathlib import Path

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.core.clock import utcnow
from app.core.locks import begin_write
from app.core.spreadsheets import write_error_report
from app.models import audit, County, ImportBatch
from app.org.maintenance import Actor
from app.roster.batch import AlreadyConfirmed, ImportBusy, ImportContext, ImportFailed, ImportOptions, ImportResult
from app.roster.fresh_load import FreshLoad
from app.roster.labels import sync_labels
from app.roster.pipeline import validated_chunks
from app.roster.normalize import open_roster
from app.core.sheets import Rejection, SheetFileError
from app.roster.staging import (
    DuplicateWatch,
    create_stage,
    drop_stage,
    merge,
    reject_duplicates,
    stage_labels,
    stage_rows,
    stage_seen,
)
from app.roster.units import OrgIndex

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# how long a confirmation waits on PostgreSQL for another confirmation of the same preview
# (SQLite's wait is its busy timeout)
CONFIRM_LOCK_TIMEOUT = "30s"


def is_database_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "database table is locked", or PostgreSQL's lock
    timeout (SQLSTATE 55P03): another writer held the lock longer than we wait."""
    if not isinstance(exc, OperationalError):
        return False
    return "locked" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "55P03"


def lock_preview(session: Session, preview_id: int) -> int | None:
    """Begin the transaction that confirms a preview holding the lock that makes the check
    below reliable — SQLite's write lock, the preview row's lock on PostgreSQL — and return
    the id of the batch that applied the preview already, if one did. A second confirmation
    waits here until the first has committed, then finds it. Raises ImportBusy when the
    database stays locked longer than the busy timeout."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    try:
        begin_write(session)
        if postgresql:  # wait for the row no longer than SQLite would for its lock
            session.execute(text(f"SET LOCAL lock_timeout = '{CONFIRM_LOCK_TIMEOUT}'"))
        session.execute(select(ImportBatch.id).where(ImportBatch.id == preview_id).with_for_update())
        if postgresql:  # the import itself waits as long as it must
            session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
    except OperationalError as exc:
        if not is_database_locked(exc):
            raise
        session.rollback()
        raise ImportBusy() from exc
    return session.scalar(select(ImportBatch.id).where(ImportBatch.preview_of_id == preview_id))


def import_and_commit(
    session: Session,
    path: str | Path,
    options: ImportOptions,
    ctx: ImportContext,
    filename: str | None = None,
    source_file: str | None = None,
    preview_of_id: int | None = None,
) -> ImportResult:
    """Import one roster file and commit (or roll back) the session: the caller must not.

    Unlike other services this one owns its transaction, because an import is one atomic
    batch whose outcome decides it: staging, merge and the batch row commit together or not
    at all. Applied → commit; dry run → roll back and keep only a preview batch row; any
    failure → roll back everything, then commit a failed batch row and raise ImportFailed.
    Confirming a preview (``preview_of_id``) that was confirmed already raises
    AlreadyConfirmed and records nothing."""
    if preview_of_id is not None:
        applied = lock_preview(session, preview_of_id)
        if applied is not None:
            session.rollback()
            raise AlreadyConfirmed(applied)
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
        except IntegrityError as exc:  # the unique preview_of_id: confirmed twice after all
            session.rollback()
            applied = session.scalar(select(ImportBatch.id).where(ImportBatch.preview_of_id == preview_of_id))
            raise AlreadyConfirmed(applied) from exc
        result = _run(session, path, options, ctx, batch)
        result.error_report = write_error_report(ctx.reports_dir, sha, result.rejections)
    except AlreadyConfirmed:
        session.rollback()
        raise
    except (SheetFileError, ImportFailed) as exc:
        session.rollback()
        failed = record("failed", None, str(exc))
        _audit(session, ctx, "roster.import.failed", failed, str(exc))
        session.commit()
        raise ImportFailed(str(exc), failed.id) from exc
    except Exception as exc:
        session.rollback()
        if is_database_locked(exc):  # nothing was written, and a failed batch could not be either
            raise ImportBusy() from exc
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
    audit(session, action, ctx.actor, user_id=ctx.user_id, target=f"import_batch:{batch.id} {batch.filename}",
          detail=detail)


def _run(session: Session, path: Path, options: ImportOptions, ctx: ImportContext, batch: ImportBatch) -> ImportResult:
    today = ctx.today or date.today()
    source = open_roster(path, ctx.chunk_rows, ctx.read_limits)
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
    create_stage(session)

    seq = 0
    duplicates = DuplicateWatch()
    fresh = FreshLoad.start(session, batch)
    for sheet, read, checked in validated_chunks(source, ctx, today):
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
            stage_seen(session, rows.loc[unresolved, "id_hash"])
            rows = rows[~unresolved]

        # rejected rows that still name a resident keep that resident active under --full
        identified = checked.rejected_identified
        if options.full and len(identified):
            for county_name, inst_name in identified[["county", "institution"]].drop_duplicates().itertuples(index=False):
                inst, _reason = org.institution(county_name, inst_name, create=False)
                if inst is not None:
                    covered_institutions.add(inst.id)
            stage_seen(session, identified["id_hash"])

        if len(rows) and fresh is not None:
            result.rejected += fresh.insert(session, rows, sheet, label_ids, result.rejections)
        elif len(rows):
            seqs = range(seq + 1, seq + 1 + len(rows))
            seq += len(rows)
            stage_rows(session, rows, seqs, sheet)
            duplicates.add(rows["id_hash"], seqs)
            stage_labels(session, rows["label_codes"], seqs, label_ids)

    result.institutions_created = org.institutions_created
    result.teams_created = org.teams_created
    result.message = source.notice

    if fresh is not None:
        result.imported = fresh.finish(session)
        drop_stage(session)
        if result.read != result.imported + result.rejected:
            raise RuntimeError("import counts do not add up")  # a bug, never user input
        return result

    conn = session.connection()
    # no index on the staged hashes: they are matched by the residents' unique index
    # (SQLite) or a hash join (PostgreSQL), and duplicates come from DuplicateWatch
    conn.exec_driver_sql("CREATE INDEX ix_roster_stage_labels_seq ON roster_stage_labels (seq)")
    if conn.dialect.name == "postgresql":  # temporary tables have no statistics until analysed
        conn.exec_driver_sql("ANALYZE roster_stage")
        conn.exec_driver_sql("ANALYZE roster_stage_labels")
    result.rejected += reject_duplicates(session, result.rejections, duplicates.candidates)
    merge(session, result, batch, options, source.fields, covered_institutions)
    drop_stage(session)
    if result.read != result.imported + result.updated + result.unchanged + result.rejected:
        raise RuntimeError("import counts do not add up")  # a bug, never user input
    return result

