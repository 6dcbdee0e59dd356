"""Months of survey work for the demo city, done through the product's own services.

`flask demo seed` calls ``simulate`` after the roster is imported, so that a fresh install
shows real content on every page: each month is drawn (``draw_county`` with the clock pinned
inside that month, as the scheduler would), its calling days are played by the county's
callers (``claim_case`` → ``record_attempt`` for calls that end without an interview, or
``start_interview`` → ``save_answer`` → ``finish_interview``), backups replace ended cases
inside the services, past months are closed with ``close_round``, and supervisors move some
problems along with ``assign_problem`` / ``close_problem``. The month of ``now`` is drawn and
called up to ``now`` and left open.

Everything random comes from the numpy generator passed in, consumed in a fixed order, and
every service gets the simulated clock, so the same seed and the same ``now`` give the same
cases, attempts and answers. The draw's salt is taken from the generator too (``draw_month_and_commit``
would pick a random one), which is why the per-county draw service is called here, inside the
same county lock ``draw_month_and_commit`` takes.

Institutions and teams get a lasting latent level (satisfaction, awareness of the contract,
knowing the doctor, services given) so that rankings have real spread and a few units stand
out in the funnel plot.

Speed: every service call is its own short write transaction (about 2 ms of ORM work each on a
small machine, four for an interview), so a whole city month (1,670 primaries, ~3,500 attempts)
costs about 20–25 s. ``rollout`` therefore plays the older months for fewer counties (the pilot
county for all of them); ``all_counties`` plays every county every month.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import numpy as np
from sqlalchemy import event, func, select
from sqlalchemy.orm import scoped_session

from app.core import locks
from app.calls import outcomes as oc
from app.calls.rules import CallSettings
from app.core.transactions import transaction
from app.core.clock import current_month, local, month_start, shift_month, TZ
from app.calls.interview import context_for, finish_interview, save_answer, start_interview
from app.calls.attempts import record_attempt
from app.calls.queue import claim_case
from app.draws.services import DrawSettings, draw_county
from app.scheduler.month_end import close_round
from app.models import Attempt, Case, County, Institution, Problem, Response, Round, Team, User
from app.questionnaires import Context, Item, Questionnaire
from app.reports.problems import assign_problem, close_problem

ACTOR = "scheduler"  # draws and closes are the scheduler's work
# what awaits a sampled resident: each fate up to a cumulative share of draws, the rest "normal"
FATES = (("vacant", 0.02), ("suspended", 0.032), ("wrong_person", 0.044), ("moved", 0.054), ("deceased", 0.058),
         ("incapable", 0.066), ("refuser", 0.161))
PLAN_DAYS = 14  # working days over which a county spreads its first calls
NEW_CASES_UNTIL = time(17, 30)  # later in the day only retries and callbacks (people back from work)
PILOT = "岳阳县"  # the demo supervisor's county: on the system from the first simulated month

# ---------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------

NOTES = {
    "wrong_person": ["接听人称不认识该居民，号码可能登记错误", "对方说打错了，不是本人号码", "号码已换人使用，接听人不认识居民"],
    "incapable": ["居民听力障碍，无法正常沟通，家属不在身边", "居民只会讲方言且听力差，无法完成访问", "居民患阿尔茨海默病，无法回答，家属不愿代答"],
    "deceased": ["家属告知居民已于上月去世", "家属告知居民今年已病故", "接听的家属说老人已经过世"],
    "moved": ["居民已随子女迁往外地居住", "居民称已到外地工作，不在本地签约", "居民表示已解约，改在城区机构签约"],
    "refusal": ["称没有时间，不愿接受回访", "对方表示不需要，直接挂断", None, None, "居民怀疑是诈骗电话，拒绝回答"],
    "not_available": ["家属说本人外出务工，晚上回来", "本人在田里干活，家属接听", None, "本人正在住院，家属接听"],
}
PROXY_CHILD = ["母亲", "父亲", "奶奶", "外婆", "爷爷"]
PROXY_UNABLE = ["儿子", "女儿", "老伴", "儿媳", "孙女"]
SUGGESTIONS_BAD = [
    "签约以后医生一次都没来过，打电话也没人接",
    "希望医生能定期上门量血压，现在要自己跑到卫生院",
    "拿药要跑很远，希望村卫生室能多备一些常用药",
    "签约的时候说有免费体检，今年还没有通知",
    "医生态度不太好，问两句就不耐烦",
    "随访都是打电话问几句，没有实际检查",
    "不知道签约了有什么用，没感觉到有服务",
    "希望长期处方能多开一点，一个月跑一次太麻烦",
]
SUGGESTIONS_NEUTRAL = [
    "希望体检结果能有人解释一下",
    "希望随访时间能提前通知",
    "医生太忙了，有时候找不到人",
    "希望能在微信上咨询医生",
    "卫生院人太多，排队时间长",
]
SUGGESTIONS_GOOD = [
    "医生很负责，经常打电话问血压情况",
    "服务很好，没有意见",
    "希望继续保持，医生上门很方便",
    "感谢家庭医生，对老人很照顾",
]
RECTIFICATION = {
    "unaware": "经核查，该居民由家属代为签约，团队已上门告知签约内容、服务项目和联系方式，并补签知情同意书。",
    "no_service": "团队已上门随访一次，为居民建立随访计划，纳入本季度重点人群服务台账。",
    "below_standard": "团队补做随访并测量血压血糖，已调整随访排班，按规范频次开展服务。",
    "dissatisfied": "机构负责人已电话回访居民，说明情况并致歉；针对反映的问题已在科室会上通报整改。",
    "wants_contact": "家庭医生已于次日电话联系居民，解答了用药和复诊问题，居民表示满意。",
}


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


@dataclass
class Services:
    """What the services need from the application, gathered once at the boundary."""

    draw: DrawSettings
    calls: CallSettings
    questionnaires: Mapping[str, Questionnaire]
    vocabulary: object  # app.core.populations.Vocabulary


@dataclass
class MonthSummary:
    month: str
    primaries: int
    attempts: int
    completes: int
    problems: int
    closed: bool
    counties: int = 0

    def line(self) -> str:
        state = "已结束" if self.closed else "进行中"
        return (f"{self.month}：{self.counties} 个县市区，抽样 {self.primaries} 例，拨打 {self.attempts} 次，完成 {self.completes} 份，"
                f"问题 {self.problems} 条，{state}")


@dataclass
class _Levels:
    """Latent levels of the institutions and teams (by id): they decide how residents answer."""

    sat: dict[int, float] = field(default_factory=dict)
    aware: dict[int, float] = field(default_factory=dict)
    knows: dict[int, float] = field(default_factory=dict)
    service: dict[int, float] = field(default_factory=dict)  # institutions only: a multiplier
    team_sat: dict[int, float] = field(default_factory=dict)
    team_aware: dict[int, float] = field(default_factory=dict)
    team_knows: dict[int, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Clock helpers (aware datetimes in Asia/Shanghai)
# ---------------------------------------------------------------------------


def months_to_simulate(now: datetime, months: int) -> list[str]:
    """The ``months`` months ending with the month of ``now`` (Asia/Shanghai), oldest first."""
    current = current_month(now)
    return [shift_month(current, -k) for k in range(months - 1, -1, -1)]


def _at(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=TZ)


def _working_days(month: str, until: date | None = None) -> list[date]:
    day = month_start(month)
    days = []
    while day.strftime("%Y-%m") == month and (until is None or day <= until):
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def _minutes(value: float) -> timedelta:
    return timedelta(seconds=round(value * 60))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------


def simulate(
    session,
    *,
    now: datetime,
    rng: np.random.Generator,
    months: int,
    services: Services,
    callers: Mapping[int, list[User]],
    staff: Mapping[int, User],
    echo: Callable[[str], None] | None = None,
    all_counties: bool = False,
) -> list[MonthSummary]:
    """Draw, call, close and follow up ``months`` months ending with the month of ``now``.

    ``callers``: county id → the callers who work its cases; ``staff``: county id → the
    supervisor (or administrator) who handles its problems. Older months cover only some
    counties (``rollout``) unless ``all_counties``. Returns one summary per month."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    with _quick(session):
        return _simulate(session, now=now, rng=rng, months=months, services=services, callers=callers,
                         staff=staff, echo=echo, all_counties=all_counties)


