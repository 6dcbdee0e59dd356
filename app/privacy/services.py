"""The retention period (PERSONAL_DATA_RETENTION_MONTHS): the personal data of cases in rounds
closed longer ago than the period, and of residents inactive as long, is erased in place.

What goes: names (they then read ERASED_TEXT), phones, addresses, the masked ID, key-population
labels, a resident's birth date's month and day (a case keeps only the age), and free text
(attempt notes, free-text answers and the details an option asks for, problem notes, the
reasons and free-text values of answer edits, and the details of the audit rows that quote
them: the audit chain covers a detail's digest, so it still verifies).
What stays: every id (a case still points at its resident, so the draw's exclusion window
and ``draw verify`` work as before), the resident's keyed ID hash (a later import recognises
the person and fills the row again), sex, age, the key-population flag, dispositions, the
choice answers and every derived column the reports read: every aggregate is unchanged.

Set-based UPDATEs, chunked; each erased case, round and resident records ``erased_at``, so a
second purge finds nothing. Flushes; the boundary commits."""
from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import String, Text, and_, cast, delete, false, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from app.core import locks
from app.core.clock import TZ, local, utc_naive
from app.models import (
    ERASED_TEXT,
    AnswerEdit,
    Attempt,
    AuditLog,
    Case,
    County,
    ImportBatch,
    Problem,
    Resident,
    Response,
    Round,
    audit,
    resident_labels,
)
from app.models.audit import ERASABLE_DETAIL_ACTIONS
from app.questionnaires import Questionnaire
from app.questionnaires.model import detail_key

AUDIT_ACTION = "privacy.purge"
ROUND_CHUNK = 200  # rounds per UPDATE (bind parameters stay far below SQLite's limit)
RESIDENT_CHUNK = 100_000  # resident ids per UPDATE: a province's roster in bounded statements
_JSONB = JSONB()  # PostgreSQL only (the answers are JSON text on both databases)
_TEXT_ARRAY = ARRAY(Text)


class PurgeError(Exception):
    """The purge cannot run (a message in Chinese for the command or the job)."""


def cutoff_for(now: datetime, months: int) -> datetime:
    """The start (00:00 Asia/Shanghai, as naive UTC) of the local day ``months`` months before
    ``now``; a day the earlier month lacks becomes its last day."""
    if months < 1:
        raise PurgeError("PERSONAL_DATA_RETENTION_MONTHS 至少为1。")
    day = local(now).date()
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    start = date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
    return utc_naive(datetime(start.year, start.month, start.day, tzinfo=TZ))


# ---------------------------------------------------------------------------
# JSON text (answers, answer edits) on both databases
# ---------------------------------------------------------------------------


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _json_text_at(session: Session, column, key: str) -> ColumnElement:
    """The string stored under ``key`` of a JSON text column (NULL if absent)."""
    if _is_postgresql(session):
        return cast(column, _JSONB).op("->>")(literal(key))
    return func.json_extract(column, literal(_sqlite_path(key)))


def _json_replace(session: Session, column, key: str) -> ColumnElement:
    """The JSON text with the value under ``key`` replaced by ERASED_TEXT (only if present)."""
    if _is_postgresql(session):
        return cast(
            func.jsonb_set(cast(column, _JSONB), _pg_path(key),
                           func.to_jsonb(cast(literal(ERASED_TEXT), String)), False),
            String,
        )
    return func.json_replace(column, literal(_sqlite_path(key)), literal(ERASED_TEXT))


def _sqlite_path(key: str) -> str:
    return '$."' + key.replace('"', '""') + '"'


def _pg_path(key: str) -> ColumnElement:
    return cast(array([literal(key)]), _TEXT_ARRAY)


def _has_text(session: Session, column, key: str) -> ColumnElement[bool]:
    return func.coalesce(_json_text_at(session, column, key), "") != ""


def free_text_keys(questionnaire: Questionnaire) -> tuple[list[str], list[str]]:
    """(answer keys holding free text, items whose edits hold free text): every text item,
    and the detail of every item whose options ask for one (the proxy's relation)."""
    keys: list[str] = []
    items: list[str] = []
    for item in questionnaire.items:
        if item.kind == "text":
            keys.append(item.code)
            items.append(item.code)
        elif getattr(item, "has_detail", False):
            keys.append(detail_key(item.code))
            items.append(item.code)
    return keys, items


def _year_start(session: Session, column) -> ColumnElement:
    if _is_postgresql(session):
        return cast(func.date_trunc("year", column), column.type)
    return func.date(column, "start of year")


# ---------------------------------------------------------------------------
# What is due
# ---------------------------------------------------------------------------


@dataclass
class MonthCounts:
    """What the purge erases (or erased) in one month's rounds."""

    month: str
    rounds: int = 0
    cases: int = 0
    attempts: int = 0  # attempts with a note
    responses: int = 0  # responses with free text
    answer_edits: int = 0
    problems: int = 0  # problems with a note

    def as_dict(self) -> dict:
        return {"rounds": self.rounds, "cases": self.cases, "attempts": self.attempts, "responses": self.responses,
                "answer_edits": self.answer_edits, "problems": self.problems}


