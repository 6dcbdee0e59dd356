"""The rectification list (整改): every flagged interview, sent to its institution, the
rectification recorded, closed, and reopened when it turns out not to be done.

Problem rows are created and kept in step with the response's flags by
``app.calls.interview.sync_problem``; this module only moves them along:

    open (待处理) --交办--> assigned (已交办) --记录整改并关闭--> closed (已整改)
    open --记录整改并关闭--> closed          (e.g. the supervisor settled it directly)
    closed --重新打开--> assigned            (the old note stays in the audit log)

The services (``assign_problem``, ``close_problem``, ``reopen_problem``) take the session,
the problem, the user and ``now``; they write the change and its ``AuditLog`` row, do not
commit, and raise ``ProblemError`` (a Chinese message) on a transition that is not allowed.
Each change is an UPDATE conditional on the status it starts from, so two supervisors
pressing the same button at once change the problem once.

``problem_counts`` gives open/assigned/closed per institution in one GROUP BY, for the
institution rows of the progress board and the rankings.

What the list and a problem's page show (``problem_rows``, ``ProblemFilters``,
``filter_choices``, ``problem_history``) is read here too; the views are in
app/reports/problem_routes.py, the forms in app/reports/forms.py.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from sqlalchemy import func, literal, or_, select, update
from sqlalchemy.orm import Session

from app.auth.scope import can_see_county, county_filter
from app.core.clock import utc_naive
from app.models import PROBLEM_STATUS_LABELS, audit, PROBLEM_STATUSES, AuditLog, Case, County, Institution, Problem, Response, Team, User
from app.questionnaires import FLAGS, Questionnaire
from app.core.ids import as_id
from app.core.masking import scrub_free_text

ACTION_LABELS = {"problem_assign": "交办机构", "problem_close": "记录整改并关闭", "problem_reopen": "重新打开"}
NOTE_MAX_LENGTH = 1000
REASON_MAX_LENGTH = 500
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class ProblemError(ValueError):
    """A change of a problem that is not allowed; the message is shown to the user."""


# ---------------------------------------------------------------------------
# Changes
# ---------------------------------------------------------------------------


def _change(session: Session, problem: Problem, user: User, now: datetime, *, starts_from: tuple[str, ...],
            values: dict, action: str, detail: dict) -> Problem:
    """Move ``problem`` from one of ``starts_from`` with ``values`` and log it; a problem
    someone else moved in the meantime is refused (the UPDATE finds no row)."""
    result = session.execute(
        update(Problem)
        .where(Problem.id == problem.id, Problem.status.in_(starts_from))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(problem)
        raise ProblemError("该问题的状态刚刚被其他人更改，请刷新页面后重试。")
    audit(session, action, user, target=f"problem:{problem.id}", detail=detail, at=utc_naive(now),
          county_id=problem.county_id)
    session.flush()
    session.refresh(problem)
    return problem


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def assign_problem(session: Session, problem: Problem, user: User, now: datetime) -> Problem:
    """交办机构: open → assigned, with when and by whom."""
    if problem.status == "assigned":
        raise ProblemError("该问题已交办机构，无需重复交办。")
    if problem.status == "closed":
        raise ProblemError("该问题已整改关闭，不能再交办；如整改不到位，请先重新打开。")
    institution = session.get(Institution, problem.institution_id)
    return _change(session, problem, user, now, starts_from=("open",), action="problem_assign",
                   values={"status": "assigned", "assigned_at": utc_naive(now), "assigned_by_id": user.id},
                   detail={"from": "open", "to": "assigned", "institution_id": problem.institution_id,
                           "institution": institution.name if institution else None, "flags": problem.flags})


def clean_note(note: str | None) -> str:
    note = (note or "").strip()
    if not note:
        raise ProblemError("请填写整改情况。")
    if len(note) > NOTE_MAX_LENGTH:
        raise ProblemError(f"整改情况不能超过{NOTE_MAX_LENGTH}字（现有{len(note)}字）。")
    return note


def close_problem(session: Session, problem: Problem, user: User, now: datetime, note: str | None) -> Problem:
    """记录整改并关闭: open or assigned → closed, with the rectification (1–1000 characters)."""
    if problem.status == "closed":
        raise ProblemError("该问题已整改关闭。")
    note = clean_note(note)
    return _change(session, problem, user, now, starts_from=("open", "assigned"), action="problem_close",
                   values={"status": "closed", "note": note, "closed_at": utc_naive(now), "closed_by_id": user.id},
                   detail={"from": problem.status, "to": "closed", "note": note, "flags": problem.flags})


def reopen_problem(session: Session, problem: Problem, user: User, now: datetime, reason: str | None = None) -> Problem:
    """重新打开: closed → assigned (sent back to the institution now). The note, who closed it
    and when are cleared on the problem and kept in the audit row."""
    if problem.status != "closed":
        raise ProblemError("只有已整改关闭的问题才能重新打开。")
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX_LENGTH:
        raise ProblemError(f"重新打开的原因不能超过{REASON_MAX_LENGTH}字。")
    closed_by = session.get(User, problem.closed_by_id) if problem.closed_by_id else None
    detail = {"from": "closed", "to": "assigned", "old_note": problem.note, "closed_at": _stamp(problem.closed_at),
              "closed_by": closed_by.username if closed_by else None, "reason": reason or None}
    return _change(session, problem, user, now, starts_from=("closed",), action="problem_reopen",
                   values={"status": "assigned", "note": None, "closed_at": None, "closed_by_id": None,
                           "assigned_at": utc_naive(now), "assigned_by_id": user.id},
                   detail=detail)


# read-only zeros for an institution without problems
EMPTY_COUNTS = MappingProxyType({status: 0 for status in PROBLEM_STATUSES})


def problem_counts(
    session: Session,
    round_ids: Iterable[int] | None = None,
    *,
    county_id: int | None = None,
    month: str | Iterable[str] | None = None,
) -> dict[int, dict[str, int]]:
    """Problems per institution and status: ``{institution_id: {"open": n, "assigned": n,
    "closed": n}}``, from one GROUP BY. Filters combine (AND): ``round_ids`` (the rounds on a
    board), ``county_id``, ``month`` ("2026-11", or several months for a rolling window). At
    least one is required, so a forgotten filter cannot count other counties. Institutions
    without problems are absent: read with ``counts.get(inst_id, EMPTY_COUNTS)``."""
    if round_ids is None and county_id is None and month is None:
        raise ValueError("problem_counts needs round_ids, county_id or month")
    stmt = (select(Problem.institution_id, Problem.status, func.count())
            .group_by(Problem.institution_id, Problem.status))
    if round_ids is not None:
        ids = list(round_ids)
        if not ids:
            return {}
        stmt = stmt.where(Problem.round_id.in_(ids))
    if county_id is not None:
        stmt = stmt.where(Problem.county_id == county_id)
    if month is not None:
        months = [month] if isinstance(month, str) else list(month)
        if not months:
            return {}
        stmt = stmt.where(Problem.month.in_(months))
    counts: dict[int, dict[str, int]] = {}
    for institution_id, status, n in session.execute(stmt):
        counts.setdefault(institution_id, dict(EMPTY_COUNTS))[status] = n
    return counts


# ---------------------------------------------------------------------------
# What a row shows
# ---------------------------------------------------------------------------


def flag_labels(flags: str | None) -> list[str]:
    return [FLAGS.get(code, code) for code in (flags or "").split(",") if code]


def suggestion_of(q: Questionnaire | None, response: Response) -> str:
    """The respondent's suggestion (the item with role "suggestion"), IDs and phones masked."""
    item = q.role_item("suggestion") if q else None
    if item is None:
        return ""
    text = json.loads(response.answers or "{}").get(item.code)
    return scrub_free_text(text.strip()) if isinstance(text, str) else ""


