"""The draw against the database: eligibility, shortfalls, snapshots, exactly once, verify,
redraw, close, the call-list files."""
from __future__ import annotations

import json
from datetime import date, datetime

import pandas as pd
import pytest
from sqlalchemy import func, select, update

from app.draws.calllists import COLUMNS, call_list_paths, write_call_list
from app.draws.sampler import derive_seed, eligible_hash
from app.draws.services import DrawError, DrawSettings, draw_month_and_commit, parse_month, redraw_round, verify_round
from app.scheduler.month_end import close_round
from app.extensions import db
from tests.calls_support import committed, closing_args
from app.models import AuditLog, Case, Resident, Round, RoundInstitution, Team
from tests.draws_support import MONTH, NOW, SETTINGS, TZ, add_residents, past_round


def draw(county_ids=None, settings=SETTINGS, now=NOW, **kwargs):
    return draw_month_and_commit(db.session, MONTH if now is NOW else kwargs.pop("month"), now=now, settings=settings,
                      actor="test", county_ids=county_ids, **kwargs)


def cases(round_id, **where):
    stmt = select(Case).where(Case.round_id == round_id).order_by(Case.institution_id, Case.kind, Case.position)
    for key, value in where.items():
        stmt = stmt.where(getattr(Case, key) == value)
    return db.session.scalars(stmt).all()


@pytest.fixture
def county_with_units(county, make_team):
    """新墙镇卫生院: three teams of 12, 8 and 5 eligible residents; 小镇卫生院: 7 eligible;
    空白卫生院: no residents at all."""
    big = [make_team(county, "新墙镇卫生院", name) for name in ("甲团队", "乙团队", "丙团队")]
    for team, size in zip(big, (12, 8, 5)):
        add_residents(team, size)
    small = make_team(county, "小镇卫生院", "丁团队")
    add_residents(small, 7)
    make_team(county, "空白卫生院", "戊团队")
    return county, big, small


def test_draw_stratifies_by_team_and_reports_shortfalls(county_with_units):
    county, big, small = county_with_units
    [outcome] = draw()
    assert outcome.status == "drawn", outcome.message
    round_ = db.session.get(Round, outcome.round_id)
    assert (round_.month, round_.status, round_.sample_size, round_.backup_size, round_.exclusion_months) == (
        MONTH, "open", 10, 10, 6)
    assert round_.seed == f"{derive_seed(county.code, MONTH, round_.salt):016x}"
    assert round_.draw_date == date(2026, 11, 23)
    assert round_.eligible_count == 32 and round_.institutions == 3

    units = {u.institution_name: u for u in db.session.scalars(select(RoundInstitution))}
    assert (units["新墙镇卫生院"].primaries, units["新墙镇卫生院"].backups, units["新墙镇卫生院"].shortfall) == (10, 10, 0)
    assert units["新墙镇卫生院"].shortfall_reason is None
    assert (units["小镇卫生院"].primaries, units["小镇卫生院"].backups, units["小镇卫生院"].shortfall) == (7, 0, 3)
    assert "仅 7 人" in units["小镇卫生院"].shortfall_reason
    assert units["空白卫生院"].eligible_count == 0 and units["空白卫生院"].shortfall == 10
    assert units["空白卫生院"].shortfall_reason == "名册中没有该机构的签约居民。"
    assert round_.shortfall_institutions == 2

    primaries = cases(round_.id, kind="primary")
    per_team = {t.id: sum(1 for c in primaries if c.team_id == t.id) for t in big}
    # 1 each, then 7 more in proportion to 12 / 8 / 5 (largest remainder): 3.36, 2.24, 1.4 -> 3, 2, 1 + 1 to 丙 (0.4)
    assert per_team == {big[0].id: 4, big[1].id: 3, big[2].id: 3}
    assert all(c.status == "queued" and c.activated_at is not None for c in primaries)
    backups = cases(round_.id, kind="backup")
    assert all(c.status == "reserve" and c.activated_at is None for c in backups)
    assert [c.position for c in backups if c.institution_name == "新墙镇卫生院"] == list(range(1, 11))
    assert len({c.resident_id for c in cases(round_.id)}) == 27
    log = db.session.scalar(select(AuditLog).where(AuditLog.action == "draw"))
    assert json.loads(log.detail)["seed"] == round_.seed