@dataclass
class PurgePlan:
    cutoff: datetime
    months: list[MonthCounts] = field(default_factory=list)
    residents: int = 0
    round_ids: list[int] = field(default_factory=list)
    audit_details: int = 0  # audit rows older than the period whose detail may hold free text

    @property
    def empty(self) -> bool:
        return not self.round_ids and not self.residents and not self.audit_details


def _audit_detail_due(cutoff: datetime) -> ColumnElement[bool]:
    """Audit rows written before the cutoff whose detail may quote what people wrote about a
    resident (answer edits, problem notes). The chain covers the detail's digest, so erasing
    the text keeps it verifiable (app/models/audit.py)."""
    return and_(AuditLog.at < cutoff, AuditLog.action.in_(ERASABLE_DETAIL_ACTIONS),
                AuditLog.detail.is_not(None), AuditLog.erased_at.is_(None), AuditLog.seq.is_not(None))


def rounds_due(session: Session, cutoff: datetime) -> list[tuple[int, str]]:
    """(id, month) of the closed rounds closed before ``cutoff`` whose cases are not yet erased."""
    return list(session.execute(
        select(Round.id, Round.month)
        .where(Round.status == "closed", Round.closed_at < cutoff, Round.erased_at.is_(None))
        .order_by(Round.month, Round.id)
    ).all())


def _resident_due(cutoff: datetime) -> ColumnElement[bool]:
    """Residents inactive for longer than the period: a contract that ended before the cutoff,
    or deactivated and in no import since the cutoff. A resident still active with a contract
    in force stays whole, however long since an import named them: they may still be drawn."""
    seen_before = Resident.last_seen_batch_id.in_(select(ImportBatch.id).where(ImportBatch.started_at < cutoff))
    never_seen = and_(Resident.last_seen_batch_id.is_(None), Resident.created_at < cutoff)
    return and_(
        Resident.erased_at.is_(None),
        or_(Resident.contract_end < local(cutoff).date(),
            and_(Resident.active == false(), or_(seen_before, never_seen))),
    )


