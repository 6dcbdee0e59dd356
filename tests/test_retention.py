"""The retention period (PERSONAL_DATA_RETENTION_MONTHS): the personal data of cases in rounds
closed longer ago, and of residents inactive as long, is erased; anonymous answers,
dispositions, reports and rankings stay exactly as they were; the draw's exclusion window
still holds; a dry run changes nothing; a second purge finds nothing."""
from __future__ import annotations

import json
import re
from datetime import date, datetime

import pandas as pd
import pytest
from sqlalchemy import func, select

from app.calls.interview import sync_problem
from app.draws.services import DrawSettings, draw_month_and_commit
from app.extensions import db
from app.models import (
    ERASED_TEXT,
    AnswerEdit,
    Attempt,
    AuditLog,
    Case,
    ImportBatch,
    Problem,
    Resident,
    Response,
    Round,
    SchedulerRun,
    resident_labels,
)
from app.privacy.cli import run_purge
from app.privacy.services import cutoff_for
from app.reports.board import board_rows
from app.reports.excel import build_monthly_report
from app.reports.indicators import unit_indicators
from app.reports.rankings import build_ranking
from app.scheduler.jobs import run_job
from tests.draws_support import NOW, add_residents, past_round
from tests.reports_support import add_results

OLD = "2024-09"  # closed on 1 October 2024: more than 24 months before NOW (23 November 2026)
RECENT = "2026-10"
ANSWERS = {"identity": "proxy_unable", "identity.detail": "儿子张小明", "aware": "yes", "satisfaction": "satisfied",
           "suggestion": "希望王医生多来，我家住幸福路8号，电话13912345678"}
NAMES_IN_TEXT = ("张小明", "幸福路", "13912345678")
RESIDENT_NAME = re.compile(r"居民\d+")  # how add_residents names people
FULL_OR_MASKED_PHONE = re.compile(r"(?<![\d.])1[3-9]\d[\d*]{4}\d{4}(?!\d)")
PERSONAL = {
    "cases": {"name", "phone", "phone2", "population_labels", "erased_at"},
    "responses": {"answers"},
    "attempts": {"note"},
    "problems": {"note"},
    "answer_edits": {"old_value", "new_value", "reason"},
    "rounds": {"erased_at"},
}
MODELS = {"cases": Case, "responses": Response, "attempts": Attempt, "problems": Problem,
          "answer_edits": AnswerEdit, "rounds": Round}


def sat(score: int, **extra) -> dict:
    return {"satisfaction": score, **extra}


def _fill_month(county, teams, month: str, closed_at: datetime, caller) -> Round:
    a, b = teams
    add_results(county, a, month, [sat(5)] * 6 + [sat(2, flags="dissatisfied"), sat(4)], outcomes=["refusal"],
                caller=caller)
    round_ = add_results(county, b, month, [sat(4)] * 3 + [sat(1, wants_contact=True, flags="dissatisfied,wants_contact")],
                         outcomes=["vacant", "no_answer"], caller=caller)
    round_.closed_at = closed_at
    cases = db.session.scalars(select(Case).where(Case.round_id == round_.id).order_by(Case.id)).all()
    for case in cases[:3]:
        case.phone2 = "0730-8221234"
        case.population_labels = "严重精神障碍、高血压"
    responses = db.session.scalars(select(Response).where(Response.round_id == round_.id).order_by(Response.id)).all()
    responses[0].answers = json.dumps(ANSWERS, ensure_ascii=False)
    responses[1].answers = json.dumps({"identity": "self", "aware": "yes", "satisfaction": "satisfied", "suggestion": ""})
    for attempt in db.session.scalars(select(Attempt).where(Attempt.round_id == round_.id).order_by(Attempt.id).limit(4)):
        attempt.note = "居民说下午再打，女儿电话13987654321"
    db.session.add(AnswerEdit(response_id=responses[0].id, item="suggestion", reason="居民张小明来电更正",
                              old_value=json.dumps({"suggestion": "旧的意见，住幸福路"}, ensure_ascii=False),
                              new_value=json.dumps({"suggestion": ANSWERS["suggestion"]}, ensure_ascii=False),
                              user_id=caller.id, at=closed_at))
    db.session.add(AnswerEdit(response_id=responses[0].id, item="satisfaction", reason="核实录音",
                              old_value=json.dumps({"satisfaction": "neutral"}), new_value=json.dumps({"satisfaction": "satisfied"}),
                              user_id=caller.id, at=closed_at))
    for response in db.session.scalars(select(Response).where(Response.round_id == round_.id, Response.flags.is_not(None))):
        sync_problem(db.session, response)
    db.session.flush()
    for problem in db.session.scalars(select(Problem).where(Problem.round_id == round_.id)):
        problem.status, problem.note = "closed", "已回访居民张小明，住幸福路"
    db.session.commit()
    return round_