@contextmanager
def _quick(session):
    """Thousands of short write transactions from one process that alone writes: objects are
    not expired at each commit (the services read what they must check with
    ``populate_existing`` or a lock, and nobody else writes meanwhile), a pooled connection
    is not pinged at each checkout, and on PostgreSQL a commit does not wait for its WAL
    flush. All restored afterwards."""
    plain = session() if isinstance(session, scoped_session) else session
    engine = plain.get_bind()
    pool = engine.pool
    expire, ping = plain.expire_on_commit, getattr(pool, "_pre_ping", None)
    plain.expire_on_commit = False
    if ping is not None:
        pool._pre_ping = False
    postgresql = engine.dialect.name == "postgresql"
    if postgresql:
        event.listen(engine, "begin", _no_commit_wait)
    try:
        yield
    finally:
        plain.expire_on_commit = expire
        plain.expire_all()  # what was read meanwhile is read again from here on
        if ping is not None:
            pool._pre_ping = ping
        if postgresql:
            event.remove(engine, "begin", _no_commit_wait)


def _no_commit_wait(conn) -> None:
    """PostgreSQL: demo data need not wait for each commit's WAL flush (this transaction only)."""
    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def rollout(counties: list[County], institutions: Mapping[int, int], month_list: list[str], progress: float = 0.0,
            pilot: str | None = PILOT) -> dict[str, list[County]]:
    """Which counties were on the system each month — the city rolled the survey out county
    by county, the pilot first, then the smaller counties:

    * the current month: every county;
    * the month before: every county, unless the current month is far along (``progress``,
      0–1, the share of its calling plan behind us): then as many counties as keep the two
      months together within 1.3 months of the whole city's work;
    * the month before that: a quarter of the counties; older months: the pilot only.

    Calling a whole city for six months through the services would take several minutes on a
    small machine; this keeps the seed within about a minute and every page populated."""
    order = sorted(counties, key=lambda c: (c.name != pilot, institutions.get(c.id, 0), c.code))
    n, total = len(order), sum(institutions.get(c.id, 0) for c in counties)
    room = (1.3 - min(max(progress, 0.0), 1.0)) * total  # institutions the month before may have
    plan = {}
    for back, month in enumerate(reversed(month_list)):
        if back == 0:
            share = n
        elif back == 1:
            share, used = 0, 0
            for county in order:
                used += institutions.get(county.id, 0)
                if share and used > room:
                    break
                share += 1
        elif back == 2:
            share = math.ceil(n / 4)
        else:
            share = math.ceil(n / 12)
        chosen = {c.id for c in order[:share]}
        plan[month] = [c for c in counties if c.id in chosen]  # in the given order (by code, as drawn)
    return plan