def satisfaction_label(q: Questionnaire | None, score: int | None) -> str:
    item = q.role_item("satisfaction") if q else None
    if item is None or score is None:
        return ""
    return next((o.label for o in item.options if o.score is not None and int(o.score) == score), str(score))


@dataclass
class Row:
    problem: Problem
    response: Response
    case: Case
    county: str
    institution: str
    team: str
    flags: list[str]
    suggestion: str
    satisfaction: str

    @property
    def status_label(self) -> str:
        return PROBLEM_STATUS_LABELS.get(self.problem.status, self.problem.status)


def problem_rows(session: Session, questionnaires: Mapping[str, Questionnaire], problem_ids: list[int]) -> list[Row]:
    """What the list shows of each problem, in the order of ``problem_ids``."""
    if not problem_ids:
        return []
    found = {}
    for problem, response, case, county, institution, team in session.execute(
        select(Problem, Response, Case, County.name, Institution.name, Team.name)
        .join(Response, Response.id == Problem.response_id)
        .join(Case, Case.id == Response.case_id)
        .join(County, County.id == Problem.county_id)
        .join(Institution, Institution.id == Problem.institution_id)
        .join(Team, Team.id == Problem.team_id)
        .where(Problem.id.in_(problem_ids))
    ):
        q = questionnaires.get(response.questionnaire_version)
        found[problem.id] = Row(problem, response, case, county, institution, team, flag_labels(problem.flags),
                                suggestion_of(q, response), satisfaction_label(q, response.satisfaction))
    return [found[i] for i in problem_ids if i in found]