@pytest.fixture
def months(county, make_team, make_user):
    """One county, two teams, an old closed round and a recent one, each with free text in
    answers, attempt notes, problem notes and answer edits."""
    teams = (make_team(county, "新墙镇卫生院", "甲团队"), make_team(county, "小镇卫生院", "丙团队"))
    caller = make_user("caller1", "caller", county)
    old = _fill_month(county, teams, OLD, datetime(2024, 9, 30, 16, 0), caller)
    recent = _fill_month(county, teams, RECENT, datetime(2026, 10, 31, 16, 0), caller)
    return {"county": county, "teams": teams, "old": old.id, "recent": recent.id, "caller": caller}


def rows(round_id: int) -> dict[str, dict[int, dict]]:
    """Every column of every row of the round's cases, responses, attempts, problems and edits."""
    db.session.expire_all()
    out = {}
    for table, model in MODELS.items():
        if model is Round:
            stmt = select(Round).where(Round.id == round_id)
        elif model is AnswerEdit:
            stmt = select(AnswerEdit).join(Response, Response.id == AnswerEdit.response_id).where(Response.round_id == round_id)
        else:
            stmt = select(model).where(model.round_id == round_id)
        out[table] = {row.id: {c.key: getattr(row, c.key) for c in model.__table__.columns} for row in db.session.scalars(stmt)}
    return out


def purge(app, now=NOW):
    return run_purge(app, now=now, actor="test")


def test_cutoff_is_the_same_local_day_months_before():
    assert cutoff_for(NOW, 24) == datetime(2024, 11, 22, 16, 0)  # 23 Nov 2024 00:00 in Shanghai
    assert cutoff_for(datetime(2026, 3, 31, 12, 0), 1) == datetime(2026, 2, 27, 16, 0)  # 28 Feb, local