def month_progress(now: datetime) -> float:
    """The share of the current month's calling plan (its first PLAN_DAYS working days) behind us."""
    month = current_month(now)
    return min(len(_working_days(month, local(now).date())) / PLAN_DAYS, 1.0)


def _simulate(session, *, now, rng, months, services, callers, staff, echo, all_counties) -> list[MonthSummary]:
    counties = list(session.scalars(select(County).where(County.active.is_(True)).order_by(County.code)))
    month_list = months_to_simulate(now, months)
    if all_counties:
        plan = {month: counties for month in month_list}
    else:
        sizes = dict(session.execute(select(Institution.county_id, func.count()).where(Institution.active.is_(True))
                                     .group_by(Institution.county_id)).all())
        plan = rollout(counties, sizes, month_list, month_progress(now))
    # the acting users, detached: a commit would expire them and every service call would
    # read each back (the services only need their id and name)
    callers = {county_id: _detached(session, users) for county_id, users in callers.items()}
    staff = {county_id: _detached(session, [user])[0] for county_id, user in staff.items()}
    levels = _levels(session, rng)
    summaries = []
    for month in month_list:
        current = month == current_month(now)
        round_ids = _draw(session, month, plan[month], now, rng, services)
        for county in plan[month]:
            round_id = round_ids.get(county.id)
            if round_id is None or not callers.get(county.id):
                continue
            work = _RoundWork(session, services, levels, rng, round_id, callers[county.id])
            work.run(month, now if current else None)
        with transaction(session):
            _follow_up_problems(session, month, now, rng, staff)
        if not current:
            closing = _at(month_start(shift_month(month, 1)) - timedelta(days=1), time(23, 59))
            for round_id in round_ids.values():
                with transaction(session):
                    close_round(session, round_id, now=closing, actor=ACTOR,
                                questionnaires=services.questionnaires, vocabulary=services.vocabulary)
        summary = _summary(session, month, list(round_ids.values()), closed=not current)
        summary.counties = len(round_ids)
        summaries.append(summary)
        if echo:
            echo(summary.line())
    return summaries


def _detached(session, users: list[User]) -> list[User]:
    for user in users:
        if user in session:
            session.refresh(user)
            session.expunge(user)
    return list(users)