def _chunks(values: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _versions(session: Session, round_ids: list[int]) -> list[str]:
    return list(session.scalars(select(Response.questionnaire_version).where(Response.round_id.in_(round_ids)).distinct()))


def _questionnaire(questionnaires: Mapping[str, Questionnaire], version: str) -> Questionnaire:
    q = questionnaires.get(version)
    if q is None:
        raise PurgeError(f"找不到问卷版本 {version} 的文件，无法确定哪些回答是文字，未删除任何数据。")
    return q


def _count_month(session: Session, ids: list[int], questionnaires: Mapping[str, Questionnaire],
                 counts: MonthCounts) -> None:
    counts.rounds += len(ids)
    counts.cases += session.scalar(select(func.count()).select_from(Case).where(
        Case.round_id.in_(ids), Case.erased_at.is_(None))) or 0
    counts.attempts += session.scalar(select(func.count()).select_from(Attempt).where(
        Attempt.round_id.in_(ids), func.coalesce(Attempt.note, "") != "")) or 0
    counts.problems += session.scalar(select(func.count()).select_from(Problem).where(
        Problem.round_id.in_(ids), func.coalesce(Problem.note, "") != "")) or 0
    counts.answer_edits += session.scalar(select(func.count()).select_from(AnswerEdit).where(
        AnswerEdit.response_id.in_(select(Response.id).where(Response.round_id.in_(ids))))) or 0
    for version in _versions(session, ids):
        keys, _items = free_text_keys(_questionnaire(questionnaires, version))
        if keys:
            counts.responses += session.scalar(select(func.count()).select_from(Response).where(
                Response.round_id.in_(ids), Response.questionnaire_version == version,
                or_(*[_has_text(session, Response.answers, k) for k in keys]))) or 0


def plan_purge(session: Session, cutoff: datetime, questionnaires: Mapping[str, Questionnaire]) -> PurgePlan:
    """What a purge at ``cutoff`` erases: counts per month and table, no names. Reads only."""
    plan = PurgePlan(cutoff)
    by_month: dict[str, list[int]] = {}
    for round_id, month in rounds_due(session, cutoff):
        by_month.setdefault(month, []).append(round_id)
        plan.round_ids.append(round_id)
    for month, ids in by_month.items():
        counts = MonthCounts(month)
        for part in _chunks(ids, ROUND_CHUNK):
            _count_month(session, part, questionnaires, counts)
        plan.months.append(counts)
    plan.residents = session.execute(
        select(func.count()).select_from(Resident).where(_resident_due(cutoff))
    ).scalar() or 0
    plan.audit_details = session.scalar(select(func.count()).select_from(AuditLog).where(_audit_detail_due(cutoff))) or 0
    return plan


# ---------------------------------------------------------------------------
# Erasing
# ---------------------------------------------------------------------------


def _run(session: Session, stmt) -> int:
    return session.execute(stmt.execution_options(synchronize_session=False)).rowcount or 0


def erase_rounds(session: Session, round_ids: list[int], *, now: datetime,
                 questionnaires: Mapping[str, Questionnaire]) -> None:
    """Erase the personal data of the cases of ``round_ids`` (rounds already due)."""
    stamp = utc_naive(now)
    for ids in _chunks(round_ids, ROUND_CHUNK):
        in_rounds = Response.round_id.in_(ids)
        for version in _versions(session, ids):
            keys, items = free_text_keys(_questionnaire(questionnaires, version))
            of_version = and_(in_rounds, Response.questionnaire_version == version)
            for key in keys:
                _run(session, update(Response).where(of_version, _has_text(session, Response.answers, key))
                     .values(answers=_json_replace(session, Response.answers, key)))
            if items:
                edits = and_(AnswerEdit.response_id.in_(select(Response.id).where(of_version)),
                             AnswerEdit.item.in_(items))
                for key in keys:
                    for column in (AnswerEdit.old_value, AnswerEdit.new_value):
                        _run(session, update(AnswerEdit).where(edits, _has_text(session, column, key))
                             .values({column: _json_replace(session, column, key)}))
        _run(session, update(AnswerEdit)
             .where(AnswerEdit.response_id.in_(select(Response.id).where(in_rounds)), AnswerEdit.reason != ERASED_TEXT)
             .values(reason=ERASED_TEXT))
        _run(session, update(Attempt).where(Attempt.round_id.in_(ids), func.coalesce(Attempt.note, "") != "")
             .values(note=ERASED_TEXT))
        _run(session, update(Problem).where(Problem.round_id.in_(ids), func.coalesce(Problem.note, "") != "")
             .values(note=ERASED_TEXT))
        _run(session, update(Case).where(Case.round_id.in_(ids), Case.erased_at.is_(None)).values(
            name=ERASED_TEXT, phone="", phone2=None, population_labels=ERASED_TEXT, erased_at=stamp,
        ))
        _run(session, update(Round).where(Round.id.in_(ids)).values(erased_at=stamp))
    session.flush()


def erase_residents(session: Session, cutoff: datetime, *, now: datetime) -> int:
    """Erase the residents inactive for longer than the period, in id ranges; their labels go."""
    stamp = utc_naive(now)
    due = _resident_due(cutoff)
    low, high = session.execute(select(func.min(Resident.id), func.max(Resident.id)).where(due)).one()
    erased = 0
    if low is None:
        return 0
    for start in range(low, high + 1, RESIDENT_CHUNK):
        in_range = and_(Resident.id >= start, Resident.id < start + RESIDENT_CHUNK, due)
        _run(session, delete(resident_labels).where(resident_labels.c.resident_id.in_(select(Resident.id).where(in_range))))
        erased += _run(session, update(Resident).where(in_range).values(
            name=ERASED_TEXT, id_masked="", phone="", phone2=None, address=None,
            birth_date=_year_start(session, Resident.birth_date), erased_at=stamp,
        ))
    session.flush()
    return erased


@dataclass
class PurgeResult:
    plan: PurgePlan
    files: list[tuple[str, str]]  # (county name, month) of the erased rounds, for their files
    removed: list = field(default_factory=list)  # the files the boundary removed


def purge(session: Session, *, now: datetime, months: int, questionnaires: Mapping[str, Questionnaire],
          actor, dry_run: bool = False) -> PurgeResult:
    """Erase what the retention period says is due at ``now`` and log it (counts only). With
    ``dry_run`` nothing is written: the plan says what would go. Begins the transaction holding
    the purge lock (two scheduler processes erase once); flushes; the boundary commits."""
    cutoff = cutoff_for(now, months)
    if not dry_run:
        locks.begin_locked(session, locks.PURGE, 0)
    plan = plan_purge(session, cutoff, questionnaires)
    files = list(session.execute(
        select(County.name, Round.month).join(County, County.id == Round.county_id).where(Round.id.in_(plan.round_ids))
    ).all()) if plan.round_ids else []
    if dry_run or plan.empty:
        return PurgeResult(plan, [tuple(f) for f in files])
    erase_rounds(session, plan.round_ids, now=now, questionnaires=questionnaires)
    erased = erase_residents(session, cutoff, now=now)
    plan.residents = erased
    plan.audit_details = _run(session, update(AuditLog).where(_audit_detail_due(cutoff))
                              .values(detail=ERASED_TEXT, erased_at=utc_naive(now)))
    audit(session, AUDIT_ACTION, actor, target=f"retention {months} months, before {cutoff.isoformat(timespec='minutes')}",
          detail={"months": {m.month: m.as_dict() for m in plan.months}, "residents": erased,
                  "audit_details": plan.audit_details})
    session.flush()
    return PurgeResult(plan, [tuple(f) for f in files])