def test_only_eligible_residents_are_drawn(county, make_team):
    team = make_team(county, "新墙镇卫生院", "甲团队")
    eligible = add_residents(team, 4)
    add_residents(team, 1, active=False)
    add_residents(team, 1, do_not_call=True)
    add_residents(team, 1, contract_end=date(2026, 11, 22))  # ended the day before the draw
    add_residents(team, 1, contract_start=date(2026, 11, 24))  # starts the day after
    add_residents(team, 1, phone="")
    recent = add_residents(team, 2)
    old = add_residents(team, 1)
    # the window of a November draw is the six months before it: May to October
    past_round(county, "2026-05", recent[:1], team)  # six months before: excluded
    past_round(county, "2026-10", recent[1:], team)  # last month: excluded
    past_round(county, "2026-04", old, team)  # seven months before: outside the window
    [outcome] = draw()
    drawn = {c.resident_id for c in cases(outcome.round_id)}
    assert drawn == set(eligible) | set(old)
    [unit] = db.session.scalars(select(RoundInstitution).where(RoundInstitution.round_id == outcome.round_id))
    reason = unit.shortfall_reason
    assert "名册 12 人" in reason
    for part in ("已停用 1", "不在签约期 2", "无可拨打电话 1", "拒绝回访 1", "近6个月已完成调查 2"):
        assert part in reason, reason


def test_exclusion_window_is_a_parameter(county, make_team):
    team = make_team(county, "新墙镇卫生院", "甲团队")
    recent = add_residents(team, 3)
    past_round(county, "2026-10", recent, team)
    [outcome] = draw(settings=DrawSettings(exclusion_months=0))
    assert {c.resident_id for c in cases(outcome.round_id)} == set(recent)


def test_case_keeps_its_snapshot_when_the_roster_changes(county, make_team):
    team = make_team(county, "新墙镇卫生院", "甲团队")
    [rid] = add_residents(team, 1, labels=("hypertension", "elderly"), birth_date=date(1950, 11, 24),
                          phone="13800138000", phone2="07308221234")
    [outcome] = draw()
    [case] = cases(outcome.round_id)
    assert case.age == 75  # the 76th birthday is the day after the draw date
    assert (case.name, case.phone, case.phone2, case.team_name, case.doctor_name) == (
        db.session.get(Resident, rid).name, "13800138000", "07308221234", "甲团队", "张伟")
    assert set(case.population_labels.split("、")) == {"高血压", "65岁及以上老年人"} and case.key_population
    db.session.execute(update(Resident).where(Resident.id == rid).values(name="改名", phone="13900000000"))
    db.session.commit()
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert (case.name, case.phone) != ("改名", "13900000000")


def test_drawing_an_existing_round_does_nothing_and_says_so(county_with_units):
    [first] = draw()
    before = db.session.scalar(select(func.count()).select_from(Case))
    [second] = draw()
    assert second.status == "exists" and second.round_id == first.round_id
    assert "已于" in second.message and "未重复抽样" in second.message
    assert db.session.scalar(select(func.count()).select_from(Case)) == before
    assert db.session.scalar(select(func.count()).select_from(Round)) == 1


def test_county_without_eligible_residents_gets_no_round(county, make_team):
    make_team(county, "新墙镇卫生院", "甲团队")
    [outcome] = draw()
    assert outcome.status == "skipped" and "没有符合条件" in outcome.message
    assert db.session.scalar(select(func.count()).select_from(Round)) == 0


@pytest.mark.parametrize("month, message", [("2026-10", "已经结束"), ("2027-01", "最多只能提前"), ("2026/11", "YYYY-MM")])
def test_bad_months_are_refused(county_with_units, month, message):
    with pytest.raises(DrawError, match=message):
        draw_month_and_commit(db.session, month, now=NOW, settings=SETTINGS, actor="test")


def test_next_month_draw_uses_the_first_as_draw_date(county, make_team):
    team = make_team(county, "新墙镇卫生院", "甲团队")
    starts_december = add_residents(team, 2, contract_start=date(2026, 12, 1))
    add_residents(team, 2, contract_end=date(2026, 11, 30))
    [outcome] = draw_month_and_commit(db.session, "2026-12", now=NOW, settings=SETTINGS, actor="test")
    round_ = db.session.get(Round, outcome.round_id)
    assert round_.draw_date == date(2026, 12, 1)
    assert {c.resident_id for c in cases(round_.id)} == set(starts_december)


def test_parse_month_normalises():
    assert parse_month(" 2026-1 ") == "2026-01"


