"""Roster import (app.roster.importer.import_and_commit) against the real database: messy
export formats, validation and the error report, idempotent upserts, --full, atomicity,
dry runs and unreadable files."""
from __future__ import annotations

import gc
import re
import warnings
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import String, Text, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text as text_

from app.extensions import db
from app.models import AuditLog, County, ImportBatch, Institution, Resident, Team, resident_labels
from app.roster import fresh_load, importer, staging
from app.roster.context import import_context
from app.core.masking import hash_id, mask_id
from app.roster.normalize import open_roster
from app.core.spreadsheets import REPORT_COLUMNS
from app.roster.importer import import_and_commit
from app.roster.batch import ImportFailed, ImportOptions
from tests.helpers import TODAY, resident_count
from tests.rosters import (
    HEADER,
    INSTITUTION,
    OTHER_TEAM,
    TEAM,
    VARIANT_HEADER,
    Person,
    bad_check_digit,
    fullwidth,
    id_ending,
    make_id,
    people,
    rows_of,
    to_15,
    write_csv,
    write_xls,
    write_xlsx,
    xlsx_rows,
)

MASKED_ID = re.compile(r"^\*{14}\d{3}[\dX]$")


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def ctx(app):
    context = import_context(app, actor="test")
    context.today = TODAY
    return context


@pytest.fixture
def other_team(county, team, make_team):
    return make_team(county, INSTITUTION, OTHER_TEAM)


def run(path, ctx, **options):
    result = import_and_commit(db.session, path, ImportOptions(**options), ctx)
    assert result.read == result.imported + result.updated + result.unchanged + result.rejected
    assert result.rejected == len({(r.sheet, r.row) for r in result.rejections})
    return result


def resident(ctx, id18: str) -> Resident:
    db.session.expire_all()
    found = db.session.scalar(select(Resident).where(Resident.id_hash == hash_id(ctx.hash_key, id18.upper())))
    assert found is not None, f"no resident {mask_id(id18)}"
    return found


def label_codes(r: Resident) -> set[str]:
    return {label.code for label in r.labels}


def residents_snapshot() -> dict[str, dict]:
    """Every column of every resident (keyed by hash) and their label pairs."""
    db.session.expire_all()
    rows = db.session.execute(select(Resident.__table__)).mappings().all()
    pairs = db.session.execute(select(resident_labels.c.resident_id, resident_labels.c.label_id)).all()
    labels: dict[int, set[int]] = {}
    for rid, lid in pairs:
        labels.setdefault(rid, set()).add(lid)
    return {r["id_hash"]: {**dict(r), "labels": labels.get(r["id"], set())} for r in rows}


def table_counts() -> dict[str, int]:
    db.session.expire_all()
    return {t.name: db.session.scalar(select(func.count()).select_from(t)) for t in db.metadata.sorted_tables}


def all_text_values() -> list[str]:
    """Every non-empty value of every text column of every table."""
    values = []
    for table in db.metadata.sorted_tables:
        cols = [c for c in table.columns if isinstance(c.type, (String, Text))]
        if not cols:
            continue
        for row in db.session.execute(select(*cols)):
            values.extend(str(v) for v in row if v)
    return values


def assert_no_clear_ids(ids: list[str]) -> None:
    values = all_text_values()
    assert values, "nothing to scan"
    for ident in ids:
        plain = ident.translate(str.maketrans("０１２３４５６７８９", "0123456789")).upper()
        for needle in (plain, plain.lower(), plain[:17], plain[6:14] + plain[14:17]):
            hits = [v for v in values if needle in v]
            assert not hits, f"clear ID fragment stored: {hits[:3]}"