def test_purge_erases_the_personal_columns_of_old_rounds_only(app, months):
    before_old, before_recent = rows(months["old"]), rows(months["recent"])
    result = purge(app)
    after_old, after_recent = rows(months["old"]), rows(months["recent"])

    assert after_recent == before_recent  # a recent round: untouched
    # the old round: only the personal columns changed, every other column is as it was
    for table, personal in PERSONAL.items():
        assert after_old[table].keys() == before_old[table].keys()
        for row_id, was in before_old[table].items():
            now_ = after_old[table][row_id]
            assert {k: v for k, v in now_.items() if k not in personal} == {k: v for k, v in was.items() if k not in personal}
    for was, case in ((before_old["cases"][i], after_old["cases"][i]) for i in before_old["cases"]):
        assert (case["name"], case["phone"], case["phone2"], case["population_labels"]) == (ERASED_TEXT, "", None, ERASED_TEXT)
        assert case["age"] == was["age"] and case["erased_at"] is not None
    assert after_old["rounds"][months["old"]]["erased_at"] is not None
    # free text is gone, the choices stay
    answers = [json.loads(r["answers"]) for r in after_old["responses"].values()]
    first = next(a for a in answers if a.get("identity") == "proxy_unable")
    assert first == {**ANSWERS, "identity.detail": ERASED_TEXT, "suggestion": ERASED_TEXT}
    assert next(a for a in answers if a.get("identity") == "self")["suggestion"] == ""  # empty stays empty
    assert {r["note"] for r in after_old["attempts"].values()} == {ERASED_TEXT, None}
    assert {r["note"] for r in after_old["problems"].values()} == {ERASED_TEXT}
    edits = {e["item"]: e for e in after_old["answer_edits"].values()}
    assert json.loads(edits["suggestion"]["old_value"]) == {"suggestion": ERASED_TEXT}
    assert json.loads(edits["suggestion"]["new_value"]) == {"suggestion": ERASED_TEXT}
    assert (edits["satisfaction"]["old_value"], edits["satisfaction"]["new_value"]) == (
        json.dumps({"satisfaction": "neutral"}), json.dumps({"satisfaction": "satisfied"}))
    assert {e["reason"] for e in edits.values()} == {ERASED_TEXT}
    text = json.dumps({t: list(r.values()) for t, r in after_old.items()}, default=str, ensure_ascii=False)
    assert not any(s in text for s in NAMES_IN_TEXT)
    assert not RESIDENT_NAME.search(text)
    # the purge is audit-logged with counts only
    [entry] = db.session.scalars(select(AuditLog).where(AuditLog.action == "privacy.purge")).all()
    detail = json.loads(entry.detail)
    assert detail["months"][OLD]["cases"] == len(before_old["cases"]) and detail["months"][OLD]["attempts"] == 4
    assert not any(s in entry.detail for s in NAMES_IN_TEXT) and not RESIDENT_NAME.search(entry.detail)
    assert result.plan.months[0].month == OLD


def _reports(app, county_id: int, round_id: int, path) -> dict:
    month = OLD
    config = dict(config=app.config, settings=app.extensions["report_settings"],
                  questionnaires=app.extensions["questionnaires"], now=NOW)
    out = {"board": repr(board_rows(db.session, [round_id], NOW))}
    for level in ("team", "institution", "county", "city"):
        out[f"indicators.{level}"] = repr(unit_indicators(db.session, level, [month]))
    for level in ("team", "institution"):
        for indicator in ("satisfaction", "aware", "knows_doctor", "fulfilment", "effect"):
            ranking = build_ranking(db.session, level, month, indicator=indicator, county_id=county_id, min_n=1)
            out[f"ranking.{level}.{indicator}"] = repr(ranking)
    build_monthly_report(db.session, month, county_id, path, **config)
    out["workbook"] = pd.read_excel(path, sheet_name=None, engine="calamine", header=None)
    db.session.rollback()
    return out


def test_reports_and_rankings_of_an_old_month_are_identical(app, months, tmp_path):
    county_id = months["county"].id
    before = _reports(app, county_id, months["old"], tmp_path / "before.xlsx")
    purge(app)
    after = _reports(app, county_id, months["old"], tmp_path / "after.xlsx")
    for key in before:
        if key != "workbook":
            assert after[key] == before[key], key
    # the workbook: every sheet identical, except the personal columns of the lists of people
    personal = {"问题清单": {"姓名", "联系电话", "整改情况"}, "明细": {"姓名", "人群类别", "联系电话", "接听人身份", "意见建议"}}
    assert list(after["workbook"]) == list(before["workbook"])
    for sheet, frame in before["workbook"].items():
        new = after["workbook"][sheet]
        if sheet == "说明":  # the audit chain's head, which the purge's own audit row moves on
            continue
        header = list(frame.iloc[1])
        assert header == list(new.iloc[1])
        erased = [i for i, title in enumerate(header) if title in personal.get(sheet, ())]
        assert {header[i] for i in erased} == personal.get(sheet, set()), sheet
        keep = [i for i in range(frame.shape[1]) if i not in erased]
        pd.testing.assert_frame_equal(new.iloc[:, keep], frame.iloc[:, keep], obj=sheet)
        if "姓名" in header:
            names = new.iloc[2:, header.index("姓名")]
            assert len(names) and set(names) == {ERASED_TEXT}, sheet
    cells = " ".join(str(v) for f in after["workbook"].values() for v in f.to_numpy().ravel() if not pd.isna(v))
    assert not any(s in cells for s in NAMES_IN_TEXT) and not RESIDENT_NAME.search(cells)
    assert not FULL_OR_MASKED_PHONE.search(cells)


