"""No clear ID number leaves the product in a column it was not meant for: an ID typed into
the phone or the label column is masked in the error report (csv and xlsx) and on the batch
page like one in the ID column, and one typed into an answer's free text is masked in the
exports."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from app.core.masking import scrub_free_text, scrub_ids
from app.extensions import db
from app.models import ImportBatch, Problem, Response
from app.reports.excel import build_monthly_report
from app.reports.problems import suggestion_of
from tests.draws_support import MONTH, NOW
from tests.reports_support import add_results
from tests.rosters import make_id, people, rows_of, to_15, write_csv, write_xlsx
from tests.test_web_roster import admin, batch_id_from, text, upload

__all__ = ["admin"]  # the fixture, shared with the roster page tests

CLEAR_ID = re.compile(r"(?<![0-9])(?:[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9])")
IN_PHONE = make_id("19790304", "517")  # ends in a check digit: 17 digits + [0-9X]
IN_LABEL = to_15(make_id("19680215", "246"))


def test_scrub_ids_keeps_only_the_last_four():
    assert scrub_ids("430621198001011234") == "**************1234"
    assert scrub_ids("证件43062119800101123X，电话") == "证件**************123X，电话"
    assert scrub_ids("43062119800101123x") == "**************123x"
    assert scrub_ids("430621800101123") == "*" * 11 + "1123"
    # not an ID: too short, too long, a phone, a date
    for text_ in ("4306211980010112", "4306211980010112345", "13912345678", "20261123", "第2026112301号"):
        assert scrub_ids(text_) == text_
    assert scrub_ids(None) == "" and scrub_ids("") == ""


def test_scrub_free_text_masks_ids_and_phones():
    assert scrub_free_text("身份证430621198001011234，电话13912345678") == "身份证**************1234，电话139****5678"


def _roster_with_ids_in_other_columns(tmp_path, writer):
    persons = people(3)
    persons[0].phone = IN_PHONE
    persons[1].labels = IN_LABEL
    return writer(tmp_path / f"ids{'.csv' if writer is write_csv else '.xlsx'}", rows_of(persons))


@pytest.mark.parametrize("writer", [write_csv, write_xlsx])
def test_an_id_in_the_phone_or_label_column_is_masked_in_the_report_and_on_the_page(
        client, admin, team, tmp_path, writer):
    preview_id = batch_id_from(upload(client, _roster_with_ids_in_other_columns(tmp_path, writer)).headers["Location"])

    page = text(client.get(f"/roster/batches/{preview_id}"))
    csv = client.get(f"/roster/batches/{preview_id}/report.csv")
    csv_text = csv.get_data().decode("utf-8-sig")
    csv.close()
    xlsx = client.get(f"/roster/batches/{preview_id}/report.xlsx")
    frame = pd.read_excel(io.BytesIO(xlsx.get_data()), dtype=str, engine="openpyxl", keep_default_na=False)
    xlsx.close()

    assert IN_PHONE not in page and IN_LABEL not in page and not CLEAR_ID.search(page)
    assert "*" * 14 + IN_PHONE[-4:] in page and "*" * 11 + IN_LABEL[-4:] in page
    assert not CLEAR_ID.search(csv_text)
    report = pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)
    assert report.values.tolist() == frame.values.tolist()
    by_column = dict(zip(report["列"], report["值"]))
    assert by_column["联系电话"] == "*" * 14 + IN_PHONE[-4:]
    assert by_column["人群分类"] == "*" * 11 + IN_LABEL[-4:]
    assert not any(CLEAR_ID.search(cell) for row in frame.values.tolist() for cell in row)
    assert len(report) == 2


def test_a_report_written_before_the_rule_is_masked_on_the_page(client, admin, team, tmp_path):
    preview_id = batch_id_from(upload(client, _roster_with_ids_in_other_columns(tmp_path, write_csv)).headers["Location"])
    batch = db.session.get(ImportBatch, preview_id)
    # the stored report as an older version wrote it: in clear
    path = Path(client.application.config["IMPORT_REPORTS_DIR"]) / f"{batch.error_report}.csv"
    path.write_text("工作表,行号,列,值,原因\n签约居民,4,联系电话,%s,号码无效\n" % IN_PHONE, "utf-8-sig")

    page = text(client.get(f"/roster/batches/{preview_id}"))

    assert IN_PHONE not in page and "*" * 14 + IN_PHONE[-4:] in page


@pytest.fixture
def answered(county, team):
    round_ = add_results(county, team, MONTH, [{"satisfaction": 5}, {"satisfaction": 2, "flags": "dissatisfied"}])
    responses = db.session.scalars(select(Response).order_by(Response.id)).all()
    answers = {"identity": "self", "aware": "yes", "knows_doctor": "yes", "services": ["follow_up"],
               "service_count": 1, "effect": "helpful", "satisfaction": "satisfied", "renew": "yes",
               "suggestion": f"我的身份证是{IN_PHONE}，老证{IN_LABEL}，电话13912345678", "wants_contact": "no"}
    responses[0].answers = json.dumps(answers, ensure_ascii=False)
    from app.calls.interview import sync_problem

    sync_problem(db.session, responses[1])
    db.session.flush()
    problem = db.session.scalar(select(Problem))
    problem.status, problem.note = "assigned", f"居民身份证{IN_PHONE}已核实"
    db.session.commit()
    return round_


def test_ids_in_free_text_are_masked_in_the_monthly_workbook(app, answered, county, tmp_path):
    path = build_monthly_report(db.session, MONTH, county.id, tmp_path / "r.xlsx", config=app.config,
                                settings=app.extensions["report_settings"],
                                questionnaires=app.extensions["questionnaires"], now=NOW)
    sheets = pd.read_excel(path, sheet_name=None, dtype=str, engine="openpyxl", keep_default_na=False, header=None)
    everything = [str(cell) for frame in sheets.values() for row in frame.values.tolist() for cell in row]

    assert not [cell for cell in everything if CLEAR_ID.search(cell)]
    masked_phone_id, masked_label_id = "*" * 14 + IN_PHONE[-4:], "*" * 11 + IN_LABEL[-4:]
    assert any(masked_phone_id in cell and masked_label_id in cell and "139****5678" in cell for cell in everything)
    assert any(f"居民身份证{masked_phone_id}已核实" == cell for cell in everything)


def test_the_suggestion_on_the_problem_list_is_scrubbed(app, answered):
    response = db.session.scalar(select(Response).order_by(Response.id))
    q = app.extensions["questionnaires"][response.questionnaire_version]
    shown = suggestion_of(q, response)
    assert not CLEAR_ID.search(shown) and "*" * 14 + IN_PHONE[-4:] in shown