def _levels(session, rng: np.random.Generator) -> _Levels:
    """Each institution and team gets its lasting levels; a few institutions stand clearly out."""
    levels = _Levels()
    inst_ids = list(session.scalars(select(Institution.id).order_by(Institution.id)))
    for inst_id in inst_ids:
        kind = rng.random()
        sat = rng.normal(0.0, 0.55)
        aware = rng.normal(0.0, 0.7)
        if kind < 0.04:  # clearly worse: unhappy residents, many unaware of their contract
            sat, aware = -1.4 + rng.normal(0, 0.15), -2.6 + rng.normal(0, 0.3)
        elif kind < 0.08:  # clearly better
            sat, aware = 1.0 + rng.normal(0, 0.15), 1.0
        levels.sat[inst_id] = sat
        levels.aware[inst_id] = aware
        levels.knows[inst_id] = rng.normal(0.0, 0.6) + 0.4 * sat
        levels.service[inst_id] = float(np.exp(rng.normal(0.0, 0.35) + 0.25 * sat))
    for team_id in session.scalars(select(Team.id).order_by(Team.id)):
        levels.team_sat[team_id] = rng.normal(0.0, 0.3)
        levels.team_aware[team_id] = rng.normal(0.0, 0.4)
        levels.team_knows[team_id] = rng.normal(0.0, 0.5)
    return levels


def _draw(session, month: str, counties: list[County], now: datetime, rng: np.random.Generator,
          services: Services) -> dict[int, int]:
    """Each county's round of the month, drawn with the clock at 02:00 on the 1st (the
    scheduler's time) or, for the current month, ``now`` if that is earlier."""
    drawn_at = _at(month_start(month), time(2, 0))
    if drawn_at > now:
        drawn_at = now
    round_ids = {}
    for county in counties:
        salt = rng.bytes(8).hex()
        with transaction(session):
            locks.begin_locked(session, locks.DRAW, county.id)
            outcome = draw_county(session, county, month, now=drawn_at, settings=services.draw, actor=ACTOR,
                                  salt=salt)
        if outcome.round_id is not None:
            round_ids[county.id] = outcome.round_id
    return round_ids


@dataclass
class _Live:
    """A case being worked, as the simulation sees it. ``age`` and ``population_labels`` make
    it usable by ``context_for`` like a Case."""

    id: int
    institution_id: int
    team_id: int
    age: int
    population_labels: str
    fate: str  # normal, refuser, bad number (vacant/suspended/wrong_person), moved, deceased, incapable
    contact: float  # chance that someone picks up
    attempts: int = 0
    first_day: date | None = None
    ready_at: datetime | None = None  # next try (None: never tried yet)
    callback_at: datetime | None = None
    callback_by: int | None = None


