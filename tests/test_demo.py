"""The demo seed's simulated months (app/demo/simulate.py): draws, calls, questionnaires,
closes and problems done through the product's services, so every page has content.

A small city (two counties, 1,500 residents, two months with the clock pinned) is seeded once
for the class ``TestSeededCity`` (and emptied after it); the determinism test and the CLI tests
use the per-test ``app`` fixture.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timezone

import pytest
from flask import current_app
from openpyxl import load_workbook
from sqlalchemy import func, select

from app.core.clock import local, TZ
from app.demo.cli import DEFAULT_PASSWORD, seed_city
from app.demo.simulate import month_progress, months_to_simulate, rollout
from app.demo.synth import YUEYANG_COUNTIES
from app.extensions import db
from app.models import Attempt, Case, County, Problem, Resident, Response, Round, User
from app.reports.excel import build_monthly_report
from app.reports.rankings import build_ranking
from tests.helpers import empty_tables

NOW = datetime(2026, 11, 5, 19, 0, tzinfo=TZ)  # a Thursday evening: November in progress
TWO_COUNTIES = [c for c in YUEYANG_COUNTIES if c[0] in ("岳阳县", "屈原管理区")]


@pytest.fixture(scope="class")
def city(_schema):
    """Two counties (23 institutions), 1,500 residents, October (closed) and November up to NOW."""
    with _schema.app_context():
        lines: list[str] = []
        seed_city(_schema, residents=1500, seed=11, now=NOW, months=2, counties=TWO_COUNTIES, sample=False,
                  echo=lines.append)
        yield lines
        db.session.remove()
        empty_tables()


def _rounds(month: str) -> list[Round]:
    return list(db.session.scalars(select(Round).where(Round.month == month)))


def _local_day(stamp: datetime):
    return local(stamp).date()


class TestSeededCity:
    def test_past_month_is_closed_and_the_current_one_is_in_progress(self, city):
        assert [line.split("：")[0] for line in city if line.startswith("2026-")] == ["2026-10", "2026-11"]
        assert city[-2].endswith("已结束") and city[-1].endswith("进行中")
        october, november = _rounds("2026-10"), _rounds("2026-11")
        assert len(october) == len(november) == 2
        assert all(r.status == "closed" and r.summary and r.closed_by == "scheduler" for r in october)
        assert all(r.status == "open" for r in november)
        # each drawn with the clock inside its month (a past month cannot be drawn)
        assert {r.draw_date.isoformat() for r in october} == {"2026-10-01"}
        assert {r.draw_date.isoformat() for r in november} == {"2026-11-01"}
        ids = [r.id for r in november]
        attempts = db.session.scalar(select(func.count()).select_from(Attempt).where(Attempt.round_id.in_(ids)))
        queued = db.session.scalar(
            select(func.count()).select_from(Case).where(Case.round_id.in_(ids), Case.status == "queued")
        )
        assert attempts > 50 and queued > 50  # work done up to today, much still to do
        last = db.session.scalar(select(func.max(Attempt.started_at)).where(Attempt.round_id.in_(ids)))
        assert last < NOW.astimezone(timezone.utc).replace(tzinfo=None)  # nothing after "now" (UTC, naive)
        # nothing left open when October closed, except cases never dialled
        leftover = db.session.scalar(
            select(func.count()).select_from(Case)
            .where(Case.round_id.in_([r.id for r in october]), Case.status == "queued")
        )
        assert leftover == 0

    def test_attempts_keep_the_calling_rules(self, city):
        settings = current_app.extensions["call_settings"]
        by_case = defaultdict(list)
        for case_id, number, started, outcome in db.session.execute(
            select(Attempt.case_id, Attempt.number, Attempt.started_at, Attempt.outcome)
            .order_by(Attempt.case_id, Attempt.number)
        ):
            by_case[case_id].append((number, started, outcome))
        for attempts in by_case.values():
            assert [n for n, _s, _o in attempts] == list(range(1, len(attempts) + 1))
            assert len(attempts) <= settings.attempt_cap
            for _n, started, _o in attempts:
                assert settings.in_hours(started)  # stored naive UTC, as in_hours reads it
            for (_n, before, _o), (_m, after, _p) in zip(attempts, attempts[1:]):
                assert after - before >= settings.min_gap or _o == "callback"
            # the last regular attempt on another day than the first, unless it honours a callback
            last = settings.max_attempts - 1
            if len(attempts) > last and attempts[last - 1][2] != "callback":
                assert _local_day(attempts[last][1]) != _local_day(attempts[0][1])

    def test_outcome_mix_is_realistic(self, city):
        outcomes = Counter(db.session.scalars(select(Attempt.outcome)))
        total = sum(outcomes.values())
        no_contact = (outcomes["no_answer"] + outcomes["busy"] + outcomes["powered_off"]) / total
        assert 0.25 <= no_contact <= 0.55, outcomes
        assert outcomes["refusal"] > 0 and outcomes["callback"] > 0 and outcomes["complete"] > 0
        assert outcomes["vacant"] + outcomes["suspended"] + outcomes["wrong_person"] > 0
        # October's active cases: most end complete; backups replaced ended primaries
        october = [r.id for r in _rounds("2026-10")]
        dispositions = Counter(db.session.scalars(
            select(Case.outcome).where(Case.round_id.in_(october), Case.status != "reserve")
        ))
        share = dispositions["complete"] / sum(dispositions.values())
        assert 0.5 <= share <= 0.85, dispositions
        backups = db.session.scalar(select(func.count()).select_from(Case).where(
            Case.round_id.in_(october), Case.kind == "backup", Case.status != "reserve",
            Case.replaces_case_id.is_not(None)
        ))
        assert backups > 0
        # a callback asked for was honoured later by a further attempt
        honoured = db.session.scalar(
            select(func.count()).select_from(Attempt).join(Case, Case.id == Attempt.case_id)
            .where(Attempt.outcome == "callback", Case.attempt_count > Attempt.number)
        )
        assert honoured > 0

    def test_answers_follow_the_questionnaire_and_differ_by_institution(self, city):
        q = current_app.extensions["questionnaires"]["v1"]
        rows = db.session.execute(
            select(Response.answers, Response.satisfaction, Response.aware, Case.institution_id)
            .join(Case, Case.id == Response.case_id).where(Response.status == "complete")
        ).all()
        assert len(rows) > 200
        satisfied = defaultdict(list)
        for answers, satisfaction, aware, institution in rows:
            answers = json.loads(answers)
            assert q.is_complete(answers)
            assert q.prune(answers) == answers  # only answers on the path (skip logic kept)
            if answers["aware"] == "no":
                assert "knows_doctor" not in answers and "satisfaction" not in answers and aware is False
            else:
                satisfied[institution].append(satisfaction >= 4)
        rates = [sum(v) / len(v) for v in satisfied.values() if len(v) >= 8]
        assert len(rates) >= 10
        assert max(rates) - min(rates) >= 0.25  # institutions really differ
        flags = Counter(f for (f,) in db.session.execute(select(Response.flags)) if f for f in f.split(","))
        assert {"dissatisfied", "no_service", "unaware"} <= set(flags)

    def test_problems_are_in_several_states(self, city):
        states = Counter(db.session.scalars(select(Problem.status)))
        assert states["open"] > 0 and states["assigned"] > 0 and states["closed"] > 0, states
        for problem in db.session.scalars(select(Problem).where(Problem.status == "closed")):
            assert problem.note and problem.closed_by_id and problem.closed_at >= problem.created_at
        for problem in db.session.scalars(select(Problem).where(Problem.status == "assigned")):
            assert problem.assigned_at >= problem.created_at

    def test_rankings_have_ranked_units_and_a_funnel(self, city):
        ranking = build_ranking(db.session, "institution", "2026-11", window=2, indicator="satisfaction")
        assert len(ranking.ranked) >= 10
        assert ranking.funnel and ranking.overall is not None
        adjusted = [row.adjusted for row in ranking.ranked]
        assert max(adjusted) - min(adjusted) > 0.05
        october = build_ranking(db.session, "institution", "2026-10", window=1, indicator="aware")
        assert october.ranked or october.insufficient
        counties = build_ranking(db.session, "county", "2026-10", window=1)
        assert len(counties.ranked) == 2

    def test_the_monthly_report_builds(self, city, tmp_path):
        path = build_monthly_report(db.session, "2026-10", None, tmp_path / "report.xlsx", config=current_app.config,
                                    now=NOW)
        book = load_workbook(path, read_only=True)
        assert book.sheetnames == ["汇总", "机构排名", "团队排名", "问题清单", "明细", "说明"]
        assert book["明细"].max_row > 100 and book["问题清单"].max_row > 5

    def test_demo_accounts_and_callers(self, city):
        users = {u.username: u for u in db.session.scalars(select(User))}
        expected = {"admin", "yyx_supervisor", "yyx_caller"}
        for county in db.session.scalars(select(County)):
            expected |= {f"demo_caller_{county.code}_1", f"demo_caller_{county.code}_2"}
        assert set(users) == expected
        for user in users.values():
            assert user.real_name and not user.must_change_password
            assert user.check_password(DEFAULT_PASSWORD)
        # everyone called, yyx_caller too (岳阳县)
        callers = set(db.session.scalars(select(Attempt.caller_id).distinct()))
        assert {u.id for u in users.values() if u.role == "caller"} == callers


# ---------------------------------------------------------------------------
# Determinism, the plan of months, the CLI
# ---------------------------------------------------------------------------


def _fingerprint() -> list[tuple]:
    answers = dict(db.session.execute(select(Response.case_id, Response.answers).where(
        Response.status.in_(("complete", "partial", "breakoff")))).all())
    attempts = defaultdict(list)
    for case_id, number, outcome, started in db.session.execute(
        select(Attempt.case_id, Attempt.number, Attempt.outcome, Attempt.started_at)
    ):
        attempts[case_id].append((number, outcome, started.isoformat()))
    rows = db.session.execute(
        select(Round.month, Resident.id_hash, Case.kind, Case.outcome, Case.id)
        .join(Round, Round.id == Case.round_id).join(Resident, Resident.id == Case.resident_id)
    ).all()
    return sorted((month, hashed, kind, outcome or "", answers.get(case_id, ""), tuple(sorted(attempts[case_id])))
                  for month, hashed, kind, outcome, case_id in rows)


def test_the_same_seed_gives_the_same_content(app):
    one_county = [c for c in YUEYANG_COUNTIES if c[0] == "屈原管理区"]  # 6 institutions
    now = datetime(2026, 11, 3, 10, 0, tzinfo=TZ)

    def run() -> list[tuple]:
        seed_city(app, residents=300, seed=5, now=now, months=2, counties=one_county, sample=False,
                  echo=lambda _line: None)
        return _fingerprint()

    first = run()
    assert {month for month, *_rest in first} == {"2026-10", "2026-11"}
    assert any(answers for *_rest, answers, _attempts in first)
    db.session.remove()
    empty_tables()
    assert run() == first


def test_the_plan_of_months():
    assert months_to_simulate(NOW, 3) == ["2026-09", "2026-10", "2026-11"]
    assert months_to_simulate(datetime(2026, 11, 30, 17, 0, tzinfo=timezone.utc), 1) == ["2026-12"]  # Shanghai
    assert months_to_simulate(datetime(2026, 1, 31, 17, 0, tzinfo=TZ), 2) == ["2025-12", "2026-01"]

    class C:  # a county as rollout reads it
        def __init__(self, id_, name, code):
            self.id, self.name, self.code = id_, name, code

    counties = [C(k, name, code) for k, (name, code, _u, _n) in enumerate(YUEYANG_COUNTIES)]
    sizes = {k: n for k, (_name, _code, _u, n) in enumerate(YUEYANG_COUNTIES)}
    months = months_to_simulate(NOW, 6)
    plan = rollout(counties, sizes, months, progress=0.3)
    assert [len(plan[m]) for m in months] == [1, 1, 1, 3, 12, 12]
    assert all(plan[m][0].name == "岳阳县" for m in months[:3])
    assert {c.name for c in plan[months[3]]} == {"岳阳县", "屈原管理区", "南湖新区"}
    # late in the month the month before covers fewer counties (the pilot and the smaller ones)
    late = rollout(counties, sizes, months, progress=1.0)
    assert 1 < len(late[months[4]]) < 12 and len(late[months[5]]) == 12
    assert sum(sizes[c.id] for c in late[months[4]]) <= 0.3 * sum(sizes.values())
    assert "岳阳县" in {c.name for c in late[months[4]]}
    assert month_progress(datetime(2026, 11, 2, 9, 0, tzinfo=TZ)) == 1 / 14
    assert month_progress(datetime(2026, 11, 30, 20, 0, tzinfo=TZ)) == 1.0


def _invoke(runner, *args):
    return runner.invoke(args=list(args), catch_exceptions=False)


def test_months_zero_gives_a_roster_only(app, runner, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "instance_path", str(tmp_path / "instance"))
    result = _invoke(runner, "demo", "seed", "--residents", "300", "--seed", "3", "--months", "0")
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(func.count()).select_from(Resident)) == 300
    assert db.session.scalar(select(func.count()).select_from(Round)) == 0
    assert db.session.scalar(select(func.count()).select_from(User)) == 0
    again = _invoke(runner, "demo", "seed", "--residents", "300", "--months", "2")
    assert "跳过" in again.output and db.session.scalar(select(func.count()).select_from(Round)) == 0


def test_demo_users_prints_the_new_default_password(app, runner, make_county, monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    make_county("岳阳县", "430621")
    result = _invoke(runner, "demo", "users")
    assert result.exit_code == 0
    assert "demo-2026-yy" in result.output and "demo12345" not in result.output
    admin = db.session.scalar(select(User).where(User.username == "admin"))
    assert admin.real_name and not admin.must_change_password and admin.check_password("demo-2026-yy")


def test_seed_command_simulates_with_a_pinned_clock(app, runner, tmp_path, monkeypatch):
    """The CLI end to end on a tiny city: --now pins the clock, one month, no sample file."""
    monkeypatch.setattr(app, "instance_path", str(tmp_path / "instance"))
    result = _invoke(runner, "demo", "seed", "--residents", "400", "--seed", "2", "--months", "1",
                     "--now", "2026-11-02T09:00")  # a Monday morning: half an hour of calls
    assert result.exit_code == 0, result.output
    line = [x for x in result.output.splitlines() if x.startswith("2026-11：")]
    assert line and line[0].startswith("2026-11：12 个县市区，抽样 ") and line[0].endswith("进行中")
    assert db.session.scalar(select(func.count()).select_from(Attempt)) > 0
    assert db.session.scalar(select(func.count()).select_from(Round).where(Round.status == "open")) == 12