def problem_history(session: Session, problem: Problem) -> list[dict]:
    """The problem's changes from the audit log, oldest first, in words."""
    entries = session.scalars(
        select(AuditLog).where(AuditLog.target == f"problem:{problem.id}").order_by(AuditLog.at, AuditLog.id)
    ).all()
    # the audit row keeps the user name (the stable identifier); people read the real name
    names = {u.id: u.display_name for u in session.scalars(
        select(User).where(User.id.in_({e.user_id for e in entries if e.user_id}))
    )}
    history = []
    for entry in entries:
        try:
            detail = json.loads(entry.detail or "{}")
        except ValueError:
            detail = {}
        if entry.action == "problem_assign":
            text = f"交办给{detail.get('institution') or '所属机构'}"
        elif entry.action == "problem_close":
            text = f"整改情况：{detail.get('note') or ''}"
        elif entry.action == "problem_reopen":
            text = f"原整改情况：{detail.get('old_note') or '（无）'}"
            if detail.get("reason"):
                text += f"；重新打开原因：{detail['reason']}"
        else:
            text = entry.detail or ""
        history.append({"at": entry.at, "actor": names.get(entry.user_id, entry.actor), "action": ACTION_LABELS.get(entry.action, entry.action),
                        "text": text})
    return history


# ---------------------------------------------------------------------------
# The list
# ---------------------------------------------------------------------------


@dataclass
class ProblemFilters:
    """The problem list's filters, read from the query string."""

    month: str  # "" = open ones of any month and all of this month; "all"; or "YYYY-MM"
    county_id: int | None
    institution_id: int | None
    team_id: int | None
    flag: str
    status: str
    this_month: str

    @classmethod
    def from_args(cls, args, user: User, this_month: str) -> ProblemFilters:
        month = (args.get("month") or "").strip()
        if month != "all" and not _MONTH.match(month):
            month = ""
        flag = args.get("flag", "")
        status = args.get("status", "")
        return cls(
            month=month,
            county_id=as_id(args.get("county")) if user.is_admin else user.county_id,
            institution_id=as_id(args.get("institution")),
            team_id=as_id(args.get("team")),
            flag=flag if flag in FLAGS else "",
            status=status if status in PROBLEM_STATUS_LABELS else "",
            this_month=this_month,
        )

    def apply(self, stmt, user: User, *, with_status: bool = True):
        stmt = county_filter(user, stmt, Problem.county_id)
        if self.county_id:
            stmt = stmt.where(Problem.county_id == self.county_id)
        if self.month == "":
            stmt = stmt.where(or_(Problem.status != "closed", Problem.month == self.this_month))
        elif self.month != "all":
            stmt = stmt.where(Problem.month == self.month)
        if self.institution_id:
            stmt = stmt.where(Problem.institution_id == self.institution_id)
        if self.team_id:
            stmt = stmt.where(Problem.team_id == self.team_id)
        if self.flag:  # codes are joined by ","; the flag is one of FLAGS, so no LIKE wildcards
            stmt = stmt.where((literal(",") + Problem.flags + literal(",")).like(f"%,{self.flag},%"))
        if with_status and self.status:
            stmt = stmt.where(Problem.status == self.status)
        return stmt


def filter_choices(session: Session, user: User, f: ProblemFilters):
    """What the filter selects offer, within the user's scope."""
    counties = session.scalars(select(County).order_by(County.code)).all() if user.is_admin else []
    months = session.scalars(
        county_filter(user, select(Problem.month).distinct(), Problem.county_id).order_by(Problem.month.desc())
    ).all()
    institutions, teams = [], []
    if f.county_id and can_see_county(user, f.county_id):
        institutions = session.scalars(
            select(Institution).where(Institution.county_id == f.county_id).order_by(Institution.name)
        ).all()
    if f.institution_id:
        institution = session.get(Institution, f.institution_id)
        if institution is not None and can_see_county(user, institution.county_id):
            teams = session.scalars(
                select(Team).where(Team.institution_id == institution.id).order_by(Team.name)
            ).all()
    return counties, months, institutions, teams