class _RoundWork:
    """One county's month of calling, day by day, caller by caller."""

    def __init__(self, session, services: Services, levels: _Levels, rng: np.random.Generator, round_id: int,
                 callers: list[User]):
        self.session = session
        self.services = services
        self.settings = services.calls
        self.levels = levels
        self.rng = rng
        self.round_id = round_id
        self.callers = list(callers)
        round_ = session.get(Round, round_id)
        self.month = round_.month
        self.q = services.questionnaires[round_.questionnaire_version]
        self.untried: list[_Live] = []
        self.waiting: list[_Live] = []  # retries and callbacks
        self.drift = {}  # this month's small change of each institution's level
        self.releases: list[datetime] = []  # when the day's new cases are taken up
        rows = session.execute(
            select(Case.id, Case.institution_id, Case.team_id, Case.age, Case.population_labels)
            .where(Case.round_id == round_id, Case.status == "queued")
            .order_by(Case.position, Case.institution_id)
        ).all()
        for row in rows:
            self.untried.append(self._live(*row))

    # -- cases -------------------------------------------------------------------------------

    def _live(self, case_id, institution_id, team_id, age, labels) -> _Live:
        r = self.rng.random()
        fate = next((name for name, below in FATES if r < below), "normal")
        contact = float(self.rng.beta(2.4, 1.4))
        return _Live(case_id, institution_id, team_id, age, labels or "", fate, contact)

    def _backup_for(self, case: _Live) -> None:
        row = self.session.execute(
            select(Case.id, Case.institution_id, Case.team_id, Case.age, Case.population_labels)
            .where(Case.round_id == self.round_id, Case.replaces_case_id == case.id)
        ).first()
        if row is not None:
            self.untried.insert(0, self._live(*row))

    # -- days --------------------------------------------------------------------------------

    def run(self, month: str, until: datetime | None) -> None:
        last = local(until).date() if until is not None else None
        days = _working_days(month, last)
        for index, day in enumerate(days):
            left = max(PLAN_DAYS - index, 1)
            quota = math.ceil(len(self.untried) / left) if self.untried else 0
            self._day(day, quota, until)

    def _spans(self, day: date) -> list[tuple[datetime, datetime]]:
        return [(_at(day, a), _at(day, b)) for a, b in self.settings.hours]

    def _into_hours(self, t: datetime, spans) -> datetime | None:
        """``t``, or the start of the next calling span when ``t`` is outside one or too near
        its end for a call to be recorded before it closes."""
        for start, end in spans:
            if t < start:
                return start + _minutes(self.rng.uniform(0, 8))
            if t < end - timedelta(minutes=3):
                return t
        return None

    def _day(self, day: date, quota: int, until: datetime | None) -> None:
        """One working day: new cases are taken up through the day (``quota`` of them, at
        moments spread over the hours until 17:30), retries once their gap has passed and
        callbacks at their time; each caller works one call after another."""
        spans = self._spans(day)
        new_until = min(_at(day, NEW_CASES_UNTIL), spans[-1][1])
        self.releases = self._release_times(spans, new_until, quota)
        order = {c.id: k for k, c in enumerate(self.callers)}
        free = {c.id: spans[0][0] + _minutes(self.rng.uniform(0, 25)) for c in self.callers}
        by_id = {c.id: c for c in self.callers}
        active = [c.id for c in self.callers]
        while active:
            uid = min(active, key=lambda u: (free[u], order[u]))
            t = self._into_hours(free[uid], spans)
            if t is None or (until is not None and t >= until):
                active.remove(uid)
                continue
            case = self._choose(uid, t, day)
            if case is None:
                nxt = self._next_moment(t, spans)
                if nxt is None:
                    active.remove(uid)
                else:
                    free[uid] = max(nxt, t + timedelta(minutes=1)) + _minutes(self.rng.uniform(0, 6))
                continue
            with transaction(self.session, write=True):  # one call, one unit of work
                end = self._call(case, by_id[uid], t, day)
            free[uid] = end + _minutes(self.rng.uniform(1, 6))

    def _release_times(self, spans, until: datetime, quota: int) -> list[datetime]:
        """``quota`` moments within the calling hours before ``until``, in order."""
        pieces = [(a, min(b, until)) for a, b in spans if a < until]
        total = sum((b - a).total_seconds() for a, b in pieces)
        times = []
        for offset in sorted(self.rng.uniform(0, total, quota)):
            for a, b in pieces:
                width = (b - a).total_seconds()
                if offset < width:
                    times.append(a + timedelta(seconds=round(offset)))
                    break
                offset -= width
        return times

    def _callable_retry(self, case: _Live, t: datetime, day: date) -> bool:
        return case.callback_at is None and case.ready_at is not None and case.ready_at <= t

    def _choose(self, uid: int, t: datetime, day: date) -> _Live | None:
        due = [c for c in self.waiting if c.callback_at is not None and c.callback_at <= t]
        if due:
            due.sort(key=lambda c: (c.callback_by != uid, c.callback_at, c.id))
            self.waiting.remove(due[0])
            return due[0]
        if self.untried and self.releases and self.releases[0] <= t:
            self.releases.pop(0)
            return self.untried.pop(0)
        ready = [c for c in self.waiting if self._callable_retry(c, t, day)]
        if ready:
            ready.sort(key=lambda c: (c.ready_at, c.id))
            self.waiting.remove(ready[0])
            return ready[0]
        return None

    def _next_moment(self, t: datetime, spans) -> datetime | None:
        end = spans[-1][1]
        times = [c.callback_at if c.callback_at is not None else c.ready_at for c in self.waiting]
        times = [x for x in times if x is not None and t < x < end]
        if self.untried and self.releases:
            times.append(self.releases[0])
        return min(times) if times else None

    # -- one call ----------------------------------------------------------------------------

    def _call(self, case: _Live, user: User, t: datetime, day: date) -> datetime:
        """Dial ``case`` at ``t``; returns when the call ended."""
        rng, settings = self.rng, self.settings
        number = case.attempts + 1
        honouring = case.callback_at is not None
        claim_case(self.session, case.id, user, now=t, settings=settings)
        outcome, note, callback, interview = None, None, None, False
        if case.fate in ("vacant", "suspended") and number == 1:
            outcome = case.fate
        elif case.fate == "wrong_person" and number == 1:
            outcome = "wrong_person"
        elif not honouring and rng.random() > case.contact:
            outcome = ("no_answer", "busy", "powered_off")[int(rng.choice(3, p=(0.62, 0.13, 0.25)))]
        elif case.fate in ("moved", "deceased", "incapable", "refuser"):
            outcome = "refusal" if case.fate == "refuser" else case.fate
        else:
            r = rng.random()
            if r < 0.07 and not honouring:
                outcome = "not_available"
            elif r < 0.15 and not honouring and number < settings.attempt_cap:
                callback = self._callback_time(t)
                outcome = "callback" if callback is not None else "not_available"
            else:
                interview = True
        if outcome in NOTES:
            note = NOTES[outcome][int(rng.integers(len(NOTES[outcome])))]
        if interview:
            end, final_status = self._interview(case, user, t, number)
            outcome = final_status
        else:
            connected = oc.outcome(outcome).connected
            end = t + _minutes(rng.uniform(0.4, 1.2) if not connected else rng.uniform(1.0, 3.0))
            record_attempt(self.session, case.id, user, outcome=outcome, now=end, settings=settings, note=note,
                           callback_at=callback, expected_number=number)
        self._after(case, user, outcome, number, t, end, day, callback)
        return end

    def _after(self, case: _Live, user: User, outcome: str, number: int, t: datetime, end: datetime, day: date,
               callback: datetime | None) -> None:
        settings = self.settings
        case.attempts = number
        case.first_day = case.first_day or day
        case.callback_at, case.callback_by = None, None
        rule = oc.outcome(outcome)
        if rule.final:
            if rule.replace:
                self._backup_for(case)
            return
        exhausted = number >= settings.attempt_cap or (number >= settings.max_attempts and not rule.callback)
        if exhausted:
            self._backup_for(case)
            return
        if rule.callback:
            case.callback_at, case.callback_by = callback, user.id
        else:
            case.ready_at = self._retry_time(case, t, end, day)
        self.waiting.append(case)

    def _retry_time(self, case: _Live, t: datetime, end: datetime, day: date) -> datetime:
        rng = self.rng
        earliest = end + self.settings.min_gap + _minutes(rng.uniform(0, 90))
        last_regular = case.attempts + 1 >= self.settings.max_attempts
        same_day_ok = not (last_regular and case.first_day == day)
        if same_day_ok and rng.random() < 0.45 and earliest.date() == day:
            return earliest
        # another day, preferably another half-day than this attempt
        next_day = day + timedelta(days=1 + int(rng.integers(0, 2)))
        morning = t.hour >= 12 if rng.random() < 0.65 else t.hour < 12
        span = self.settings.hours[0] if morning or len(self.settings.hours) == 1 else self.settings.hours[1]
        start, stop = _at(next_day, span[0]), _at(next_day, span[1])
        width = (stop - start).total_seconds() / 60
        return start + _minutes(rng.uniform(0, max(width - 30, 1)))

    def _callback_time(self, t: datetime) -> datetime | None:
        """When the resident asks to be called back: this evening or a coming working day,
        always in calling hours and within the month."""
        rng = self.rng
        for _ in range(3):
            days_ahead = 0 if rng.random() < 0.35 else int(rng.integers(1, 4))
            day = t.date() + timedelta(days=days_ahead)
            while day.weekday() >= 5:
                day += timedelta(days=1)
            span = self.settings.hours[int(rng.integers(len(self.settings.hours)))]
            start, stop = _at(day, span[0]), _at(day, span[1])
            minutes = int(rng.integers(0, max(int((stop - start).total_seconds() // 1800), 1))) * 30
            when = start + timedelta(minutes=minutes)
            if when > t + timedelta(minutes=30) and self.settings.in_hours(when) \
                    and when.strftime("%Y-%m") == self.month:
                return when
        return None

    # -- the questionnaire -------------------------------------------------------------------

    def _interview(self, case: _Live, user: User, t: datetime, number: int) -> tuple[datetime, str]:
        rng, settings, q = self.rng, self.settings, self.q
        context = context_for(case, self.services.vocabulary)
        response = start_interview(self.session, case.id, user, now=t + _minutes(rng.uniform(0.3, 1.0)),
                                   settings=settings, expected_number=number)
        response_id = response.id
        answers, breakoff = self._answers(case, context)
        end = t + _minutes(rng.uniform(3.5, 8.0) if not breakoff else rng.uniform(1.0, 3.0))
        if answers:
            save_answer(self.session, response_id, user, answers, questionnaire=q, now=end - _minutes(0.3),
                        settings=settings)
            if q.ended_politely(answers):  # identity could not be established: the service records 本人不在
                return end, "not_available"
        finish_interview(self.session, response_id, user, questionnaire=q, context=context, now=end,
                         settings=settings, breakoff=breakoff)
        return end, q.breakoff_status(answers) if breakoff else "complete"

    def _answers(self, case: _Live, context: Context) -> tuple[dict, bool]:
        """The resident's answers along the questionnaire's path (skip logic followed by the
        questionnaire itself), each checked by ``Questionnaire.clean`` as the web form does."""
        rng, q = self.rng, self.q
        inst, team = case.institution_id, case.team_id
        if inst not in self.drift:
            self.drift[inst] = rng.normal(0.0, 0.12)
        mood = 1.45 + self.levels.sat[inst] + self.levels.team_sat[team] + self.drift[inst] + rng.normal(0.0, 1.0)
        # the call drops now and then: before the satisfaction item (break-off) or after it (partial)
        stop_after = int(rng.integers(0, 9)) if rng.random() < 0.04 else None
        answers: dict = {}
        asked = 0
        while (code := q.current(answers)) is not None:
            if stop_after is not None and asked >= stop_after:
                return answers, True
            item = q.item(code)
            raw = self._answer(item, case, context, mood, answers)
            cleaned, errors = q.clean(code, raw, context, answers)
            if errors:
                raise RuntimeError(f"demo answer refused for {code}: {raw} → {errors}")
            answers = q.prune({**answers, **cleaned})
            asked += 1
            if q.ended_politely(answers):
                break
        return answers, False

    def _answer(self, item: Item, case: _Live, context: Context, mood: float, answers: dict) -> dict:
        rng = self.rng
        role = item.role
        inst, team = case.institution_id, case.team_id
        if role == "identity":
            allowed = {o.value: o for o in item.options_for(context)}
            if "proxy_child" in allowed and context.age <= 6:
                return {"value": "proxy_child", "detail": PROXY_CHILD[int(rng.integers(len(PROXY_CHILD)))]}
            if context.age >= 80 and rng.random() < 0.35 and "proxy_unable" in allowed:
                return {"value": "proxy_unable", "detail": PROXY_UNABLE[int(rng.integers(len(PROXY_UNABLE)))]}
            if rng.random() < 0.02 and "unavailable" in allowed:
                return {"value": "unavailable"}
            return {"value": "self"}
        if role == "aware":
            p = _sigmoid(2.6 + self.levels.aware[inst] + self.levels.team_aware[team])
            return {"value": "yes" if rng.random() < p else "no"}
        if role == "knows_doctor":
            p = _sigmoid(0.8 + self.levels.knows[inst] + self.levels.team_knows[team])
            return {"value": "yes" if rng.random() < p else "no"}
        if role == "services":
            expected = self.q.expected_services(context)
            p_none = _sigmoid(-1.5 - 0.9 * (expected > 0) + 1.2 * (1 - self.levels.service[inst]))
            if rng.random() < p_none:
                return {"value": ["none"]}
            chances = {"follow_up": 0.75 if expected else 0.3, "checkup": 0.4,
                       "home_visit": 0.2 if context.age >= 65 else 0.05, "medication": 0.45 if expected else 0.12,
                       "consultation": 0.3, "referral": 0.04, "other": 0.03}
            chosen = [v for v, p in chances.items() if rng.random() < p] or ["follow_up"]
            return {"value": chosen}
        if role == "service_count":
            services = answers.get(self.q.role_item("services").code) or []
            lam = self.levels.service[inst] * (1.0 + 1.6 * self.q.expected_services(context))
            return {"value": str(min(max(len(services), int(rng.poisson(lam))), item.maximum or 30))}
        if role == "effect":
            if rng.random() < 0.06:
                return {"value": "unsure"}
            e = 0.8 * (mood - 1.45) + 0.7 + rng.normal(0.0, 0.7)
            return {"value": _scale(e, (1.7, 0.3, -0.6, -1.3), ("very_helpful", "helpful", "neutral", "little",
                                                                  "not_helpful"))}
        if role == "satisfaction":
            return {"value": _scale(mood, (1.9, 0.2, -0.7, -1.5), ("very_satisfied", "satisfied", "neutral",
                                                                   "dissatisfied", "very_dissatisfied"))}
        if role == "renew":
            sat = answers.get(self.q.role_item("satisfaction").code)
            p = {"very_satisfied": (0.95, 0.04), "satisfied": (0.9, 0.07), "neutral": (0.6, 0.3)}.get(sat, (0.2, 0.35))
            r = rng.random()
            return {"value": "yes" if r < p[0] else "undecided" if r < p[0] + p[1] else "no"}
        if role == "suggestion":
            sat = answers.get(self.q.role_item("satisfaction").code)
            if sat in ("dissatisfied", "very_dissatisfied") or answers.get("aware") == "no":
                pool, p = SUGGESTIONS_BAD, 0.85
            elif sat == "neutral":
                pool, p = SUGGESTIONS_NEUTRAL, 0.45
            else:
                pool, p = SUGGESTIONS_GOOD, 0.15
            return {"value": pool[int(rng.integers(len(pool)))] if rng.random() < p else ""}
        if role == "wants_contact":
            sat = answers.get(self.q.role_item("satisfaction").code)
            p = 0.45 if sat in ("dissatisfied", "very_dissatisfied") else 0.3 if answers.get("aware") == "no" else 0.04
            return {"value": "yes" if rng.random() < p else "no"}
        # an item without a known role: the first option, the minimum, or nothing for a free text
        return item.plain_answer(context)


def _scale(value: float, cuts: tuple[float, ...], labels: tuple[str, ...]) -> str:
    for cut, label in zip(cuts, labels):
        if value > cut:
            return label
    return labels[-1]


# ---------------------------------------------------------------------------
# Problems and the month's figures
# ---------------------------------------------------------------------------


def _office_time(moment: datetime, rng: np.random.Generator) -> datetime:
    """A supervisor's working moment on or after ``moment``'s day (weekdays, 09:00–17:00)."""
    day = local(moment).date()
    while day.weekday() >= 5:
        day += timedelta(days=1)
    when = _at(day, time(9, 0)) + _minutes(rng.uniform(0, 480))
    return max(when, local(moment) + timedelta(minutes=5))


def _follow_up_problems(session, month: str, now: datetime, rng: np.random.Generator,
                        staff: Mapping[int, User]) -> None:
    """Supervisors send most problems to the institution and record a rectification for many;
    what would happen after ``now`` is left undone (recent problems stay open)."""
    problems = list(session.scalars(select(Problem).where(Problem.month == month).order_by(Problem.id)))
    for problem in problems:
        user = staff.get(problem.county_id)
        if user is None:
            continue
        r = rng.random()
        created = problem.created_at
        if r < 0.12:
            continue  # not handled yet
        if r < 0.2:
            when = _office_time(local(created) + timedelta(days=float(rng.uniform(0.5, 4))), rng)
            if when <= now:
                close_problem(session, problem, user, when, _rectification(problem.flags))
            continue
        assigned = _office_time(local(created) + timedelta(days=float(rng.uniform(0.3, 3))), rng)
        if assigned > now:
            continue
        assign_problem(session, problem, user, assigned)
        if rng.random() < 0.72:
            closed = _office_time(assigned + timedelta(days=float(rng.uniform(2, 18))), rng)
            if closed <= now:
                close_problem(session, problem, user, closed, _rectification(problem.flags))


def _rectification(flags: str | None) -> str:
    codes = [code for code in (flags or "").split(",") if code in RECTIFICATION]
    return "".join(RECTIFICATION[code] for code in codes[:2]) or "已核实并整改。"


def _summary(session, month: str, round_ids: list[int], *, closed: bool) -> MonthSummary:
    if not round_ids:
        return MonthSummary(month, 0, 0, 0, 0, closed)
    primaries = session.scalar(select(func.coalesce(func.sum(Round.primaries), 0)).where(Round.id.in_(round_ids)))
    attempts = session.scalar(select(func.count()).select_from(Attempt).where(Attempt.round_id.in_(round_ids)))
    completes = session.scalar(
        select(func.count()).select_from(Response).where(Response.round_id.in_(round_ids),
                                                         Response.status == "complete")
    )
    problems = session.scalar(select(func.count()).select_from(Problem).where(Problem.round_id.in_(round_ids)))
    return MonthSummary(month, int(primaries), attempts, completes, problems, closed)