def test_dry_run_changes_nothing_and_prints_counts(app, months, monkeypatch):
    monkeypatch.setattr("app.privacy.cli.clock_now", lambda: NOW)
    before = (rows(months["old"]), rows(months["recent"]))
    result = app.test_cli_runner().invoke(args=["privacy", "purge", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (rows(months["old"]), rows(months["recent"])) == before
    assert db.session.scalar(select(func.count()).select_from(AuditLog)) == 0
    out = result.output
    cases = len(before[0]["cases"])
    assert f"{OLD}：轮次 1，样本 {cases}，有备注的拨打记录 4，含文字回答的问卷 1，答案更正记录 2，有整改说明的问题 2" in out
    assert RECENT not in out and "试运行" in out
    assert not any(s in out for s in NAMES_IN_TEXT) and not RESIDENT_NAME.search(out)


def test_purge_command_then_again_is_idempotent(app, months, monkeypatch):
    monkeypatch.setattr("app.privacy.cli.clock_now", lambda: NOW)
    first = app.test_cli_runner().invoke(args=["privacy", "purge"])
    assert first.exit_code == 0 and "已删除" in first.output, first.output
    after_first = rows(months["old"])
    second = app.test_cli_runner().invoke(args=["privacy", "purge"])
    assert second.exit_code == 0 and "没有超过保存期限的个人信息" in second.output, second.output
    assert rows(months["old"]) == after_first
    assert db.session.scalar(select(func.count()).where(AuditLog.action == "privacy.purge")) == 1


def test_the_scheduler_job_purges_and_records_its_run(app, months):
    run = run_job(app, "purge", now=NOW)
    assert run.status == "success", run.error
    assert OLD in run.result and "样本" in run.result
    db.session.rollback()
    assert db.session.get(Round, months["old"]).erased_at is not None
    assert db.session.get(Round, months["recent"]).erased_at is None
    again = run_job(app, "purge", now=NOW)
    assert "没有超过保存期限" in again.result
    db.session.rollback()
    assert [r.job for r in db.session.scalars(select(SchedulerRun))] == ["purge", "purge"]


def test_pages_say_the_name_was_erased(app, months, client, make_user, login):
    make_user("sup", "supervisor", months["county"])
    purge(app)
    login("sup")
    response_id = db.session.scalar(select(Response.id).where(Response.round_id == months["old"]).order_by(Response.id))
    page = client.get(f"/calls/response/{response_id}/view").get_data(as_text=True)
    assert ERASED_TEXT in page and not any(s in page for s in NAMES_IN_TEXT)
    case_id = db.session.scalar(select(Response.case_id).where(Response.id == response_id))
    page = client.get(f"/calls/case/{case_id}").get_data(as_text=True)
    assert ERASED_TEXT in page and "13987654321" not in page


def test_exclusion_window_still_excludes_a_resident_of_a_purged_month(app, county, make_team, monkeypatch):
    """Retention of 1 month, exclusion of 6: a resident who completed in September 2026 is
    still excluded from November's draw after September's round was erased."""
    monkeypatch.setitem(app.config, "PERSONAL_DATA_RETENTION_MONTHS", 1)
    team = make_team(county, "新墙镇卫生院", "甲团队")
    surveyed, *others = add_residents(team, 11)
    past = past_round(county, "2026-09", [surveyed], team)
    past.closed_at = datetime(2026, 9, 30, 16, 0)
    db.session.commit()
    purge(app)
    db.session.expire_all()
    assert db.session.get(Case, db.session.scalar(select(Case.id).where(Case.round_id == past.id))).name == ERASED_TEXT
    assert db.session.get(Resident, surveyed).erased_at is None  # active, contract in force: kept whole
    [outcome] = draw_month_and_commit(db.session, "2026-11", now=NOW, settings=DrawSettings(exclusion_months=6),
                                      actor="test", county_ids=[county.id])
    assert outcome.status == "drawn", outcome.message
    drawn = set(db.session.scalars(select(Case.resident_id).join(Round).where(Round.month == "2026-11")))
    assert drawn == set(others)  # ten others, all drawn; the surveyed one excluded


def test_inactive_residents_are_erased_and_come_back_with_an_import(app, county, make_team):
    team = make_team(county, "新墙镇卫生院", "甲团队")
    old_batch = ImportBatch(filename="a.xlsx", sha256="0" * 64, created_by="t", status="applied",
                            started_at=datetime(2024, 5, 1))
    new_batch = ImportBatch(filename="b.xlsx", sha256="1" * 64, created_by="t", status="applied",
                            started_at=datetime(2026, 10, 1))
    db.session.add_all([old_batch, new_batch])
    db.session.commit()
    [ended] = add_residents(team, 1, ("hypertension",), contract_end=date(2024, 6, 30), last_seen_batch_id=new_batch.id)
    [gone] = add_residents(team, 1, ("hypertension",), active=False, last_seen_batch_id=old_batch.id, address="幸福路8号",
                           phone2="0730-8221234")
    [lately_gone] = add_residents(team, 1, ("hypertension",), active=False, last_seen_batch_id=new_batch.id)
    [quiet] = add_residents(team, 1, ("hypertension",), last_seen_batch_id=old_batch.id)  # active, contract in force
    kept = {rid: _resident(rid) for rid in (lately_gone, quiet)}
    hashes = {rid: _resident(rid)["id_hash"] for rid in (ended, gone)}
    births = {rid: _resident(rid)["birth_date"] for rid in (ended, gone)}

    dry = run_purge(app, now=NOW, actor="test", dry_run=True)
    assert dry.plan.residents == 2 and _resident(gone)["erased_at"] is None
    result = purge(app)
    assert result.plan.residents == 2
    for rid in (ended, gone):
        row = _resident(rid)
        assert (row["name"], row["phone"], row["phone2"], row["address"], row["id_masked"]) == (ERASED_TEXT, "", None, None, "")
        assert row["id_hash"] == hashes[rid] and row["birth_date"] == date(births[rid].year, 1, 1)
        assert row["erased_at"] is not None and _labels(rid) == 0
    assert {rid: _resident(rid) for rid in kept} == kept
    assert _labels(quiet) == 1 and _labels(lately_gone) == 1
    assert purge(app).plan.residents == 0  # idempotent


def _resident(rid: int) -> dict:
    db.session.expire_all()
    row = db.session.get(Resident, rid)
    return {c.key: getattr(row, c.key) for c in Resident.__table__.columns}


def _labels(rid: int) -> int:
    return db.session.scalar(select(func.count()).select_from(resident_labels).where(resident_labels.c.resident_id == rid))


def test_retention_months_must_be_positive(make_app):
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="PERSONAL_DATA_RETENTION_MONTHS"):
        make_app(PERSONAL_DATA_RETENTION_MONTHS=0)


def test_an_erased_resident_is_filled_again_by_a_later_import(app, team, tmp_path):
    from app.roster.batch import ImportOptions
    from app.roster.context import import_context
    from app.roster.importer import import_and_commit
    from tests.helpers import TODAY
    from tests.rosters import people, rows_of, write_csv

    ctx = import_context(app, actor="test")
    ctx.today = TODAY
    person = people(1)[0]
    path = write_csv(tmp_path / "roster.csv", rows_of([person]))
    import_and_commit(db.session, path, ImportOptions(), ctx)
    rid = db.session.scalar(select(Resident.id))
    first = _resident(rid)
    # deactivated by a full import long ago, never seen since
    db.session.execute(ImportBatch.__table__.update().values(started_at=datetime(2024, 5, 1)))
    db.session.get(Resident, rid).active = False
    db.session.commit()
    purge(app)
    assert _resident(rid)["name"] == ERASED_TEXT and _labels(rid) == 0

    result = import_and_commit(db.session, path, ImportOptions(), ctx)
    assert result.updated == 1
    again = _resident(rid)
    assert again["erased_at"] is None and again["active"]
    assert {k: again[k] for k in ("name", "phone", "address", "id_masked", "birth_date", "id_hash")} == \
        {k: first[k] for k in ("name", "phone", "address", "id_masked", "birth_date", "id_hash")}
    assert _labels(rid) == 1


def test_call_lists_and_reports_of_erased_rounds_are_deleted(app, months):
    from app.draws.calllists import call_list_paths, write_call_list
    from app.reports.excel import report_filename, reports_dir

    old = write_call_list(db.session, months["old"], app.config["SAMPLE_LISTS_DIR"])
    recent = write_call_list(db.session, months["recent"], app.config["SAMPLE_LISTS_DIR"])
    report = reports_dir(app.config) / report_filename(OLD, months["county"].name)
    report.write_bytes(b"x")
    assert set(old) == set(call_list_paths(app.config["SAMPLE_LISTS_DIR"], months["county"].name, OLD))
    result = purge(app)
    assert not any(p.exists() for p in old) and not report.exists()
    assert all(p.exists() for p in recent)
    assert set(result.removed) == {*old, report}


def test_an_unknown_questionnaire_version_refuses_the_purge_in_chinese(app, months, monkeypatch):
    monkeypatch.setattr("app.privacy.cli.clock_now", lambda: NOW)
    monkeypatch.setitem(app.extensions, "questionnaires", {})
    before = rows(months["old"])
    result = app.test_cli_runner().invoke(args=["privacy", "purge"])
    assert result.exit_code == 1 and "找不到问卷版本 v1" in result.output and "Traceback" not in result.output
    assert rows(months["old"]) == before


def test_old_audit_details_with_free_text_are_erased_and_the_chain_still_verifies(app, months):
    from app.audit.chain import verify_chain
    from app.models import audit

    old_at, recent_at = datetime(2024, 10, 2, 8, 0), datetime(2026, 11, 2, 8, 0)
    quoted = {"item": "suggestion", "old": "旧的意见，住幸福路", "new": "居民张小明", "reason": "居民来电更正"}
    old_edit = audit(db.session, "answer_edit", "caller1", target="response:1", detail=quoted, at=old_at)
    old_draw = audit(db.session, "draw", "scheduler", target="round:1", detail={"primaries": 10}, at=old_at)
    recent_edit = audit(db.session, "answer_edit", "caller1", target="response:2", detail=quoted, at=recent_at)
    db.session.commit()
    ids = (old_edit.id, old_draw.id, recent_edit.id)
    kept = {i: db.session.get(AuditLog, i).detail for i in ids[1:]}
    assert verify_chain(db.session).ok

    result = purge(app)
    assert result.plan.audit_details == 1
    db.session.expire_all()
    erased = db.session.get(AuditLog, ids[0])
    assert erased.detail == ERASED_TEXT and erased.erased_at is not None
    assert {i: db.session.get(AuditLog, i).detail for i in ids[1:]} == kept
    report = verify_chain(db.session)
    assert report.ok, report.message()