def read_report(result) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The error report, both files: (xlsx, csv) as text frames."""
    assert result.error_report is not None and result.error_report.suffix == ".xlsx"
    xlsx = pd.read_excel(result.error_report, sheet_name="错误行", dtype=str, engine="openpyxl").fillna("")
    csv_path = result.error_report.with_suffix(".csv")
    assert csv_path.exists()
    csv = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(xlsx.columns) == REPORT_COLUMNS == list(csv.columns)
    assert xlsx.values.tolist() == csv.values.tolist()
    return xlsx, csv


def reasons_by_row(result) -> dict[int, list[tuple[str, str, str]]]:
    out: dict[int, list[tuple[str, str, str]]] = {}
    for r in result.rejections:
        out.setdefault(r.row, []).append((r.column, r.value, r.reason))
    return out


# ---------------------------------------------------------------------------
# Formats: what lands in the database
# ---------------------------------------------------------------------------


def test_messy_xlsx_lands_residents_with_right_fields(app, ctx, team, other_team, tmp_path):
    a = Person("张三", id_ending("123X").lower(), phone="+86 138 0013 8000", labels="高血压、2型糖尿病", start="2026/3/1")
    b = Person(
        "李四",
        make_id("19500315", "122"),
        phone="139-0013-9000",
        labels="65岁及以上老年人；高血压/脱贫人口",
        start="2026年3月5日",
        address="新墙村5组",
    )
    c_id = make_id("19900720", "345")
    c = Person("王 五", fullwidth(c_id), phone=fullwidth("13700137000"), labels="", start="20260310")
    d = Person("赵六", make_id("20220601", "468"), phone="0730 822 1234", team=OTHER_TEAM, labels="0-6岁儿童，残疾人")
    e_id = make_id("19700101", "579")
    e = Person("钱七", e_id, phone=13600136000, labels="一般人群")  # a phone Excel stored as a number
    persons = [a, b, c, d, e]
    rows = rows_of(persons, VARIANT_HEADER)
    rows[4][VARIANT_HEADER.index("签约时间")] = date(2026, 4, 2)  # a real date cell
    path = write_xlsx(
        tmp_path / "花名册.xlsx", rows, VARIANT_HEADER, blank_lines_after=(0, 2), merge_column="机构名称", footer="合计：5人"
    )

    result = run(path, ctx)

    assert (result.read, result.imported, result.rejected) == (5, 5, 0), result.rejections
    assert result.error_report is None
    ra = resident(ctx, a.id)
    assert ra.name == "张三"
    assert (ra.sex, ra.birth_date) == ("M", date(1950, 1, 9))
    assert ra.id_masked == "**************123X"
    assert ra.phone == "13800138000" and ra.phone2 is None
    assert ra.team_id == team.id and ra.team.institution.name == INSTITUTION
    assert ra.doctor_name == "张伟" and ra.address == "新墙村3组"
    assert (ra.contract_start, ra.contract_end) == (date(2026, 3, 1), date(2027, 2, 28))
    assert label_codes(ra) == {"hypertension", "diabetes"}
    assert ra.active and not ra.do_not_call

    rb = resident(ctx, b.id)
    assert (rb.sex, rb.birth_date, rb.phone) == ("F", date(1950, 3, 15), "13900139000")
    assert rb.contract_start == date(2026, 3, 5) and rb.address == "新墙村5组"
    assert label_codes(rb) == {"elderly", "hypertension", "poverty"}
    assert [label.name for label in rb.labels] == ["65岁及以上老年人", "高血压", "脱贫人口/监测对象"]

    rc = resident(ctx, c_id)  # full-width digits in the file
    assert rc.name == "王五"
    assert (rc.sex, rc.birth_date, rc.phone) == ("M", date(1990, 7, 20), "13700137000")
    assert rc.contract_start == date(2026, 3, 10)
    assert label_codes(rc) == {"general"}  # an empty cell is the general population

    rd = resident(ctx, d.id)
    assert rd.team_id == other_team.id and rd.phone == "07308221234"
    assert (rd.sex, rd.birth_date) == ("F", date(2022, 6, 1))
    assert label_codes(rd) == {"child", "disabled"}

    re_ = resident(ctx, e_id)
    assert re_.phone == "13600136000" and re_.contract_start == date(2026, 4, 2)
    assert label_codes(re_) == {"general"}

    for r in (ra, rb, rc, rd, re_):
        assert MASKED_ID.match(r.id_masked), r.id_masked
        assert len(r.id_hash) == 32
    assert_no_clear_ids([p.id for p in persons])


def test_xls_with_title_and_merged_institution_cells(app, ctx, team, tmp_path):
    persons = people(4, labels="高血压;2型糖尿病")
    persons[1].phone = 13800138001  # a number cell
    rows = rows_of(persons)
    rows[2][HEADER.index("身份证号")] = bad_check_digit(persons[2].id)
    path = write_xls(tmp_path / "old.xls", rows, merge_column="签约机构")

    result = run(path, ctx)

    assert (result.read, result.imported, result.rejected) == (4, 3, 1)
    [rejection] = result.rejections
    # title row 1, blank row 2, header row 3: the third resident is on sheet row 6
    assert (rejection.sheet, rejection.row, rejection.column) == ("Sheet1", 6, "身份证号")
    assert rejection.reason == "身份证号校验位不符，可能录入有误"
    assert rejection.value == mask_id(rows[2][1]) and MASKED_ID.match(rejection.value)
    for p in (persons[0], persons[1], persons[3]):  # the merged cell reached every row
        r = resident(ctx, p.id)
        assert r.team_id == team.id
        assert label_codes(r) == {"hypertension", "diabetes"}
    assert resident(ctx, persons[1].id).phone == "13800138001"
    assert_no_clear_ids([p.id for p in persons])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_encodings_and_variant_headers(app, ctx, team, tmp_path, encoding):
    persons = people(3)
    persons[0].labels = "高血压、65岁及以上老年人"
    persons[1].id = persons[1].id[:17] + "x" if persons[1].id.endswith("X") else persons[1].id
    persons[2].address = "新墙村·龙湾组"
    rows = rows_of(persons, VARIANT_HEADER)
    rows.append(Person("", make_id("19800101", "111")).row(VARIANT_HEADER))  # empty name, line 7
    path = write_csv(tmp_path / f"roster-{encoding}.csv", rows, VARIANT_HEADER, encoding=encoding, title="岳阳县签约居民花名册")

    result = run(path, ctx)

    assert (result.read, result.imported, result.rejected) == (4, 3, 1)
    [rejection] = result.rejections
    assert (rejection.sheet, rejection.row, rejection.column, rejection.reason) == ("", 7, "姓名", "姓名为空")
    r0 = resident(ctx, persons[0].id)
    assert r0.name == persons[0].name and r0.team_id == team.id
    assert label_codes(r0) == {"hypertension", "elderly"}
    assert resident(ctx, persons[2].id).address == "新墙村·龙湾组"
    assert_no_clear_ids([p.id for p in persons])


def test_fifteen_digit_id_is_converted_and_matches_its_18_digit_form(app, ctx, team, tmp_path):
    id18 = make_id("19800101", "124")
    first = write_csv(tmp_path / "a.csv", [Person("老号码", to_15(id18)).row()])
    second = write_csv(tmp_path / "b.csv", [Person("老号码", id18).row()])

    assert run(first, ctx).imported == 1
    r = resident(ctx, id18)
    assert r.id_masked == "**************1248"
    assert (r.birth_date, r.sex) == (date(1980, 1, 1), "F")

    again = run(second, ctx)
    assert (again.imported, again.updated, again.unchanged) == (0, 0, 1)
    assert resident_count() == 1


def test_chunked_import_keeps_row_numbers_and_finds_duplicates_across_chunks(app, ctx, team, tmp_path):
    ctx.chunk_rows = 3
    persons = people(7)
    rows = rows_of(persons)
    rows.append(rows_of([persons[1]])[0])  # line 9 repeats line 3, two chunks later
    rows[5][HEADER.index("联系电话")] = "12345"  # line 7
    path = write_csv(tmp_path / "chunks.csv", rows)

    result = run(path, ctx)

    assert (result.read, result.imported, result.rejected) == (8, 6, 2)
    by_row = reasons_by_row(result)
    assert by_row[7] == [("联系电话", "12345", "电话号码格式不正确（应为11位手机号或带区号的固定电话）")]
    assert by_row[9] == [("身份证号", mask_id(persons[1].id), "与第3行的身份证号重复，已保留第一次出现的行")]
    assert resident_count() == 6


@pytest.mark.parametrize("path_taken", ["direct_load", "direct_load_big", "staged"])
def test_duplicate_check_is_exact_when_hash_values_collide(app, ctx, team, tmp_path, monkeypatch, path_taken):
    """Duplicates are spotted by the hashes' Python hash values, then checked exactly: with
    every value colliding, every row is a candidate, yet only the real repeats are rejected
    (a first import writes rows as it goes, a later one stages them: both paths; a big first
    import does it without the hash index, which it builds at the end)."""
    first_import = path_taken != "staged"
    if not first_import:
        run(write_csv(tmp_path / "earlier.csv", rows_of(people(1, first_seq=900))), ctx)
    if path_taken == "direct_load_big":
        monkeypatch.setattr(fresh_load, "BULK_KEYS_MIN_NEW", 2)
    watch = staging.DuplicateWatch
    for module in (importer, fresh_load):  # the staged path's watch, and the first import's
        monkeypatch.setattr(module, "DuplicateWatch", lambda: watch(key=lambda _value: 0))
    ctx.chunk_rows = 3
    persons = people(6)
    rows = rows_of(persons)
    rows.append(rows_of([persons[4]])[0])  # line 8 repeats line 6 (another chunk)
    rows.append(rows_of([persons[0]])[0])  # line 9 repeats line 2
    rows.append(rows_of([persons[0]])[0])  # line 10 too, in the same chunk as line 9
    path = write_csv(tmp_path / "collide.csv", rows)

    result = run(path, ctx)

    assert (result.read, result.imported, result.rejected) == (9, 6, 3)
    first_of = {8: (4, 6), 9: (0, 2), 10: (0, 2)}
    assert reasons_by_row(result) == {
        line: [("身份证号", mask_id(persons[p].id), f"与第{kept}行的身份证号重复，已保留第一次出现的行")]
        for line, (p, kept) in first_of.items()
    }
    assert resident_count() == 6 + (0 if first_import else 1)


# ---------------------------------------------------------------------------
# Rejections and the error report
# ---------------------------------------------------------------------------


def test_every_kind_of_bad_row_is_rejected_with_its_reason(app, ctx, team, tmp_path):
    good = people(3)
    base = people(14, first_seq=200, birth_year=1970)
    numeric_id = make_id("19800101", "130")
    assert numeric_id[-1] != "X"
    cases = [
        # (person, column, value shown in the report, reason)
        (Person("甲", bad_check_digit(base[0].id)), "身份证号", mask_id(bad_check_digit(base[0].id)), "身份证号校验位不符，可能录入有误"),
        (Person("乙", int(numeric_id)), "身份证号", None, "身份证号被存成了数字，末几位已丢失：请把该列设为文本格式后重新导出"),
        (Person("丙", "43062119800101"), "身份证号", None, "身份证号应为18位（末位可为X）或15位旧号码"),
        (Person("", base[3].id), "姓名", "", "姓名为空"),
        (Person("丁", base[4].id, phone="12345"), "联系电话", "12345", "电话号码格式不正确（应为11位手机号或带区号的固定电话）"),
        (Person("戊", base[5].id, phone=""), "联系电话", "", "联系电话为空"),
        (Person("己", base[6].id, phone="8221234"), "联系电话", "8221234", "固定电话缺少区号"),
        (
            Person("庚", base[7].id, institution="火星镇卫生院"),
            "签约机构",
            "火星镇卫生院",
            "机构“火星镇卫生院”在岳阳县不存在（可选择“自动新建机构和团队”）",
        ),
        (
            Person("辛", base[8].id, team="王五家庭医生团队"),
            None,  # the column is checked in test_unknown_team_is_reported_in_the_team_column
            None,
            "团队“王五家庭医生团队”在新墙镇卫生院不存在（可选择“自动新建机构和团队”）",
        ),
        (Person("壬", base[9].id, start="2026-12-01"), "签约日期", "2026-12-01", "签约日期晚于今天"),
        (Person("癸", base[10].id, start="2026-13-45"), "签约日期", "2026-13-45", "签约日期无法识别"),
        (Person("子", base[11].id, labels="高血压、火星人"), "人群分类", "高血压、火星人", "人群分类不在配置的词表中：火星人"),
        (Person("丑", good[0].id), "身份证号", mask_id(good[0].id), f"与第{xlsx_rows()}行的身份证号重复，已保留第一次出现的行"),
        (Person("寅", base[12].id, phone="139 0000 0000 ext"), "联系电话", None, "电话号码格式不正确（应为11位手机号或带区号的固定电话）"),
    ]
    rows = rows_of(good) + [p.row() for p, *_ in cases]
    path = write_xlsx(tmp_path / "bad.xlsx", rows)

    result = run(path, ctx, county="岳阳县")

    assert result.read == len(good) + len(cases)
    assert (result.imported, result.updated, result.unchanged) == (3, 0, 0)
    assert result.rejected == len(cases)
    by_row = reasons_by_row(result)
    first = xlsx_rows()
    assert sorted(by_row) == [first + len(good) + i for i in range(len(cases))]
    for i, (person, column, value, reason) in enumerate(cases):
        [(got_column, got_value, got_reason)] = by_row[first + len(good) + i]
        assert got_reason == reason, (i, got_reason)
        if column is not None:
            assert got_column == column, (i, got_column)
        if value is not None:
            assert got_value == value, (i, got_value)
    assert resident_count() == 3
    assert {r.name for r in db.session.scalars(select(Resident))} == {p.name for p in good}

    xlsx, csv = read_report(result)
    assert len(xlsx) == len(cases)
    assert [int(n) for n in xlsx["行号"]] == sorted(by_row)
    assert set(xlsx["工作表"]) == {"签约居民"}
    assert set(xlsx["原因"]) == {reason for *_, reason in cases}
    for value, column in zip(xlsx["值"], xlsx["列"]):
        if column == "身份证号":
            assert "*" in value and "19800101" not in value and "1970" not in value, value
    report_text = result.error_report.with_suffix(".csv").read_text(encoding="utf-8-sig")
    for ident in [bad_check_digit(base[0].id), numeric_id, good[0].id]:
        assert ident not in report_text and ident[:14] not in report_text
    assert_no_clear_ids([p.id for p in good] + [c[0].id for c in cases if isinstance(c[0].id, str)])


def test_more_id_date_and_name_checks(app, ctx, team, tmp_path):
    header = [*HEADER, "到期日期", "性别", "出生日期"]
    base = people(9, first_seq=600)

    def row(person, end="", sex="", birth=""):
        return [*person.row(), end, sex, birth]

    child = make_id("20260601", "612")
    cases = [
        (row(Person("甲", make_id("19801332", "601"))), "身份证号", "身份证号中的出生日期无效"),
        (row(Person("乙", make_id("20270101", "602"))), "身份证号", "身份证号中的出生日期晚于今天"),
        (row(Person("张3", base[2].id)), "姓名", "姓名中含有数字"),
        (row(Person("丙", child, start="2026-03-01")), "签约日期", "签约日期早于出生日期"),
        (row(Person("丁", base[3].id, start="2009-12-31")), "签约日期", "签约日期早于2010年，请核对"),
        (row(Person("戊", base[4].id), end="2026-02-01"), "到期日期", "到期日期不晚于签约日期"),
        (row(Person("己", base[5].id), end="2032-03-01"), "到期日期", "签约期限超过5年，请核对"),
        (row(Person("庚", base[6].id), sex="男" if int(base[6].id[16]) % 2 == 0 else "女"), "性别", "性别与身份证号不符"),
        (row(Person("辛", base[7].id), birth="1900-01-01"), "出生日期", "出生日期与身份证号不符"),
        (row(Person("壬", base[8].id), sex="未知"), "性别", "性别无法识别（应为 男/女）"),
    ]
    good = Person("癸", make_id("19800101", "613"))
    good_row = row(good, end="2029-02-28", sex="男", birth="1980/1/1")
    path = write_csv(tmp_path / "more.csv", [c[0] for c in cases] + [good_row], header)

    result = run(path, ctx)

    assert (result.read, result.imported, result.rejected) == (len(cases) + 1, 1, len(cases))
    by_row = reasons_by_row(result)
    for i, (_row, column, reason) in enumerate(cases):
        assert [(c, r) for c, _v, r in by_row[2 + i]] == [(column, reason)], i
    r = resident(ctx, good.id)
    assert (r.contract_start, r.contract_end, r.sex, r.birth_date) == (date(2026, 3, 1), date(2029, 2, 28), "M", date(1980, 1, 1))


def test_label_cells_in_every_spelling(app, ctx, team, tmp_path):
    cells = {
        "高血压、2型糖尿病": {"hypertension", "diabetes"},
        "高血压，糖尿病；老年人": {"hypertension", "diabetes", "elderly"},
        "高血压 / Ⅱ型糖尿病 | 残疾": {"hypertension", "diabetes", "disabled"},
        "一般人群、高血压": {"hypertension"},
        "脱贫人口/监测对象": {"poverty"},
        "0～6岁儿童": {"child"},
        "普通人群": {"general"},
        "  ": {"general"},
        "高血压、高血压病": {"hypertension"},
    }
    persons = people(len(cells))
    for p, cell in zip(persons, cells):
        p.labels = cell
    path = write_csv(tmp_path / "labels.csv", rows_of(persons), encoding="gb18030")

    result = run(path, ctx)

    assert (result.imported, result.rejected) == (len(cells), 0), result.rejections
    for p, expected in zip(persons, cells.values()):
        assert label_codes(resident(ctx, p.id)) == expected, p.labels


def test_workbook_with_several_sheets(app, ctx, team, tmp_path):
    from openpyxl import Workbook

    persons = people(5)
    wb = Workbook()
    first = wb.active
    first.title = "城关"
    first.append(["城关片区签约居民花名册"])
    first.append(HEADER)
    for p in persons[:2]:
        first.append(p.row())
    notes = wb.create_sheet("说明")
    notes.append(["填表说明：身份证号请设为文本格式"])
    wb.create_sheet("空表")
    second = wb.create_sheet("乡镇")
    order = list(reversed(VARIANT_HEADER))
    second.append(order)
    for p in persons[2:4] + [persons[0]]:
        second.append(list(reversed(p.row(VARIANT_HEADER))))
    hidden = wb.create_sheet("隐藏")
    hidden.append(HEADER)
    hidden.append(persons[4].row())
    hidden.sheet_state = "hidden"
    path = tmp_path / "sheets.xlsx"
    wb.save(path)

    result = run(path, ctx)

    assert (result.read, result.imported, result.rejected) == (5, 4, 1)
    assert result.message == ("已跳过没有表头的工作表：说明；"
                              "未读取隐藏的工作表：隐藏（如需导入，请在 Excel 中取消隐藏后重新上传）")
    [dup] = result.rejections
    assert (dup.sheet, dup.row, dup.column) == ("乡镇", 4, "身份证号")
    assert dup.reason == "与工作表“城关”第3行的身份证号重复，已保留第一次出现的行"
    assert resident(ctx, persons[3].id).name == persons[3].name
    assert db.session.scalar(select(func.count()).select_from(Resident)) == 4
    assert db.session.get(ImportBatch, result.batch_id).message == result.message


def test_all_problems_of_a_row_are_reported_but_the_row_counts_once(app, ctx, team, tmp_path):
    person = Person("", bad_check_digit(make_id("19800101", "555")), phone="8221234", labels="火星人")
    path = write_csv(tmp_path / "many.csv", [person.row()] + rows_of(people(1)))

    result = run(path, ctx)

    assert (result.read, result.imported, result.rejected) == (2, 1, 1)
    assert sorted((r.row, r.column, r.reason) for r in result.rejections) == [
        (2, "人群分类", "人群分类不在配置的词表中：火星人"),
        (2, "姓名", "姓名为空"),
        (2, "联系电话", "固定电话缺少区号"),
        (2, "身份证号", "身份证号校验位不符，可能录入有误"),
    ]
    xlsx, _csv = read_report(result)
    assert len(xlsx) == 4 and set(xlsx["行号"]) == {"2"}


def test_unknown_institution_without_county_names_the_institution(app, ctx, team, tmp_path):
    path = write_csv(tmp_path / "x.csv", [Person("甲", make_id("19800101", "101"), institution="火星镇卫生院").row()])

    result = run(path, ctx)

    [rejection] = result.rejections
    assert (rejection.row, rejection.column, rejection.value) == (2, "签约机构", "火星镇卫生院")
    assert rejection.reason == "机构“火星镇卫生院”不存在（新建机构需指定县区）"
    assert db.session.scalar(select(func.count()).select_from(Institution)) == 1


def test_unknown_team_is_reported_in_the_team_column(app, ctx, team, tmp_path):
    path = write_csv(tmp_path / "t.csv", [Person("甲", make_id("19800101", "101"), team="王五家庭医生团队").row()])

    result = run(path, ctx)

    [rejection] = result.rejections
    assert rejection.reason.startswith("团队“王五家庭医生团队”")
    assert (rejection.column, rejection.value) == ("签约团队", "王五家庭医生团队")


def test_create_missing_builds_institutions_and_teams_with_inferred_types(app, ctx, county, team, tmp_path):
    persons = people(6)
    persons[0].institution, persons[0].team = "东塘镇中心卫生院", "甲团队"
    persons[1].institution, persons[1].team = "东塘镇中心卫生院", "乙团队"
    persons[2].institution, persons[2].team = "南湖街道社区卫生服务中心", "丙团队"
    persons[3].institution, persons[3].team = "北港乡卫生院", "丁团队"
    persons[4].team = "新团队"  # a new team in the existing institution
    persons[5].institution, persons[5].team = "仁和诊所", "戊团队"  # not a type the system knows
    path = write_csv(tmp_path / "new.csv", rows_of(persons))

    result = run(path, ctx, county="岳阳县", create_missing=True)

    assert (result.imported, result.rejected) == (5, 1)
    assert (result.institutions_created, result.teams_created) == (3, 5)
    [rejection] = result.rejections
    assert (rejection.row, rejection.column, rejection.value) == (7, "签约机构", "仁和诊所")
    assert rejection.reason.startswith("无法从名称判断机构“仁和诊所”的类型")
    types = dict(db.session.execute(select(Institution.name, Institution.type)).all())
    assert types == {
        INSTITUTION: "乡镇卫生院",
        "东塘镇中心卫生院": "中心卫生院",
        "南湖街道社区卫生服务中心": "社区卫生服务中心",
        "北港乡卫生院": "乡镇卫生院",
    }
    assert {i.county_id for i in db.session.scalars(select(Institution))} == {county.id}
    r0 = resident(ctx, persons[0].id)
    assert (r0.team.name, r0.team.institution.name) == ("甲团队", "东塘镇中心卫生院")
    assert r0.team.leader_doctor == "张伟"
    assert resident(ctx, persons[4].id).team.institution_id == team.institution_id
    batch = db.session.get(ImportBatch, result.batch_id)
    assert (batch.institutions_created, batch.teams_created, batch.create_missing) == (3, 5, True)


def test_create_missing_with_a_taken_institution_code_rejects_those_rows(app, ctx, county, team, tmp_path):
    existing = db.session.get(Institution, team.institution_id)
    existing.code = "A001"
    db.session.commit()
    persons = people(3)
    persons[1].institution = "东塘镇中心卫生院"  # new, but its code is taken
    persons[2].institution = "西塘镇卫生院"  # new, with a fresh code
    header = [*HEADER, "机构编码"]
    rows = [[*p.row(), code] for p, code in zip(persons, ["A001", "A001", "B002"])]

    result = run(write_csv(tmp_path / "codes.csv", rows, header), ctx, county="岳阳县", create_missing=True)

    assert (result.imported, result.rejected, result.institutions_created) == (2, 1, 1)
    [rejection] = result.rejections
    assert rejection.row == 3 and "A001" in rejection.reason


def test_create_missing_uses_the_county_column_of_the_file(app, ctx, make_county, tmp_path):
    make_county("岳阳县", "430621")
    hua = make_county("华容县", "430623")
    header = ["县区", *HEADER]
    rows = [["华容县", *p.row()] for p in people(2, institution="东山镇卫生院")]
    path = write_csv(tmp_path / "county.csv", rows, header)

    result = run(path, ctx, create_missing=True)

    assert (result.imported, result.institutions_created, result.teams_created) == (2, 1, 1)
    inst = db.session.scalar(select(Institution))
    assert (inst.name, inst.county_id, inst.type) == ("东山镇卫生院", hua.id, "乡镇卫生院")


def test_create_missing_needs_a_county(app, ctx, county, tmp_path):
    path = write_csv(tmp_path / "nocounty.csv", rows_of(people(2)))

    with pytest.raises(ImportFailed) as failed:
        run(path, ctx, create_missing=True)

    assert str(failed.value) == "自动新建机构时必须指定县区（命令行 --county，或文件中有“县区”列）。"
    batch = db.session.get(ImportBatch, failed.value.batch_id)
    assert batch.status == "failed" and batch.message == str(failed.value)
    assert table_counts()["institutions"] == 0


# ---------------------------------------------------------------------------
# Re-imports: idempotent, updates, optional columns
# ---------------------------------------------------------------------------


def test_same_file_twice_changes_nothing(app, ctx, team, tmp_path):
    persons = people(5, labels="高血压、2型糖尿病")
    persons[0].phone = "13800138000/13900139000"  # a second number in the cell
    path = write_xlsx(tmp_path / "same.xlsx", rows_of(persons))

    first = run(path, ctx)
    before = residents_snapshot()
    second = run(path, ctx)
    after = residents_snapshot()

    assert (first.imported, first.updated, first.unchanged) == (5, 0, 0)
    assert (second.read, second.imported, second.updated, second.unchanged, second.rejected) == (5, 0, 0, 5, 0)
    assert before.keys() == after.keys() and len(after) == 5
    for key, row in before.items():
        assert {k: v for k, v in row.items() if k != "last_seen_batch_id"} == {
            k: v for k, v in after[key].items() if k != "last_seen_batch_id"
        }
        assert row["first_seen_batch_id"] == first.batch_id
        assert after[key]["last_seen_batch_id"] == second.batch_id
    r0 = resident(ctx, persons[0].id)
    assert (r0.phone, r0.phone2) == ("13800138000", "13900139000")
    batches = db.session.scalars(select(ImportBatch).order_by(ImportBatch.id)).all()
    assert [(b.status, b.imported, b.unchanged) for b in batches] == [("applied", 5, 0), ("applied", 0, 5)]


@pytest.mark.parametrize(
    "change",
    ["phone", "team", "labels", "labels_removed", "name", "contract_start", "phone_and_labels"],
)
def test_one_changed_field_updates_one_resident(app, ctx, team, other_team, tmp_path, change):
    persons = people(4, labels="高血压、2型糖尿病")
    run(write_csv(tmp_path / "a.csv", rows_of(persons)), ctx)
    before = residents_snapshot()
    target = persons[2]
    if change == "phone":
        target.phone = "+86 150-0000-1111"
    elif change == "team":
        target.team = OTHER_TEAM
    elif change == "labels":
        target.labels = "高血压、2型糖尿病、残疾人"
    elif change == "labels_removed":
        target.labels = "高血压"
    elif change == "name":
        target.name = "改名者"
    elif change == "phone_and_labels":
        target.phone, target.labels = "15000001111", "高血压"
    else:
        target.start = "2026-05-01"

    result = run(write_csv(tmp_path / "b.csv", rows_of(persons)), ctx)

    assert (result.imported, result.updated, result.unchanged, result.rejected) == (0, 1, 3, 0)
    r = resident(ctx, target.id)
    expected = {
        "phone": lambda: r.phone == "15000001111",
        "team": lambda: r.team_id == other_team.id,
        "labels": lambda: label_codes(r) == {"hypertension", "diabetes", "disabled"},
        "labels_removed": lambda: label_codes(r) == {"hypertension"},
        "name": lambda: r.name == "改名者",
        "contract_start": lambda: (r.contract_start, r.contract_end) == (date(2026, 5, 1), date(2027, 4, 30)),
        "phone_and_labels": lambda: (r.phone, label_codes(r)) == ("15000001111", {"hypertension"}),
    }[change]
    assert expected()
    after = residents_snapshot()

    def data(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in ("last_seen_batch_id", "updated_at")}

    changed = [key for key in before if data(before[key]) != data(after[key])]
    assert changed == [hash_id(ctx.hash_key, target.id)]
    assert after[changed[0]]["updated_at"] >= before[changed[0]]["updated_at"]
    label_pairs = {"labels": 9, "labels_removed": 7, "phone_and_labels": 7}.get(change, 8)  # 4 residents × 2 before
    assert sum(len(v["labels"]) for v in after.values()) == label_pairs


def test_absent_optional_columns_do_not_erase_stored_values(app, ctx, team, tmp_path):
    persons = people(3)
    run(write_csv(tmp_path / "full.csv", rows_of(persons)), ctx)
    header = [c for c in HEADER if c not in ("住址", "签约医生")]
    rows = [[v for c, v in zip(HEADER, p.row()) if c in header] for p in persons]
    rows[1][header.index("联系电话")] = "13512345678"

    result = run(write_csv(tmp_path / "short.csv", rows, header), ctx)

    assert (result.imported, result.updated, result.unchanged) == (0, 1, 2)
    for p in persons:
        r = resident(ctx, p.id)
        assert (r.address, r.doctor_name) == ("新墙村3组", "张伟")
    assert resident(ctx, persons[1].id).phone == "13512345678"


def test_an_empty_address_cell_clears_the_address_when_the_column_is_there(app, ctx, team, tmp_path):
    persons = people(2)
    run(write_csv(tmp_path / "a.csv", rows_of(persons)), ctx)
    persons[0].address = ""

    result = run(write_csv(tmp_path / "b.csv", rows_of(persons)), ctx)

    assert (result.updated, result.unchanged) == (1, 1)
    assert resident(ctx, persons[0].id).address is None
    assert resident(ctx, persons[1].id).address == "新墙村3组"


# ---------------------------------------------------------------------------
# --full
# ---------------------------------------------------------------------------


@pytest.fixture
def two_institutions(county, team, other_team, make_team, ctx, tmp_path):
    """Institution A (two teams) with six residents, institution B with two."""
    b_team = make_team(county, "杨林乡卫生院", "刘洋家庭医生团队")
    a = people(6)
    a[1].team = OTHER_TEAM
    b = people(2, first_seq=300, institution="杨林乡卫生院", team="刘洋家庭医生团队")
    result = run(write_csv(tmp_path / "start.csv", rows_of(a + b)), ctx)
    assert result.imported == 8
    return a, b, b_team


def test_full_deactivates_absent_residents_of_covered_institutions_only(app, ctx, two_institutions, tmp_path):
    a, b, _ = two_institutions
    before = residents_snapshot()
    present = [a[0], a[1], a[2]]
    rejected = Person(a[3].name, a[3].id, phone="8221234")  # in the file, but its row is rejected
    unresolved = Person(a[4].name, a[4].id, team="不存在的团队")  # in the file, team unknown
    rows = rows_of(present) + [rejected.row(), unresolved.row()]  # a[5] is missing

    result = run(write_csv(tmp_path / "full.csv", rows), ctx, full=True)

    assert (result.read, result.unchanged, result.rejected, result.deactivated) == (5, 3, 2, 1)
    gone = resident(ctx, a[5].id)
    assert gone.active is False  # never deleted
    for p in a[:5] + b:
        assert resident(ctx, p.id).active is True, p.name
    after = residents_snapshot()
    assert len(after) == 8
    for p in b:  # the other institution is untouched
        key = hash_id(ctx.hash_key, p.id)
        assert after[key] == before[key]
    assert db.session.get(ImportBatch, result.batch_id).deactivated == 1


def test_full_keeps_residents_whose_only_row_is_rejected_for_a_bad_id_elsewhere(app, ctx, two_institutions, tmp_path):
    a, _b, _ = two_institutions
    # every resident of A is in the file; one row has a future contract date
    rows = rows_of(a)
    rows[2][HEADER.index("签约日期")] = "2027-01-01"

    result = run(write_csv(tmp_path / "full.csv", rows), ctx, full=True)

    assert (result.unchanged, result.rejected, result.deactivated) == (5, 1, 0)
    assert resident(ctx, a[2].id).active is True


def test_resident_who_reappears_becomes_active_again(app, ctx, two_institutions, tmp_path):
    a, _b, _ = two_institutions
    run(write_csv(tmp_path / "first.csv", rows_of(a[:5])), ctx, full=True)
    assert resident(ctx, a[5].id).active is False

    result = run(write_csv(tmp_path / "again.csv", rows_of(a)), ctx, full=True)

    assert (result.imported, result.updated, result.unchanged, result.deactivated) == (0, 1, 5, 0)
    assert resident(ctx, a[5].id).active is True


def test_without_full_absent_residents_stay_active(app, ctx, two_institutions, tmp_path):
    a, _b, _ = two_institutions

    result = run(write_csv(tmp_path / "part.csv", rows_of(a[:2])), ctx)

    assert (result.unchanged, result.deactivated) == (2, 0)
    assert db.session.scalar(select(func.count()).select_from(Resident).where(Resident.active.is_(False))) == 0


# ---------------------------------------------------------------------------
# Atomicity
# ---------------------------------------------------------------------------


def _fail_after(original, calls_before_failure: int = 0):
    state = {"calls": 0}

    def wrapper(*args, **kwargs):
        state["calls"] += 1
        if state["calls"] > calls_before_failure:
            original(*args, **kwargs)  # do the work, then fail
            raise RuntimeError("disk full")
        return original(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("where", ["merge", "stage_labels", "bulk_load_second_call", "user_error_mid_batch"])
def test_failure_mid_import_changes_nothing(app, ctx, county, team, other_team, tmp_path, monkeypatch, where):
    persons = people(4, labels="高血压")
    run(write_csv(tmp_path / "first.csv", rows_of(persons)), ctx)
    before_residents = residents_snapshot()
    before_counts = table_counts()

    changed = people(4, labels="高血压、残疾人")
    changed[0].phone = "15011112222"
    changed[1].team = OTHER_TEAM
    newcomers = people(3, first_seq=400, institution="东塘镇中心卫生院", team="新团队")
    path = write_xlsx(tmp_path / "second.xlsx", rows_of(changed + newcomers))
    if where == "merge":
        monkeypatch.setattr(importer, "merge", _fail_after(importer.merge))
    elif where == "stage_labels":
        monkeypatch.setattr(importer, "stage_labels", _fail_after(importer.stage_labels))
    elif where == "bulk_load_second_call":
        monkeypatch.setattr(staging, "bulk_load", _fail_after(staging.bulk_load, calls_before_failure=1))
    else:
        original = importer.reject_duplicates

        def fail(session, rejections, candidates):
            original(session, rejections, candidates)
            raise ImportFailed("名册数据有误，导入已取消。")

        monkeypatch.setattr(importer, "reject_duplicates", fail)

    with pytest.raises(ImportFailed) as failed:
        import_and_commit(db.session, path, ImportOptions(county="岳阳县", create_missing=True), ctx)

    if where == "user_error_mid_batch":
        assert str(failed.value) == "名册数据有误，导入已取消。"
    else:
        assert str(failed.value) == "导入过程中发生内部错误，数据库未作任何更改。请联系系统管理员。"
    after_counts = table_counts()
    assert after_counts == {
        **before_counts,
        "import_batches": before_counts["import_batches"] + 1,
        "audit_log": before_counts["audit_log"] + 1,
    }
    assert residents_snapshot() == before_residents
    assert db.session.scalar(select(func.count()).select_from(Institution)) == 1
    assert db.session.scalar(select(func.count()).select_from(Team)) == 2
    batch = db.session.get(ImportBatch, failed.value.batch_id)
    assert batch.status == "failed" and batch.message == str(failed.value)
    assert batch.filename == "second.xlsx" and batch.finished_at is not None
    assert re.search(r"[\u4e00-\u9fff]", batch.message)
    assert (batch.imported, batch.updated, batch.rows_read) == (0, 0, 0)
    audit = db.session.scalars(select(AuditLog).order_by(AuditLog.id.desc())).first()
    assert audit.action == "roster.import.failed" and str(batch.id) in audit.target


def _foreign_keys() -> set[str]:
    return set(db.session.scalars(text_(
        "SELECT conname FROM pg_constraint WHERE contype = 'f' "
        "AND conrelid::regclass::text IN ('residents', 'resident_labels')")))


@pytest.mark.parametrize("fail", [False, True], ids=["applied", "failure_after_the_keys_were_dropped"])
def test_big_import_on_postgresql_checks_the_keys_once(app, ctx, county, team, tmp_path, monkeypatch, fail):
    """PostgreSQL: an import bringing many new residents drops the three foreign keys of the
    residents and their labels inside its transaction and adds them back (one set-based check)
    before it commits; a failure in between leaves the keys, like everything else, as they were."""
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("the keys are dropped on PostgreSQL only")
    expected = {"fk_residents_team_id_teams", "fk_resident_labels_label_id_population_labels",
                "fk_resident_labels_resident_id_residents"}
    assert _foreign_keys() >= expected
    run(write_csv(tmp_path / "earlier.csv", rows_of(people(1, first_seq=900))), ctx)  # not a first import
    monkeypatch.setattr(staging, "BULK_KEYS_MIN_NEW", 3)
    statements: list[str] = []
    monkeypatch.setattr(staging, "AddConstraint", _recording(staging.AddConstraint, statements, fail))
    persons = people(5, labels="高血压、残疾人")
    path = write_csv(tmp_path / "big.csv", rows_of(persons))

    if fail:
        with pytest.raises(ImportFailed):
            run(path, ctx)
        assert resident_count() == 1
    else:
        result = run(path, ctx)
        assert result.imported == 5 and resident_count() == 6
        assert db.session.scalar(select(func.count()).select_from(resident_labels)) == 10 + 1
    assert statements  # the keys were dropped and added back (or the import failed in between)
    assert _foreign_keys() >= expected


def test_a_big_import_keeps_its_keys_when_the_tables_are_in_use(app, ctx, county, team, tmp_path, monkeypatch):
    """Dropping a key waits for every open transaction that read the table; an import that
    cannot get the lock quickly keeps its keys and checks row by row instead of waiting."""
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("the keys are dropped on PostgreSQL only")
    run(write_csv(tmp_path / "earlier.csv", rows_of(people(1, first_seq=900))), ctx)
    db.session.commit()
    monkeypatch.setattr(staging, "BULK_KEYS_MIN_NEW", 3)
    monkeypatch.setattr(staging, "BULK_LOCK_WAIT", "200ms")
    statements: list[str] = []
    monkeypatch.setattr(staging, "AddConstraint", _recording(staging.AddConstraint, statements, False))
    with db.engine.connect() as reader:  # a page in the middle of reading the residents
        reader.execute(select(func.count()).select_from(Resident)).scalar()
        result = run(write_csv(tmp_path / "big.csv", rows_of(people(5))), ctx)
        reader.rollback()
    assert result.imported == 5 and resident_count() == 6
    assert statements == []  # nothing was dropped, so nothing had to be added back
    assert _foreign_keys() >= {"fk_residents_team_id_teams", "fk_resident_labels_resident_id_residents"}


def test_a_big_first_import_builds_the_team_index_at_the_end(app, ctx, county, team, tmp_path, monkeypatch):
    monkeypatch.setattr(fresh_load, "BULK_KEYS_MIN_NEW", 2)  # a "big" file: its first chunk has >= 1 row
    dropped: list[str] = []
    real_take = staging.SetAside.take

    def take(session, keys, indexes):
        aside = real_take(session, keys, indexes)
        dropped.extend(index.name for index in aside.indexes)
        return aside

    monkeypatch.setattr(staging.SetAside, "take", staticmethod(take))
    result = run(write_csv(tmp_path / "first.csv", rows_of(people(4, labels="高血压"))), ctx)

    assert result.imported == 4 and dropped == ["ix_residents_team_id_active", "uq_residents_id_hash"]
    indexes = {i["name"]: i for i in sa_inspect(db.engine).get_indexes("residents")}
    assert "ix_residents_team_id_active" in indexes
    assert indexes["uq_residents_id_hash"]["unique"]
    assert db.session.scalar(select(func.count()).select_from(resident_labels)) == 4


def test_a_repeat_let_through_a_big_first_import_fails_it_at_the_hash_index(app, ctx, county, team, tmp_path,
                                                                          monkeypatch):
    """The big first import checks repeats without the hash index; should that check ever let
    one through, building the unique index at the end fails the import, which leaves nothing."""
    monkeypatch.setattr(fresh_load, "BULK_KEYS_MIN_NEW", 2)
    monkeypatch.setattr(staging.DuplicateWatch, "earlier", lambda self, hashes: {})  # sees no repeat
    ctx.chunk_rows = 3
    persons = people(4)
    rows = rows_of(persons) + rows_of([persons[0]])  # line 6 repeats line 2, in another chunk
    with pytest.raises(ImportFailed, match="内部错误，数据库未作任何更改"):
        run(write_csv(tmp_path / "repeat.csv", rows), ctx)
    assert resident_count() == 0
    assert db.session.scalar(select(func.count()).select_from(resident_labels)) == 0
    indexes = {i["name"]: i for i in sa_inspect(db.engine).get_indexes("residents")}
    assert indexes["uq_residents_id_hash"]["unique"] and "ix_residents_team_id_active" in indexes


def _recording(original, statements: list[str], fail: bool):
    def add(constraint):
        statements.append(constraint.name)
        if fail:
            raise RuntimeError("disk full")
        return original(constraint)

    return add


@pytest.mark.parametrize("where", ["finish", "labels_of_the_second_chunk"])
def test_failure_on_the_first_import_leaves_an_empty_database(app, ctx, county, tmp_path, monkeypatch, where):
    """A first import (empty residents table) writes its rows straight into the tables as the
    chunks come (FreshLoad): a failure at its end or halfway still leaves nothing behind."""
    ctx.chunk_rows = 2
    path = write_csv(tmp_path / "new.csv", rows_of(people(3, institution="东塘镇中心卫生院", team="甲团队")))
    if where == "finish":
        monkeypatch.setattr(fresh_load.FreshLoad, "finish", _fail_after(fresh_load.FreshLoad.finish))
    else:  # residents, labels, residents, labels: the 4th bulk load fails after writing
        monkeypatch.setattr(fresh_load, "bulk_load", _fail_after(fresh_load.bulk_load, calls_before_failure=3))

    with pytest.raises(ImportFailed):
        run(path, ctx, county="岳阳县", create_missing=True)

    counts = table_counts()
    for name in ("residents", "institutions", "teams", "population_labels", "resident_labels"):
        assert counts[name] == 0, name
    assert counts["import_batches"] == 1 and counts["counties"] == 1


# ---------------------------------------------------------------------------
# Dry run
# ---------------------------------------------------------------------------


def test_dry_run_writes_nothing_but_records_a_preview(app, ctx, county, team, tmp_path):
    persons = people(4)
    persons[3].phone = "8221234"
    persons[2].institution, persons[2].team = "东塘镇中心卫生院", "甲团队"
    path = write_xlsx(tmp_path / "preview.xlsx", rows_of(persons))
    before = table_counts()

    result = run(path, ctx, county="岳阳县", create_missing=True, dry_run=True)

    assert result.status == "preview"
    assert (result.read, result.imported, result.rejected, result.institutions_created) == (4, 3, 1, 1)
    after = table_counts()
    assert after == {**before, "import_batches": 1, "audit_log": 1}
    batch = db.session.get(ImportBatch, result.batch_id)
    assert batch.status == "preview"
    assert (batch.rows_read, batch.imported, batch.updated, batch.unchanged, batch.rejected) == (4, 3, 0, 0, 1)
    assert (batch.institutions_created, batch.teams_created) == (1, 1)
    assert batch.error_report == result.error_report.stem
    xlsx, _csv = read_report(result)
    assert xlsx["原因"].tolist() == ["固定电话缺少区号"]
    audit = db.session.scalar(select(AuditLog))
    assert audit.action == "roster.import.preview" and audit.detail == result.summary_line()

    applied = run(path, ctx, county="岳阳县", create_missing=True)
    assert (applied.imported, applied.rejected) == (3, 1)
    assert resident_count() == 3


# ---------------------------------------------------------------------------
# Files that cannot be read
# ---------------------------------------------------------------------------


def _corrupt_xlsx(tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 20)
    return path


def _pdf(tmp_path):
    path = tmp_path / "roster.pdf"
    path.write_bytes(b"%PDF-1.4\n")
    return path


def _no_header(tmp_path):
    return write_csv(tmp_path / "noheader.csv", [["1", "2", "3"]], ["序号", "备注", "其他"])


def _missing_column(tmp_path):
    header = [c for c in HEADER if c != "签约日期"]
    rows = [[v for c, v in zip(HEADER, p.row()) if c != "签约日期"] for p in people(2)]
    return write_csv(tmp_path / "nodate.csv", rows, header)


def _empty(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    return path


def _no_header_xlsx(tmp_path):
    return write_xlsx(tmp_path / "noheader.xlsx", [["a", "b"]], ["序号", "备注"], title=None)


@pytest.mark.parametrize(
    "make_file, message",
    [
        (_corrupt_xlsx, "无法读取 Excel 文件：文件已损坏、被加密或不是有效的 Excel 文件。"),
        (_pdf, "不支持的文件类型“.pdf”：请上传 .xlsx、.xls 或 .csv 文件。"),
        (_no_header, "未找到表头：前30行中没有同时包含“姓名”和“身份证号”的行。"),
        (_no_header_xlsx, "工作表“签约居民”：未找到表头：前30行中没有同时包含“姓名”和“身份证号”的行。"),
        (_missing_column, "表头第1行缺少必需列：签约日期。"),
        (_empty, "文件为空或不存在。"),
    ],
    ids=["corrupt-xlsx", "pdf", "no-header", "no-header-xlsx", "missing-column", "empty"],
)
def test_unreadable_file_fails_with_one_chinese_message(app, ctx, team, tmp_path, make_file, message):
    path = make_file(tmp_path)
    before = table_counts()

    with pytest.raises(ImportFailed) as failed:
        run(path, ctx)

    assert str(failed.value) == message
    batch = db.session.get(ImportBatch, failed.value.batch_id)
    assert (batch.status, batch.message, batch.filename) == ("failed", message, path.name)
    assert table_counts() == {**before, "import_batches": 1, "audit_log": 1}


def test_unknown_county_option_fails(app, ctx, team, tmp_path):
    path = write_csv(tmp_path / "a.csv", rows_of(people(2)))

    with pytest.raises(ImportFailed) as failed:
        run(path, ctx, county="火星县")

    assert str(failed.value) == "县区“火星县”不存在。"
    assert resident_count() == 0
    assert db.session.get(ImportBatch, failed.value.batch_id).status == "failed"


def test_county_column_must_match_the_chosen_county(app, ctx, make_county, make_team, tmp_path):
    yyx = make_county("岳阳县", "430621")
    make_county("华容县", "430623")
    make_team(yyx, INSTITUTION, TEAM)
    header = ["县区", *HEADER]
    rows = [["华容县", *people(1)[0].row()], ["岳阳县", *people(1, first_seq=300)[0].row()]]

    result = run(write_csv(tmp_path / "mixed.csv", rows, header), ctx, county="岳阳县")

    assert (result.imported, result.rejected) == (1, 1)
    [rejection] = result.rejections
    assert rejection.row == 2
    assert rejection.reason == "该行县区“华容县”与本次导入选择的县区“岳阳县”不一致"
    assert db.session.scalar(select(County.name).join(Institution)) == "岳阳县"


def test_abandoned_csv_source_closes_its_file(app, tmp_path):
    """An import that stops mid-file must not leak the roster's file handle (it did before
    reader._open_csv used the TextFileReader as a context manager)."""
    path = write_csv(tmp_path / "big.csv", rows_of(people(6)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_roster(path, chunk_rows=2)
        chunks = source.chunks()
        first = next(chunks)
        assert len(first.frame) == 2
        chunks.close()  # what happens when an import stops after its first chunk
        del chunks, source
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]


def test_csv_source_read_to_the_end_closes_its_file(app, tmp_path):
    path = write_csv(tmp_path / "big.csv", rows_of(people(6)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_roster(path, chunk_rows=2)
        sizes = [len(chunk.frame) for chunk in source.chunks()]
        del source
        gc.collect()
    assert sizes == [2, 2, 2]
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