def test_verify_recomputes_every_case_and_detects_tampering(county_with_units):
    [outcome] = draw()
    round_ = db.session.get(Round, outcome.round_id)
    result = verify_round(db.session, round_)
    assert result.ok, result.lines
    assert any("新墙镇卫生院：一致" in line for line in result.lines)

    # a primary swapped for a resident of the same institution who was not drawn: detected
    primary = cases(round_.id, kind="primary")[0]
    drawn = {c.resident_id for c in cases(round_.id)}
    not_drawn = db.session.scalars(
        select(Resident.id)
        .join(Team, Team.id == Resident.team_id)
        .where(Team.institution_id == primary.institution_id, Resident.id.not_in(drawn))
    ).first()
    assert not_drawn is not None
    primary.resident_id = not_drawn
    db.session.commit()
    result = verify_round(db.session, round_)
    assert not result.ok and any("不一致" in line for line in result.lines)


def test_verify_detects_an_altered_eligible_set_or_seed(county_with_units):
    [outcome] = draw()
    round_ = db.session.get(Round, outcome.round_id)
    unit = db.session.scalar(select(RoundInstitution).where(RoundInstitution.institution_name == "小镇卫生院"))
    other = db.session.scalar(select(RoundInstitution).where(RoundInstitution.institution_name == "新墙镇卫生院"))
    unit.eligible_data = other.eligible_data
    unit.eligible_count = other.eligible_count
    round_.salt = "changed"
    db.session.commit()
    result = verify_round(db.session, round_)
    assert not result.ok
    text = "\n".join(result.lines)
    assert "小镇卫生院：符合条件名单与记录的哈希不符" in text and "种子不符" in text


def test_eligible_hash_covers_the_county(county_with_units):
    [outcome] = draw()
    round_ = db.session.get(Round, outcome.round_id)
    ids = db.session.scalars(select(Resident.id)).all()
    assert round_.eligible_hash == eligible_hash(ids)


def test_redraw_only_while_nothing_was_called(county_with_units):
    [outcome] = draw()
    round_ = db.session.get(Round, outcome.round_id)
    old_seed, old_cases = round_.seed, {c.resident_id for c in cases(round_.id)}
    result = committed(redraw_round, round_.id, now=NOW, settings=SETTINGS, actor="admin", reason="名册更新")
    db.session.expire_all()
    round_ = db.session.get(Round, outcome.round_id)
    assert result.status == "drawn" and round_.redraws == 1 and round_.seed != old_seed
    assert verify_round(db.session, round_).ok
    assert len(cases(round_.id)) == len(old_cases)
    log = db.session.scalar(select(AuditLog).where(AuditLog.action == "redraw"))
    assert json.loads(log.detail)["reason"] == "名册更新" and json.loads(log.detail)["old"]["seed"] == old_seed

    first = cases(round_.id, kind="primary")[0]
    first.attempt_count = 1
    db.session.commit()
    with pytest.raises(DrawError, match="已有 1 个样本有拨打记录"):
        committed(redraw_round, round_.id, now=NOW, settings=SETTINGS, actor="admin")
    assert db.session.get(Round, round_.id).redraws == 1


def test_close_gives_open_cases_their_disposition_and_freezes(county_with_units):
    [outcome] = draw()
    round_id = outcome.round_id
    done = cases(round_id, kind="primary")[0]
    done.status, done.outcome = "done", "complete"
    db.session.commit()
    end = datetime(2026, 11, 30, 23, 59, tzinfo=TZ)
    assert committed(close_round, round_id, now=end, actor="scheduler", **closing_args()) is True
    round_ = db.session.get(Round, round_id)
    assert round_.status == "closed" and round_.closed_by == "scheduler"
    statuses = {(c.kind, c.status, c.outcome) for c in cases(round_id)}
    assert statuses == {("primary", "done", "complete"), ("primary", "closed", "open_at_close"),
                        ("backup", "reserve", None)}
    summary = json.loads(round_.summary)
    assert summary["小镇卫生院"] == {"primary:closed:open_at_close": 7}
    assert summary["新墙镇卫生院"]["primary:done:complete"] == 1
    assert committed(close_round, round_id, now=end, actor="scheduler", **closing_args()) is False
    with pytest.raises(DrawError, match="已结束"):
        committed(redraw_round, round_id, now=NOW, settings=SETTINGS, actor="admin")


