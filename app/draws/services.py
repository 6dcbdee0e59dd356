"""The monthly draw, its verification and redraw.

Services take the session and the clock (``now``, an aware datetime) as arguments and leave
commits to the boundary, except ``draw_month_and_commit``: a month is drawn county by
county, each in its own locked transaction committed before the next, so one county's
failure does not undo the others.
"""
from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    not_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import locks
from app.core.bulk import bulk_load
from app.draws.sampler import (
    ALGORITHM,
    DrawParams,
    derive_seed,
    draw_institution,
    eligible_hash,
    pack_eligible,
    unpack_eligible,
)
from app.core.transactions import transaction
from app.core.clock import local_date, month_of, month_start, shift_month, TZ, utc_naive
from app.models import audit
from app.models import (
    OUTCOME_COMPLETE,
    Case,
    County,
    Institution,
    PopulationLabel,
    Resident,
    Round,
    RoundInstitution,
    Team,
    resident_labels,
)


SNAPSHOT_CHUNK = 500


class DrawError(Exception):
    """A draw request that cannot be carried out; the message is for users (Chinese)."""


@dataclass(frozen=True)
class DrawSettings:
    sample_size: int = 10
    backup_size: int = 10
    exclusion_months: int = 6
    key_min_share: float | None = None
    questionnaire_version: str = "v1"
    general_code: str = "general"

    @classmethod
    def from_config(cls, config: dict, general_code: str = "general", **overrides) -> DrawSettings:
        values = {
            "sample_size": config["DRAW_SAMPLE_SIZE"],
            "backup_size": config["DRAW_BACKUP_SIZE"],
            "exclusion_months": config["DRAW_EXCLUSION_MONTHS"],
            "key_min_share": config["DRAW_KEY_POPULATION_MIN_SHARE"],
            "questionnaire_version": config["QUESTIONNAIRE_VERSION"],
            "general_code": general_code,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["sample_size"] < 10:
            raise DrawError("每个机构的主样本量不能少于10。")
        if values["backup_size"] < 0:
            raise DrawError("备用样本量不能为负数。")
        return cls(**values)

    @property
    def params(self) -> DrawParams:
        return DrawParams(self.sample_size, self.backup_size, self.key_min_share)


@dataclass
class UnitReport:
    institution: str
    eligible: int
    primaries: int
    backups: int
    shortfall: int
    reason: str | None


@dataclass
class DrawOutcome:
    county: str
    month: str
    status: str  # drawn / exists / skipped / failed
    message: str
    round_id: int | None = None
    units: list[UnitReport] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def shortfalls(self) -> list[UnitReport]:
        return [u for u in self.units if u.reason]


# ---------------------------------------------------------------------------
# Months and the clock
# ---------------------------------------------------------------------------


def parse_month(text: str | None) -> str:
    value = (text or "").strip()
    try:
        parsed = datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise DrawError(f"月份格式应为 YYYY-MM（例如 2026-11），收到：{value or '空'}") from None
    return parsed.strftime("%Y-%m")


def draw_date_for(month: str, now: datetime) -> date:
    """The date eligibility is judged on: today for the current month, the 1st for next month.
    Past months cannot be drawn (their calls could no longer be made)."""
    today = local_date(now)
    current = month_of(today)
    if month < current:
        raise DrawError(f"{month} 已经结束，不能再为它抽样。")
    if month > shift_month(current, 1):
        raise DrawError(f"最多只能提前为下个月（{shift_month(current, 1)}）抽样。")
    return today if month == current else month_start(month)


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


# ---------------------------------------------------------------------------
# Eligibility
# ---------------------------------------------------------------------------


@dataclass
class Eligible:
    resident_ids: np.ndarray
    team_ids: np.ndarray
    institution_ids: np.ndarray
    key_flags: np.ndarray


def _completed_in_window(month: str, exclusion_months: int):
    """SELECT of residents with a completed interview in the window (the months before)."""
    return (
        select(Case.resident_id)
        .join(Round, Round.id == Case.round_id)
        .where(
            Case.outcome == OUTCOME_COMPLETE,
            Round.month >= shift_month(month, -exclusion_months),
            Round.month < month,
        )
    )


def recently_completed(session: Session, month: str, exclusion_months: int) -> np.ndarray:
    if exclusion_months <= 0:
        return np.empty(0, dtype=np.int64)
    ids = session.scalars(_completed_in_window(month, exclusion_months)).all()
    return np.unique(np.asarray(ids, dtype=np.int64))


def key_label_ids(session: Session, general_code: str) -> list[int]:
    return list(session.scalars(select(PopulationLabel.id).where(PopulationLabel.code != general_code)))


def eligibility_rules(day) -> tuple[tuple[str, ColumnElement[bool]], ...]:
    """Who may be drawn: each rule is the condition a resident must meet, named by the reason
    it gives when it excludes someone (EXCLUSION_REASONS). ``day`` is a date or a bind
    parameter. The draw's query and the shortfall's breakdown both read these rules; the
    exclusion window ("recent") is applied apart, from the completes already recorded."""
    return (
        ("team", Team.active),
        ("inactive", Resident.active),
        ("contract", and_(Resident.contract_start <= day, Resident.contract_end >= day)),
        ("phone", Resident.phone != ""),
        ("dnc", not_(Resident.do_not_call)),
    )


def _eligible(*columns):
    """The county's eligible residents (without the exclusion window), as a SELECT with the
    bind parameters ``county_id`` and ``day``."""
    return (
        select(*columns)
        .select_from(Resident)
        .join(Team, Team.id == Resident.team_id)
        .join(Institution, Institution.id == Team.institution_id)
        .where(
            Institution.county_id == bindparam("county_id"),
            Institution.active,
            *(keep for _reason, keep in eligibility_rules(bindparam("day", type_=Date))),
        )
    )


def _key_flag_sql(key_labels: list[int] | None) -> str:
    if not key_labels:
        return "0"
    ids = ", ".join(str(int(label)) for label in key_labels)
    return (
        "CASE WHEN EXISTS (SELECT 1 FROM resident_labels rl WHERE rl.resident_id = residents.id "
        f"AND rl.label_id IN ({ids})) THEN 1 ELSE 0 END"
    )


# The draw reads every eligible resident of a county (a million rows for a city); building a
# SQLAlchemy Row (or even a tuple) per resident would cost several times the query itself.
def _eligible_rows_sqlite(session: Session, county_id: int, day: date, key_flag: str) -> np.ndarray:
    """SQLite: the driver's own cursor returns plain tuples (no Row objects)."""
    connection = session.connection()
    stmt = _eligible(Resident.id, Resident.team_id, Team.institution_id, literal_column(key_flag))
    compiled = stmt.compile(dialect=connection.dialect)
    params = {**compiled.params, "county_id": county_id, "day": day.isoformat()}  # dates are ISO text in SQLite
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(compiled.string, tuple(params[name] for name in compiled.positiontup))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _eligible_rows_postgresql(session: Session, county_id: int, day: date, key_flag: str) -> np.ndarray:
    """PostgreSQL: one row per team, its residents packed by the server into one bytea of
    8-byte big-endian integers (int8send of id * 2 + key flag) that numpy reads as it is.
    One aggregate carries both, so no ORDER BY is needed to keep ids and flags aligned."""
    packed_ids = func.string_agg(
        func.int8send(cast(Resident.id, BigInteger) * 2 + literal_column(key_flag)), literal_column("''::bytea")
    )
    stmt = _eligible(Team.id, Team.institution_id, packed_ids).group_by(Team.id, Team.institution_id)
    rows = session.execute(stmt, {"county_id": county_id, "day": day}).all()
    parts = []
    for team_id, institution_id, packed in rows:
        values = np.frombuffer(packed, dtype=">i8").astype(np.int64)
        block = np.empty((len(values), 4), dtype=np.int64)
        block[:, 0] = values >> 1
        block[:, 1] = team_id
        block[:, 2] = institution_id
        block[:, 3] = values & 1
        parts.append(block)
    return np.concatenate(parts) if parts else np.empty((0, 4), dtype=np.int64)


def load_eligible(
    session: Session, county_id: int, day: date, excluded: np.ndarray, key_labels: list[int] | None
) -> Eligible:
    """The county's eligible residents: active, contract in force on ``day``, a phone, not
    do-not-call, not in ``excluded``. Key-population flags only when ``key_labels`` is given."""
    fetch = _eligible_rows_postgresql if session.get_bind().dialect.name == "postgresql" else _eligible_rows_sqlite
    data = fetch(session, county_id, day, _key_flag_sql(key_labels))
    if len(excluded):
        data = data[~np.isin(data[:, 0], excluded)]
    return Eligible(data[:, 0].copy(), data[:, 1].copy(), data[:, 2].copy(), data[:, 3].astype(bool))


EXCLUSION_REASONS = (
    ("team", "所属团队已停用"),
    ("inactive", "已停用"),
    ("contract", "不在签约期"),
    ("phone", "无可拨打电话"),
    ("dnc", "拒绝回访"),
    ("recent", "近{months}个月已完成调查"),
)


def exclusion_breakdown(
    session: Session, institution_ids: list[int], day: date, month: str, exclusion_months: int
) -> dict[int, dict[str, int]]:
    """Per institution: how many residents each rule excluded (the first rule that applies),
    so a shortfall's reason adds up to the roster count."""
    if not institution_ids:
        return {}
    recent = Resident.id.in_(_completed_in_window(month, exclusion_months)) if exclusion_months > 0 else None
    whens = [(not_(keep), reason) for reason, keep in eligibility_rules(day)]
    if recent is not None:
        whens.append((recent, "recent"))
    reason = case(*whens, else_="eligible")
    rows = session.execute(
        select(Team.institution_id, reason, func.count())
        .select_from(Resident)
        .join(Team, Team.id == Resident.team_id)
        .where(Team.institution_id.in_(institution_ids))
        .group_by(Team.institution_id, reason)
    ).all()
    result: dict[int, dict[str, int]] = defaultdict(dict)
    for inst_id, why, count in rows:
        result[inst_id][why] = count
    return result


def shortfall_reason(
    eligible: int, target: int, backups: int, backup_target: int, breakdown: dict[str, int], months: int
) -> str | None:
    if eligible >= target and backups >= backup_target:
        return None
    total = sum(breakdown.values())
    if total == 0:
        return "名册中没有该机构的签约居民。"
    parts = [
        f"{label.format(months=months)} {breakdown[code]}"
        for code, label in EXCLUSION_REASONS
        if breakdown.get(code)
    ]
    detail = f"（名册 {total} 人" + ("，其中" + "、".join(parts) if parts else "") + "）"
    if eligible == 0:
        return "没有符合条件的居民" + detail + "。"
    if eligible < target:
        return f"符合条件的居民仅 {eligible} 人，少于主样本量 {target}，已全部抽取" + detail + "。"
    return f"备用样本仅 {backups} 人（设定 {backup_target} 人）" + detail + "。"


# ---------------------------------------------------------------------------
# The draw
# ---------------------------------------------------------------------------


def find_round(session: Session, county_id: int, month: str) -> Round | None:
    return session.scalar(select(Round).where(Round.county_id == county_id, Round.month == month))


def _snapshots(session: Session, resident_ids: list[int], day: date, general_code: str) -> dict[int, dict]:
    snaps: dict[int, dict] = {}
    for start in range(0, len(resident_ids), SNAPSHOT_CHUNK):
        chunk = resident_ids[start : start + SNAPSHOT_CHUNK]
        labels: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for rid, code, name in session.execute(
            select(resident_labels.c.resident_id, PopulationLabel.code, PopulationLabel.name)
            .join(PopulationLabel, PopulationLabel.id == resident_labels.c.label_id)
            .where(resident_labels.c.resident_id.in_(chunk))
            .order_by(resident_labels.c.resident_id, PopulationLabel.id)
        ):
            labels[rid].append((code, name))
        for row in session.execute(
            select(
                Resident.id, Resident.name, Resident.sex, Resident.birth_date, Resident.phone, Resident.phone2,
                Resident.doctor_name, Resident.contract_start, Resident.contract_end,
                Team.name.label("team_name"), Team.leader_doctor, Institution.name.label("institution_name"),
            )
            .join(Team, Team.id == Resident.team_id)
            .join(Institution, Institution.id == Team.institution_id)
            .where(Resident.id.in_(chunk))
        ):
            own = labels.get(row.id, [])
            snaps[row.id] = {
                "name": row.name,
                "sex": row.sex,
                "age": age_on(row.birth_date, day),
                "phone": row.phone,
                "phone2": row.phone2,
                "institution_name": row.institution_name,
                "team_name": row.team_name,
                "doctor_name": row.doctor_name or row.leader_doctor,
                "population_labels": "、".join(name for _, name in own),
                "key_population": any(code != general_code for code, _ in own),
                "contract_start": row.contract_start,
                "contract_end": row.contract_end,
            }
    return snaps


@dataclass
class _Inputs:
    eligible: Eligible
    keyed: bool


def _inputs(session: Session, county: County, month: str, day: date, settings: DrawSettings) -> _Inputs:
    excluded = recently_completed(session, month, settings.exclusion_months)
    keys = key_label_ids(session, settings.general_code) if settings.key_min_share else None
    return _Inputs(load_eligible(session, county.id, day, excluded, keys), bool(keys))


def _run_draw(
    session: Session,
    round_: Round,
    county: County,
    settings: DrawSettings,
    now: datetime,
    inputs: _Inputs,
) -> list[UnitReport]:
    """Compute and store the draw of ``round_`` (whose inputs are set); returns the units."""
    day = round_.draw_date
    eligible, keys = inputs.eligible, inputs.keyed
    seed = int(round_.seed, 16)
    params = settings.params
    institutions = session.execute(
        select(Institution.id, Institution.name)
        .where(Institution.county_id == county.id, Institution.active.is_(True))
        .order_by(Institution.name)
    ).all()

    order = np.argsort(eligible.institution_ids, kind="stable")
    inst_sorted = eligible.institution_ids[order]
    draws = {}
    for inst_id, _name in institutions:
        lo, hi = np.searchsorted(inst_sorted, [inst_id, inst_id + 1])
        rows = order[lo:hi]
        ids, teams, flags = eligible.resident_ids[rows], eligible.team_ids[rows], eligible.key_flags[rows]
        draws[inst_id] = (draw_institution(seed, ids, teams, flags if keys else None, params), ids, teams, flags)

    short_ids = [
        i for i, (d, *_rest) in draws.items() if d.primaries < params.sample_size or d.backups < params.backup_size
    ]
    breakdown = exclusion_breakdown(session, short_ids, day, round_.month, settings.exclusion_months)
    picked = [p.resident_id for d, *_rest in draws.values() for p in d.picks]
    snaps = _snapshots(session, picked, day, settings.general_code)
    drawn_at = utc_naive(now)

    units: list[UnitReport] = []
    unit_rows, case_rows = [], []
    for inst_id, name in institutions:
        result, ids, teams, flags = draws[inst_id]
        reason = None
        if inst_id in breakdown or inst_id in short_ids:
            reason = shortfall_reason(
                result.eligible_count,
                params.sample_size,
                result.backups,
                params.backup_size,
                breakdown.get(inst_id, {}),
                settings.exclusion_months,
            )
        units.append(UnitReport(name, result.eligible_count, result.primaries, result.backups, result.shortfall, reason))
        unit_rows.append(
            {
                "round_id": round_.id,
                "institution_id": inst_id,
                "institution_name": name,
                "teams": result.teams,
                "eligible_count": result.eligible_count,
                "eligible_hash": eligible_hash(ids),
                "eligible_data": pack_eligible(ids, teams, flags),
                "primaries": result.primaries,
                "backups": result.backups,
                "shortfall": result.shortfall,
                "shortfall_reason": reason,
            }
        )
        for pick in result.picks:
            case_rows.append(
                {
                    "round_id": round_.id,
                    "institution_id": inst_id,
                    "team_id": pick.team_id,
                    "resident_id": pick.resident_id,
                    "kind": pick.kind,
                    "position": pick.position,
                    "status": "queued" if pick.kind == "primary" else "reserve",
                    "attempt_count": 0,
                    "activated_at": drawn_at if pick.kind == "primary" else None,
                    **snaps[pick.resident_id],
                }
            )
    if unit_rows:
        session.execute(insert(RoundInstitution), unit_rows)
    if case_rows and session.get_bind().dialect.name == "postgresql":
        columns = list(case_rows[0])
        bulk_load(session, Case.__tablename__, columns, (tuple(row[c] for c in columns) for row in case_rows))
    elif case_rows:
        # primaries and backups differ in which columns are None: grouped, each kind goes
        # out in full batches instead of a new statement at every switch
        case_rows.sort(key=lambda row: row["kind"] != "primary")
        session.execute(insert(Case), case_rows)

    round_.eligible_count = int(len(eligible.resident_ids))
    round_.eligible_hash = eligible_hash(eligible.resident_ids)
    round_.institutions = len(institutions)
    round_.primaries = sum(u.primaries for u in units)
    round_.backups = sum(u.backups for u in units)
    round_.shortfall_institutions = sum(1 for u in units if u.shortfall)
    session.flush()
    return units


def _new_round(county: County, month: str, day: date, settings: DrawSettings, salt: str) -> Round:
    return Round(
        county_id=county.id,
        month=month,
        status="open",
        algorithm=ALGORITHM,
        county_code=county.code,
        salt=salt,
        seed=f"{derive_seed(county.code, month, salt):016x}",
        draw_date=day,
        sample_size=settings.sample_size,
        backup_size=settings.backup_size,
        exclusion_months=settings.exclusion_months,
        key_population_min_share=settings.key_min_share,
        questionnaire_version=settings.questionnaire_version,
        eligible_count=0,
        eligible_hash="",
        institutions=0,
        primaries=0,
        backups=0,
        shortfall_institutions=0,
    )


def _describe(units: list[UnitReport]) -> str:
    short = sum(1 for u in units if u.shortfall)
    return (
        f"机构 {len(units)} 个，主样本 {sum(u.primaries for u in units)}，"
        f"备用样本 {sum(u.backups for u in units)}，样本不足机构 {short} 个"
    )


def draw_county(
    session: Session,
    county: County,
    month: str,
    *,
    now: datetime,
    settings: DrawSettings,
    actor: str,
    user_id: int | None = None,
    salt: str | None = None,
) -> DrawOutcome:
    """Draw one county's month inside the caller's transaction, which must hold the county's
    draw lock (``locks.begin_locked(session, locks.DRAW, county.id)``)."""
    day = draw_date_for(month, now)
    if not county.active:
        return DrawOutcome(county.name, month, "skipped", f"{county.name} 已停用，不抽样。")
    existing = find_round(session, county.id, month)
    if existing is not None:
        when = existing.drawn_at.replace(tzinfo=timezone.utc).astimezone(TZ).strftime("%Y-%m-%d %H:%M")
        return DrawOutcome(
            county.name, month, "exists",
            f"{county.name} {month} 已于 {when} 抽样（{existing.triggered_by}），本次未重复抽样。",
            round_id=existing.id,
        )
    inputs = _inputs(session, county, month, day, settings)
    if len(inputs.eligible.resident_ids) == 0:
        # no round yet: when the county's roster arrives, the next catch-up draws it
        return DrawOutcome(
            county.name, month, "skipped", f"{county.name} {month}：没有符合条件的签约居民，未建立本月抽样。"
        )
    round_ = _new_round(county, month, day, settings, salt or secrets.token_hex(8))
    round_.triggered_by, round_.triggered_by_id, round_.drawn_at = actor, user_id, utc_naive(now)
    session.add(round_)
    session.flush()  # the unique (county, month) constraint answers here if another process won
    units = _run_draw(session, round_, county, settings, now, inputs)
    audit(session, "draw", actor, user_id=user_id, target=f"{county.name} {month}", county_id=county.id,
          detail={"round_id": round_.id, "seed": round_.seed, "salt": round_.salt,
                  "eligible": round_.eligible_count, "eligible_hash": round_.eligible_hash})
    session.flush()
    return DrawOutcome(county.name, month, "drawn", f"{county.name} {month}：已抽样。" + _describe(units),
                       round_id=round_.id, units=units)


def counties_for(session: Session, names: list[str] | None = None) -> list[County]:
    stmt = select(County).order_by(County.code)
    counties = list(session.scalars(stmt))
    if names:
        by_name = {c.name: c for c in counties}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DrawError("找不到县市区：" + "、".join(missing))
        counties = [by_name[n] for n in names]
    return counties


def draw_month_and_commit(
    session: Session,
    month: str,
    *,
    now: datetime,
    settings: DrawSettings,
    actor: str,
    user_id: int | None = None,
    county_ids: list[int] | None = None,
    after_draw=None,
) -> list[DrawOutcome]:
    """Draw every county (or the given ones), each in its own locked transaction, committed.
    ``after_draw(round_id)`` runs after each successful commit (the call-list files)."""
    month = parse_month(month)
    draw_date_for(month, now)
    ids = county_ids if county_ids is not None else list(
        session.scalars(select(County.id).where(County.active.is_(True)).order_by(County.code))
    )
    outcomes = []
    for county_id in ids:
        try:
            with transaction(session):
                locks.begin_locked(session, locks.DRAW, county_id)
                county = session.get(County, county_id)
                outcome = draw_county(session, county, month, now=now, settings=settings, actor=actor,
                                      user_id=user_id)
        except Exception as exc:  # one county's failure must not stop the others
            if isinstance(exc, IntegrityError):
                existing = find_round(session, county_id, month)
                if existing is not None:
                    outcomes.append(DrawOutcome(existing.county.name, month, "exists",
                                                f"{existing.county.name} {month} 已由另一进程抽样，本次未重复抽样。",
                                                round_id=existing.id))
                    continue
            name = session.get(County, county_id).name
            outcomes.append(DrawOutcome(name, month, "failed", f"{name} {month} 抽样失败：{exc}"))
            continue
        if outcome.status == "drawn" and after_draw is not None:
            try:
                outcome.files = [str(p) for p in after_draw(outcome.round_id)]
            except Exception as exc:  # the round stands; the list can be exported again
                outcome.message += f"\n  呼叫名单文件写入失败（可用 export call-list 重新导出）：{exc}"
        outcomes.append(outcome)
    return outcomes


def redraw_round(
    session: Session,
    round_id: int,
    *,
    now: datetime,
    settings: DrawSettings,
    actor: str,
    user_id: int | None = None,
    reason: str = "",
) -> DrawOutcome:
    """Draw an open round again with a new salt, only while no call has been recorded in it.
    Begins the transaction holding the county's draw lock; the boundary commits."""
    round_ = session.get(Round, round_id)
    if round_ is None:
        raise DrawError("找不到该抽样轮次。")
    county_id = round_.county_id
    locks.begin_locked(session, locks.DRAW, county_id)
    round_ = session.scalar(select(Round).where(Round.id == round_id).with_for_update())
    county = round_.county
    if round_.status != "open":
        raise DrawError("本轮已结束（月末关闭），不能重新抽样。")
    called = session.scalar(
        select(func.count()).select_from(Case).where(
            Case.round_id == round_.id, (Case.attempt_count > 0) | (Case.status == "done")
        )
    )
    if called:
        raise DrawError(f"本轮已有 {called} 个样本有拨打记录，不能重新抽样。")
    day = draw_date_for(round_.month, now)
    old = {"seed": round_.seed, "salt": round_.salt, "primaries": round_.primaries}
    session.execute(delete(Case).where(Case.round_id == round_.id))
    session.execute(delete(RoundInstitution).where(RoundInstitution.round_id == round_.id))
    fresh = _new_round(county, round_.month, day, settings, secrets.token_hex(8))
    for column in ("algorithm", "county_code", "salt", "seed", "draw_date", "sample_size", "backup_size",
                   "exclusion_months", "key_population_min_share", "questionnaire_version"):
        setattr(round_, column, getattr(fresh, column))
    round_.triggered_by, round_.triggered_by_id, round_.drawn_at = actor, user_id, utc_naive(now)
    round_.redraws += 1
    session.flush()
    session.expire(round_, ["units"])
    units = _run_draw(session, round_, county, settings, now, _inputs(session, county, round_.month, day, settings))
    audit(session, "redraw", actor, user_id=user_id, target=f"{county.name} {round_.month}", county_id=county.id,
          detail={"round_id": round_.id, "reason": reason, "old": old,
                  "new": {"seed": round_.seed, "salt": round_.salt}})
    session.flush()
    return DrawOutcome(county.name, round_.month, "drawn",
                       f"{county.name} {round_.month}：已重新抽样。" + _describe(units),
                       round_id=round_.id, units=units)


# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------


@dataclass
class Verification:
    ok: bool
    lines: list[str]


def verify_round(session: Session, round_: Round) -> Verification:
    """Recompute the draw from the recorded inputs (seed, parameters, stored eligible sets)
    and compare it with the stored cases."""
    lines: list[str] = []
    ok = True
    if round_.algorithm != ALGORITHM:
        return Verification(False, [f"本轮使用的算法 {round_.algorithm} 无法由当前版本核验。"])
    seed = derive_seed(round_.county_code, round_.month, round_.salt)
    if f"{seed:016x}" != round_.seed:
        ok = False
        lines.append(f"种子不符：记录 {round_.seed}，由县代码、月份和盐值计算得 {seed:016x}。")
    params = DrawParams(round_.sample_size, round_.backup_size, round_.key_population_min_share)
    stored = defaultdict(set)
    for inst_id, rid, team_id, kind, position in session.execute(
        select(Case.institution_id, Case.resident_id, Case.team_id, Case.kind, Case.position).where(
            Case.round_id == round_.id
        )
    ):
        stored[inst_id].add((rid, team_id, kind, position))
    all_ids = []
    units = session.scalars(
        select(RoundInstitution).where(RoundInstitution.round_id == round_.id).order_by(RoundInstitution.institution_name)
    ).all()
    for unit in units:
        ids, teams, flags = unpack_eligible(unit.eligible_data, unit.eligible_count)
        all_ids.append(ids)
        if eligible_hash(ids) != unit.eligible_hash:
            ok = False
            lines.append(f"{unit.institution_name}：符合条件名单与记录的哈希不符。")
            continue
        result = draw_institution(seed, ids, teams, flags if params.key_min_share else None, params)
        expected = {(p.resident_id, p.team_id, p.kind, p.position) for p in result.picks}
        got = stored.pop(unit.institution_id, set())
        if expected == got:
            lines.append(f"{unit.institution_name}：一致（主样本 {result.primaries}，备用 {result.backups}）。")
        else:
            ok = False
            lines.append(
                f"{unit.institution_name}：不一致——重算有而记录无 {len(expected - got)} 个，"
                f"记录有而重算无 {len(got - expected)} 个。"
            )
    if stored:
        ok = False
        lines.append(f"有 {sum(len(v) for v in stored.values())} 个样本不属于任何记录的机构。")
    combined = np.concatenate(all_ids) if all_ids else np.empty(0, dtype=np.int64)
    if eligible_hash(combined) != round_.eligible_hash:
        ok = False
        lines.append("全县符合条件名单的哈希与记录不符。")
    return Verification(ok, lines)