def test_key_population_minimum_share(county, make_team):
    team = make_team(county, "新墙镇卫生院", "甲团队")
    keyed = add_residents(team, 6, labels=("hypertension",))
    add_residents(team, 60, labels=("general",))
    [outcome] = draw(settings=DrawSettings(key_min_share=0.5))
    primaries = cases(outcome.round_id, kind="primary")
    assert sum(1 for c in primaries if c.resident_id in keyed) >= 5
    round_ = db.session.get(Round, outcome.round_id)
    assert round_.key_population_min_share == 0.5 and verify_round(db.session, round_).ok


def test_call_list_files(county_with_units, tmp_path):
    county, big, _small = county_with_units
    naughty = add_residents(big[0], 1, name="=HYPERLINK(\"http://x\")", phone="07308221234")
    outcomes = draw(after_draw=lambda rid: write_call_list(db.session, rid, tmp_path))
    xlsx, csv = call_list_paths(tmp_path, county.name, MONTH)
    assert [str(xlsx), str(csv)] == outcomes[0].files
    assert xlsx.name == "2026-11-呼叫名单.xlsx" and xlsx.parent.name == "岳阳县"
    sheet = pd.read_excel(xlsx, dtype=str, keep_default_na=False, engine="calamine")
    assert list(sheet.columns) == COLUMNS
    all_cases = cases(outcomes[0].round_id)
    assert len(sheet) == len(all_cases) == 27
    assert list(sheet["序号"]) == [str(i) for i in range(1, 28)]
    # ordered by institution, team, then primaries before backups in their order
    keys = list(zip(sheet["机构"], sheet["团队"], sheet["样本类型"].str.startswith("备用"),
                    sheet["样本类型"].str.split().str[1].astype(int)))
    assert keys == sorted(keys)
    assert set(sheet["拨打日期"]) == {""} and set(sheet["备注"]) == {""}
    assert set(sheet["性别"]) <= {"男", "女"}
    assert all(phone.startswith(("138", "0730")) for phone in sheet["联系电话"])  # text, leading zero kept
    picked = {c.resident_id for c in all_cases}
    if naughty[0] in picked:
        assert "'=HYPERLINK(\"http://x\")" in set(sheet["姓名"])
    assert "=HYPERLINK(\"http://x\")" not in set(sheet["姓名"])
    raw = csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert len(pd.read_csv(csv, dtype=str, encoding="utf-8-sig")) == 27


def test_formula_in_a_name_is_neutralised_in_the_call_list(county, make_team, tmp_path):
    team = make_team(county, "新墙镇卫生院", "甲团队")
    add_residents(team, 1, name="=1+1")
    add_residents(team, 1, name="@SUM(A1)")
    [outcome] = draw()
    xlsx, csv = write_call_list(db.session, outcome.round_id, tmp_path)
    names = set(pd.read_excel(xlsx, dtype=str, engine="calamine")["姓名"])
    assert names == {"'=1+1", "'@SUM(A1)"}


def test_a_failed_export_leaves_no_file(county_with_units, tmp_path, monkeypatch):
    [outcome] = draw()
    county = county_with_units[0]
    xlsx, csv = call_list_paths(tmp_path, county.name, MONTH)

    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_excel", broken)
    with pytest.raises(OSError):
        write_call_list(db.session, outcome.round_id, tmp_path)
    assert not xlsx.exists() and not csv.exists()
    assert list(xlsx.parent.iterdir()) == []  # no temporary file left either


def test_a_failing_call_list_does_not_undo_the_draw(county_with_units):
    def fail(_round_id):
        raise OSError("disk full")

    [outcome] = draw(after_draw=fail)
    assert outcome.status == "drawn" and "呼叫名单文件写入失败" in outcome.message
    assert db.session.get(Round, outcome.round_id) is not None


def test_one_county_failing_does_not_stop_the_others(county_with_units, make_county, make_team, monkeypatch):
    other = make_county("华容县", "430623")
    add_residents(make_team(other, "东山镇卫生院", "己团队"), 15)
    import app.draws.services as services

    real = services._run_draw

    def flaky(session, round_, county, *args):
        if county.name == "岳阳县":
            raise RuntimeError("boom")
        return real(session, round_, county, *args)

    monkeypatch.setattr(services, "_run_draw", flaky)
    outcomes = {o.county: o for o in draw()}
    assert outcomes["岳阳县"].status == "failed" and "boom" in outcomes["岳阳县"].message
    assert outcomes["华容县"].status == "drawn"
    assert [r.county.name for r in db.session.scalars(select(Round))] == ["华容县"]
    assert db.session.scalar(select(func.count()).select_from(RoundInstitution).join(Round)
                             .where(Round.county_id == county_with_units[0].id)) == 0
