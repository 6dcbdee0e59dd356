"""Unit tests for app/core/sheets.py (the reader of rosters and other sheets): every fixture file is built here in tmp_path
(xlsx with xlsxwriter, xls with xlwt, csv by hand) the way real contract-system exports
look: title rows, blank lines, merged cells, footers, odd encodings.
"""
from __future__ import annotations

import csv
import gc
import warnings
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import xlsxwriter
import xlwt

from app.core.populations import load_vocabulary
from app.roster.normalize import validate_ids
from app.roster.normalize import open_roster
from app.core.sheets import cell_text, detect_encoding, SheetFileError
from app.roster.validate import validate_frame

TODAY = date(2026, 11, 23)
POPULATIONS_JSON = Path(__file__).resolve().parents[1] / "app" / "populations.json"

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id(prefix17: str) -> str:
    return prefix17 + "10X98765432"[sum(int(d) * w for d, w in zip(prefix17, WEIGHTS)) % 11]


ID_A = "11010519491231002X"  # the textbook example
ID_B = make_id("43062119800101123")  # 43062119800101123X
ID_C = make_id("43062119900506124")
assert ID_B == "43062119800101123X"

HEADER = ["姓名", "身份证号", "联系电话", "签约机构", "签约团队", "签约日期", "人群分类"]
FIELDS = ["name", "id_number", "phone", "institution", "team", "contract_start", "labels"]
REQUIRED = {"name", "id_number", "phone", "institution", "team", "contract_start"}
REASON_NUMBER = "身份证号被存成了数字，末几位已丢失：请把该列设为文本格式后重新导出"


def read_all(path, **kwargs) -> tuple[object, list]:
    source = open_roster(path, **kwargs)
    return source, list(source.chunks())


def records(chunks) -> list[tuple]:
    """(sheet, row number, {field: text}) for every row of every chunk, in order."""
    out = []
    for chunk in chunks:
        assert len(chunk.row_numbers) == len(chunk.frame)
        assert list(chunk.row_numbers.index) == list(chunk.frame.index)
        for number, (_, row) in zip(chunk.row_numbers, chunk.frame.iterrows()):
            out.append((chunk.sheet, int(number), {k: v for k, v in row.items()}))
    return out


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8", delimiter: str = ",", eol: str = "\n") -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh, delimiter=delimiter, lineterminator=eol).writerows(rows)
    return path


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------------------
# cell_text and detect_encoding
# ---------------------------------------------------------------------------


def test_cell_text():
    assert cell_text(None) == ""
    assert cell_text("  张三 ") == "  张三 "
    assert cell_text(True) == "是"
    assert cell_text(False) == "否"
    assert cell_text(13800138000.0) == "13800138000"
    assert cell_text(45717.0) == "45717"
    assert cell_text(110105491231002.0) == "110105491231002"  # a 15-digit ID survives as a float
    assert cell_text(12) == "12"
    assert cell_text(1.5) == "1.5"
    # an 18-digit ID stored as a number keeps its float spelling so validation can say so
    assert cell_text(430621198001011234.0) == "4.3062119800101126e+17"
    assert cell_text(float("inf")) == "inf"
    assert cell_text(datetime(2025, 3, 1)) == "2025-03-01"
    assert cell_text(datetime(2025, 3, 1, 14, 30)) == "2025-03-01 14:30:00"
    assert cell_text(date(2025, 3, 1)) == "2025-03-01"


def test_detect_encoding():
    text = "姓名,身份证号\n张三,11010519491231002X\n"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"
    assert detect_encoding(b"\xef\xbb\xbf" + text.encode("utf-8")) == "utf-8-sig"
    assert detect_encoding(text.encode("gb18030")) == "gb18030"
    # a character cut at the end of the sample is not an error
    assert detect_encoding(text.encode("utf-8")[:4]) == "utf-8"
    assert detect_encoding("姓名".encode("utf-8")[:5]) == "utf-8"
    with pytest.raises(SheetFileError, match="无法识别文件编码"):
        detect_encoding(b"\xff\xfe\x00\x81\x30" * 4)


# ---------------------------------------------------------------------------
# .xlsx
# ---------------------------------------------------------------------------


@pytest.fixture
def roster_xlsx(tmp_path) -> Path:
    path = tmp_path / "名册.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    date_format = wb.add_format({"num_format": "yyyy-mm-dd"})
    ws = wb.add_worksheet("名册")
    ws.merge_range(0, 0, 0, 6, "XX县家庭医生签约居民花名册")  # sheet row 1
    # sheet row 2 blank
    ws.write_row(2, 0, HEADER)  # sheet row 3
    # sheet rows 4-6: three residents; IDs as text; the institution is one merged cell
    ws.write_string(3, 0, "张三")
    ws.write_string(3, 1, ID_A)
    ws.write_number(3, 2, 13800138000)
    ws.write_datetime(3, 5, datetime(2025, 3, 1), date_format)
    ws.write_string(3, 6, "高血压、糖尿病")
    ws.write_string(4, 0, "李四")
    ws.write_string(4, 1, ID_B.lower())
    ws.write_string(4, 2, "138 0013 8000")
    ws.write_number(4, 5, 45717)
    ws.write_string(5, 0, "王五")
    ws.write_string(5, 1, ID_C)
    ws.write_string(5, 2, "0730-8221234")
    ws.write_string(5, 5, "2025/3/1")
    ws.write_string(5, 6, "脱贫人口/监测对象")
    ws.merge_range(3, 3, 5, 3, "新墙镇卫生院")
    for r in (3, 4, 5):
        ws.write_string(r, 4, "张伟家庭医生团队")
    # sheet row 7 blank, row 8 the footer
    ws.write_string(7, 0, "合计：3人")
    # a second, visible sheet of notes without a header: skipped
    notes = wb.add_worksheet("说明")
    notes.write_string(0, 0, "本表由家庭医生签约系统导出")
    notes.write_string(1, 0, "身份证号请设置为文本格式")
    # a hidden sheet with a header and a resident: never read
    hidden = wb.add_worksheet("旧名单")
    hidden.write_row(0, 0, HEADER)
    hidden.write_row(1, 0, ["赵六", ID_A, "13900139000", "旧院", "旧团队", "2020-01-01", ""])
    hidden.hide()
    wb.close()
    return path


def test_xlsx_sheets_and_fields(roster_xlsx):
    source = open_roster(roster_xlsx)
    assert source.path == roster_xlsx
    assert source.sheets == ["名册"]
    assert source.skipped_sheets == ["说明"]
    assert source.fields == set(FIELDS)
    list(source.chunks())


def test_xlsx_rows(roster_xlsx):
    _, chunks = read_all(roster_xlsx)
    assert len(chunks) == 1
    got = records(chunks)
    assert [(sheet, number) for sheet, number, _ in got] == [("名册", 4), ("名册", 5), ("名册", 6)]
    assert [r for _, _, r in got] == [
        {
            "name": "张三",
            "id_number": ID_A,
            "phone": "13800138000",  # a number cell, no ".0"
            "institution": "新墙镇卫生院",
            "team": "张伟家庭医生团队",
            "contract_start": "2025-03-01",  # a real date cell
            "labels": "高血压、糖尿病",
        },
        {
            "name": "李四",
            "id_number": "43062119800101123x",  # read as written; validation upper-cases
            "phone": "138 0013 8000",
            "institution": "新墙镇卫生院",  # filled down from the merged cell
            "team": "张伟家庭医生团队",
            "contract_start": "45717",  # a bare serial number, parse_dates handles it
            "labels": "",
        },
        {
            "name": "王五",
            "id_number": ID_C,
            "phone": "0730-8221234",
            "institution": "新墙镇卫生院",
            "team": "张伟家庭医生团队",
            "contract_start": "2025/3/1",
            "labels": "脱贫人口/监测对象",
        },
    ]
    # the footer and the hidden sheet's resident are not read
    all_text = " ".join(" ".join(r.values()) for _, _, r in got)
    assert "合计" not in all_text
    assert "赵六" not in all_text


def test_xlsx_rows_validate(roster_xlsx):
    """The reader's text goes through validation unchanged: all three residents pass."""
    vocabulary = load_vocabulary(POPULATIONS_JSON)
    _, chunks = read_all(roster_xlsx)
    chunk = chunks[0]
    result = validate_frame(chunk.frame, chunk.row_numbers, chunk.sheet, today=TODAY, vocabulary=vocabulary, hash_key=b"k" * 16)
    assert result.rejections == []
    assert list(result.rows["row_no"]) == [4, 5, 6]
    assert list(result.rows["contract_start"]) == ["2025-03-01"] * 3
    assert list(result.rows["institution"]) == ["新墙镇卫生院"] * 3
    assert list(result.rows["id_masked"]) == ["**************002X", "**************123X", "*" * 14 + ID_C[-4:]]


def test_xlsx_id_written_as_a_number(tmp_path):
    path = tmp_path / "numbers.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, HEADER)
    ws.write_row(1, 0, ["张三", None, "13800138000", "新墙镇卫生院", "张伟团队", "2025-03-01", ""])
    ws.write_number(1, 1, 430621198001011234)  # Excel keeps 15 significant digits
    ws.write_row(2, 0, ["李四", None, "13800138000", "新墙镇卫生院", "张伟团队", "2025-03-01", ""])
    ws.write_number(2, 1, 110105491231002)  # a legacy 15-digit ID survives as a number
    wb.close()
    _, chunks = read_all(path)
    ids = chunks[0].frame["id_number"]
    assert ids.iloc[0].startswith("4.30621")
    assert ids.iloc[0].endswith("e+17")
    assert ids.iloc[1] == "110105491231002"
    checked = validate_ids(ids, TODAY)
    assert list(checked.reason) == [REASON_NUMBER, ""]
    assert list(checked.id18) == ["", ID_A]


def test_xlsx_data_not_starting_at_a1(tmp_path):
    """Leading empty rows and columns do not shift row numbers or merged ranges."""
    path = tmp_path / "offset.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Sheet1")
    ws.write_row(4, 2, HEADER)  # C5
    ws.write_row(5, 2, ["张三", ID_A, "13800138000", None, "一团队", "2025-03-01", ""])
    ws.write_row(6, 2, ["李四", ID_B, "13900139000", None, "二团队", "2025-03-02", ""])
    ws.write_row(8, 2, ["王五", ID_C, "13700137000", "新墙镇卫生院", "三团队", "2025-03-03", ""])
    ws.merge_range(5, 5, 6, 5, "城关镇社区卫生服务中心")  # F6:F7
    wb.close()
    _, chunks = read_all(path)
    got = records(chunks)
    assert [(n, r["name"], r["institution"], r["team"]) for _, n, r in got] == [
        (6, "张三", "城关镇社区卫生服务中心", "一团队"),
        (7, "李四", "城关镇社区卫生服务中心", "二团队"),
        (9, "王五", "新墙镇卫生院", "三团队"),
    ]


def test_xlsx_several_sheets_with_headers(tmp_path):
    path = tmp_path / "two.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    first = wb.add_worksheet("新墙镇")
    first.write_row(0, 0, HEADER)
    first.write_row(1, 0, ["张三", ID_A, "13800138000", "新墙镇卫生院", "一团队", "2025-03-01", ""])
    second = wb.add_worksheet("筻口镇")
    second.write_string(0, 0, "筻口镇签约居民名单")
    second.write_row(1, 0, ["居民姓名", "证件号码", "手机号码", "机构名称", "团队名称", "签约时间", "备用电话"])
    second.write_row(2, 0, ["李四", ID_B, "13900139000", "筻口镇卫生院", "二团队", "2025-03-02", "13700137000"])
    wb.close()
    source, chunks = read_all(path)
    assert source.sheets == ["新墙镇", "筻口镇"]
    assert source.skipped_sheets == []
    assert source.fields == set(FIELDS) | {"phone2"}
    got = records(chunks)
    assert [(sheet, n, r["name"]) for sheet, n, r in got] == [("新墙镇", 2, "张三"), ("筻口镇", 3, "李四")]
    assert got[1][2]["phone2"] == "13700137000"
    assert "phone2" not in got[0][2]


def test_xlsx_datetime_with_time(tmp_path):
    path = tmp_path / "time.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, HEADER)
    ws.write_row(1, 0, ["张三", ID_A, "13800138000", "新墙镇卫生院", "一团队", None, ""])
    ws.write_datetime(1, 5, datetime(2025, 3, 1, 14, 30), wb.add_format({"num_format": "yyyy-mm-dd hh:mm"}))
    wb.close()
    _, chunks = read_all(path)
    assert chunks[0].frame["contract_start"].tolist() == ["2025-03-01 14:30:00"]


def test_xlsx_chunking_gives_the_same_rows(tmp_path):
    path = tmp_path / "many.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("名册")
    ws.write_string(0, 0, "花名册")
    ws.write_row(1, 0, HEADER)
    names = ["赵一", "钱二", "孙三", "李四", "周五", "吴六", "郑七"]
    for i, name in enumerate(names):
        if i == 3:
            continue  # a blank line in the middle (sheet row 6)
        ws.write_row(2 + i, 0, [name, ID_A, "13800138000", None, f"团队{i}", "2025-03-01", ""])
    ws.merge_range(2, 3, 4, 3, "新墙镇卫生院")  # D3:D5, spans the first chunk boundary
    ws.merge_range(6, 3, 8, 3, "新墙镇卫生院")  # D7:D9
    ws.write_string(10, 0, "制表人：李会计")
    wb.close()
    _, whole = read_all(path)
    _, parts = read_all(path, chunk_rows=2)
    assert len(whole) == 1
    assert len(parts) > 3
    assert all(len(c.frame) <= 2 for c in parts)
    assert records(parts) == records(whole)
    got = records(whole)
    assert [n for _, n, _ in got] == [3, 4, 5, 7, 8, 9]
    assert [r["name"] for _, _, r in got] == ["赵一", "钱二", "孙三", "周五", "吴六", "郑七"]
    assert {r["institution"] for _, _, r in got} == {"新墙镇卫生院"}


def test_xlsx_merged_footer_is_dropped(tmp_path):
    path = tmp_path / "merged_footer.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, HEADER)
    ws.write_row(1, 0, ["张三", ID_A, "13800138000", "新墙镇卫生院", "一团队", "2025-03-01", ""])
    ws.merge_range(2, 0, 2, 6, "合计：1人")
    ws.merge_range(3, 0, 3, 6, "制表人：张三    审核人：李四")
    wb.close()
    _, chunks = read_all(path)
    assert [(n, r["name"]) for _, n, r in records(chunks)] == [(2, "张三")]


def test_xlsx_blank_line_inside_a_merged_cell_is_dropped(tmp_path):
    path = tmp_path / "merged_gap.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, HEADER)
    ws.write_row(1, 0, ["张三", ID_A, "13800138000", None, "一团队", "2025-03-01", ""])
    ws.write_row(3, 0, ["李四", ID_B, "13900139000", None, "一团队", "2025-03-01", ""])
    ws.merge_range(1, 3, 3, 3, "新墙镇卫生院")  # D2:D4, row 3 is blank
    wb.close()
    _, chunks = read_all(path)
    assert [(n, r["name"], r["institution"]) for _, n, r in records(chunks)] == [
        (2, "张三", "新墙镇卫生院"),
        (4, "李四", "新墙镇卫生院"),
    ]


def test_sheet_with_only_a_footer_can_be_validated(tmp_path):
    path = tmp_path / "footer_only.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    first = wb.add_worksheet("新墙镇")
    first.write_row(0, 0, HEADER)
    first.write_row(1, 0, ["张三", ID_A, "13800138000", "新墙镇卫生院", "一团队", "2025-03-01", ""])
    second = wb.add_worksheet("筻口镇")  # no residents signed yet
    second.write_row(0, 0, HEADER)
    second.write_string(1, 0, "合计：0人")
    wb.close()
    vocabulary = load_vocabulary(POPULATIONS_JSON)
    source, chunks = read_all(path)
    assert source.sheets == ["新墙镇", "筻口镇"]
    accepted = 0
    for chunk in chunks:
        result = validate_frame(chunk.frame, chunk.row_numbers, chunk.sheet, today=TODAY, vocabulary=vocabulary, hash_key=b"k" * 16)
        assert result.rejections == []
        accepted += len(result.rows)
    assert accepted == 1


# ---------------------------------------------------------------------------
# .xls
# ---------------------------------------------------------------------------


def test_xls(tmp_path):
    path = tmp_path / "old.xls"
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("花名册")
    ws.write_merge(0, 0, 0, 6, "XX县家庭医生签约居民花名册")  # row 1
    for col, name in enumerate(["*姓名", "身份证号码", "联系电话", "签约机构名称", "签约团队", "签约日期", "重点人群"]):
        ws.write(2, col, name)  # row 3
    ws.write(3, 0, "张三")  # row 4
    ws.write(3, 1, ID_A)
    ws.write(3, 2, 13800138000)
    ws.write(3, 4, "一团队")
    ws.write(3, 5, "2025-03-01")
    ws.write(3, 6, "高血压")
    ws.write(4, 0, "李四")  # row 5
    ws.write(4, 1, 430621198001011234)  # the ID as a number
    ws.write(4, 2, "13900139000")
    ws.write(4, 4, "一团队")
    ws.write(4, 5, 45717)
    ws.write_merge(3, 4, 3, 3, "新墙镇卫生院")
    ws.write(6, 0, "合计：2人")  # row 7
    wb.save(str(path))

    source, chunks = read_all(path)
    assert source.sheets == ["花名册"]
    assert source.fields == set(FIELDS)
    got = records(chunks)
    assert [(sheet, n) for sheet, n, _ in got] == [("花名册", 4), ("花名册", 5)]
    first, second = got[0][2], got[1][2]
    assert first == {
        "name": "张三",
        "id_number": ID_A,
        "phone": "13800138000",
        "institution": "新墙镇卫生院",
        "team": "一团队",
        "contract_start": "2025-03-01",
        "labels": "高血压",
    }
    assert second["institution"] == "新墙镇卫生院"
    assert second["contract_start"] == "45717"
    assert second["id_number"].startswith("4.30621") and second["id_number"].endswith("e+17")
    assert list(validate_ids(pd.Series([first["id_number"], second["id_number"]]), TODAY).reason) == ["", REASON_NUMBER]


# ---------------------------------------------------------------------------
# .csv
# ---------------------------------------------------------------------------

CSV_ROWS = [
    ["XX县家庭医生签约居民花名册", "", "", "", "", "", ""],  # line 1
    ["导出日期：2025-03-05"],  # line 2
    [],  # line 3
    HEADER,  # line 4
    ["张三", "11010519491231002x", "138 0013 8000", "新墙镇卫生院", "张伟家庭医生团队", "2025/3/1", "高血压、糖尿病"],  # 5
    [],  # line 6
    ["王𠮷", ID_B, "+86 139 0013 9000", "新墙镇卫生院", "张伟家庭医生团队", "2025年3月1日", "脱贫人口/监测对象"],  # 7
    ["欧阳娜娜", "110105491231002", "0730-8221234", "筻口镇卫生院", "李娜团队", "20250301", ""],  # 8
    ["合计：3人"],  # line 9
]
CSV_EXPECTED = [
    (5, {"name": "张三", "id_number": "11010519491231002x", "phone": "138 0013 8000", "institution": "新墙镇卫生院",
         "team": "张伟家庭医生团队", "contract_start": "2025/3/1", "labels": "高血压、糖尿病"}),
    (7, {"name": "王𠮷", "id_number": ID_B, "phone": "+86 139 0013 9000", "institution": "新墙镇卫生院",
         "team": "张伟家庭医生团队", "contract_start": "2025年3月1日", "labels": "脱贫人口/监测对象"}),
    (8, {"name": "欧阳娜娜", "id_number": "110105491231002", "phone": "0730-8221234", "institution": "筻口镇卫生院",
         "team": "李娜团队", "contract_start": "20250301", "labels": ""}),
]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_encodings(tmp_path, encoding):
    path = write_csv(tmp_path / f"roster-{encoding}.csv", CSV_ROWS, encoding=encoding)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    if encoding == "gb18030":
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")  # the fixture really is not UTF-8
    source, chunks = read_all(path)
    assert source.sheets == [""]
    assert source.skipped_sheets == []
    assert source.fields == set(FIELDS)
    got = records(chunks)
    assert [(n, r) for _, n, r in got] == CSV_EXPECTED
    assert all(sheet == "" for sheet, _, _ in got)


def test_tab_separated(tmp_path):
    path = write_csv(tmp_path / "roster.csv", CSV_ROWS, encoding="gb18030", delimiter="\t", eol="\r\n")
    _, chunks = read_all(path)
    assert [(n, r) for _, n, r in records(chunks)] == CSV_EXPECTED


@pytest.mark.parametrize("suffix", [".txt", ".xlsm"])
def test_only_the_extensions_the_web_accepts(tmp_path, suffix):
    path = write_csv(tmp_path / f"roster{suffix}", CSV_ROWS, delimiter="\t")
    with pytest.raises(SheetFileError, match=f"^不支持的文件类型“\\{suffix}”：请上传 .xlsx、.xls 或 .csv 文件。$"):
        open_roster(path)


def test_csv_windows_line_endings(tmp_path):
    path = write_csv(tmp_path / "crlf.csv", CSV_ROWS, encoding="utf-8-sig", eol="\r\n")
    _, chunks = read_all(path)
    assert [(n, r) for _, n, r in records(chunks)] == CSV_EXPECTED


def test_csv_header_at_the_top_and_extra_columns(tmp_path):
    text = (
        "序号,居民姓名,身份证号,手机号码,联系电话2,签约机构,签约团队,签约时间,备注\n"
        f"1,张三,{ID_A},13800138000,13900139000,新墙镇卫生院,一团队,2025-03-01,无\n"
        f"2,李四,{ID_B},13700137000,,新墙镇卫生院,一团队,2025-03-02,\n"
    )
    source, chunks = read_all(write_text(tmp_path / "plain.csv", text))
    assert source.fields == REQUIRED | {"phone2"}
    got = records(chunks)
    assert [(n, r["name"], r["phone"], r["phone2"]) for _, n, r in got] == [
        (2, "张三", "13800138000", "13900139000"),
        (3, "李四", "13700137000", ""),
    ]
    assert all(set(r) == REQUIRED | {"phone2"} for _, _, r in got)  # 序号 and 备注 are not read


def test_csv_rows_longer_than_the_header(tmp_path):
    """Exports often end data lines with stray separators; the extra fields are ignored."""
    text = (
        "姓名,身份证号,联系电话,签约机构,签约团队,签约日期\n"
        f"张三,{ID_A},13800138000,新墙镇卫生院,一团队,2025-03-01,,\n"
        f"李四,{ID_B},13900139000,新墙镇卫生院,二团队,2025-03-02,多余,\n"
    )
    _, chunks = read_all(write_text(tmp_path / "long.csv", text))
    got = records(chunks)
    assert [(n, r["name"], r["id_number"], r["team"], r["contract_start"]) for _, n, r in got] == [
        (2, "张三", ID_A, "一团队", "2025-03-01"),
        (3, "李四", ID_B, "二团队", "2025-03-02"),
    ]


def test_csv_id_stored_as_number(tmp_path):
    text = "姓名,身份证号,联系电话,签约机构,签约团队,签约日期\n张三,4.30621E+17,13800138000,新墙镇卫生院,一团队,2025-03-01\n"
    _, chunks = read_all(write_text(tmp_path / "sci.csv", text))
    ids = chunks[0].frame["id_number"]
    assert ids.tolist() == ["4.30621E+17"]  # read as text, not converted to a number
    assert validate_ids(ids, TODAY).reason.tolist() == [REASON_NUMBER]


def test_csv_chunking_gives_the_same_rows(tmp_path):
    path = write_csv(tmp_path / "chunks.csv", CSV_ROWS + [["赵六", ID_C, "13800138000", "新墙镇卫生院", "一团队", "2025-03-01", ""]])
    _, whole = read_all(path)
    _, parts = read_all(path, chunk_rows=2)
    assert len(whole) == 1
    assert len(parts) == 3  # lines 5-6, 7-8, 9-10
    assert all(len(c.frame) <= 2 for c in parts)
    assert records(parts) == records(whole)
    assert [n for _, n, _ in records(parts)] == [5, 7, 8, 10]


def test_csv_blank_line_right_under_the_header(tmp_path):
    text = f"姓名,身份证号,联系电话,签约机构,签约团队,签约日期\n\n张三,{ID_A},13800138000,新墙镇卫生院,一团队,2025-03-01\n"
    _, chunks = read_all(write_text(tmp_path / "gap.csv", text))
    assert [(n, r["name"]) for _, n, r in records(chunks)] == [(3, "张三")]


def test_csv_short_first_data_line(tmp_path):
    text = (
        "姓名,身份证号,联系电话,签约机构,签约团队,签约日期,人群分类\n"
        f"张三,{ID_A},13800138000,新墙镇卫生院,一团队,2025-03-01\n"
        f"李四,{ID_B},13900139000,新墙镇卫生院,一团队,2025-03-01,高血压\n"
    )
    _, chunks = read_all(write_text(tmp_path / "short.csv", text))
    assert [(n, r["name"], r["labels"]) for _, n, r in records(chunks)] == [(2, "张三", ""), (3, "李四", "高血压")]


def test_csv_delimiter_not_fooled_by_separators_inside_a_cell(tmp_path):
    text = (
        "姓名,身份证号,联系电话,签约机构,签约团队,签约日期,人群分类\n"
        f"张三,{ID_A},13800138000,新墙镇卫生院,一团队,2025-03-01,\"高血压;糖尿病;老年人;残疾人;失能;脱贫人口;特殊家庭;孕妇\"\n"
    )
    _, chunks = read_all(write_text(tmp_path / "semi.csv", text))
    assert [r["labels"] for _, _, r in records(chunks)] == ["高血压;糖尿病;老年人;残疾人;失能;脱贫人口;特殊家庭;孕妇"]


def test_abandoned_csv_iteration_closes_the_file(tmp_path):
    path = write_csv(tmp_path / "abandon.csv", CSV_ROWS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_roster(path, chunk_rows=1)
        chunks = source.chunks()
        next(chunks)
        chunks.close()  # what happens when the importer stops on an error
        del chunks, source
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


# ---------------------------------------------------------------------------
# Files that cannot be read
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, suffix_shown",
    [("roster.pdf", ".pdf"), ("roster.docx", ".docx"), ("roster.et", ".et"), ("roster", "无扩展名")],
)
def test_unsupported_extension(tmp_path, name, suffix_shown):
    path = tmp_path / name
    path.write_bytes(b"not a roster")
    with pytest.raises(SheetFileError) as info:
        open_roster(path)
    assert str(info.value) == f"不支持的文件类型“{suffix_shown}”：请上传 .xlsx、.xls 或 .csv 文件。"


def test_upper_case_extension_is_accepted(tmp_path):
    path = write_csv(tmp_path / "ROSTER.CSV", CSV_ROWS)
    _, chunks = read_all(path)
    assert len(records(chunks)) == 3


@pytest.mark.parametrize("name", ["empty.csv", "empty.xlsx", "empty.xls"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(SheetFileError, match="^文件为空或不存在。$"):
        open_roster(path)


def test_missing_file(tmp_path):
    with pytest.raises(SheetFileError, match="^文件为空或不存在。$"):
        open_roster(tmp_path / "nowhere.xlsx")


@pytest.mark.parametrize("name", ["corrupt.xlsx", "corrupt.xls"])
def test_corrupt_workbook(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(random_bytes(4096))
    with pytest.raises(SheetFileError) as info:
        open_roster(path)
    assert str(info.value) == "无法读取 Excel 文件：文件已损坏、被加密或不是有效的 Excel 文件。"


def test_csv_renamed_to_xlsx(tmp_path):
    path = write_csv(tmp_path / "really-a-csv.xlsx", CSV_ROWS)
    with pytest.raises(SheetFileError, match="无法读取 Excel 文件"):
        open_roster(path)


def random_bytes(n: int) -> bytes:
    import random

    rng = random.Random(20251101)
    data = bytes(rng.randrange(256) for _ in range(n))
    assert not data.startswith((b"PK", b"\xd0\xcf\x11\xe0"))  # neither zip nor OLE
    return data


NO_HEADER = "未找到表头：前30行中没有同时包含“姓名”和“身份证号”的行。"


def test_csv_without_header(tmp_path):
    text = f"花名册\n张三,{ID_A},13800138000,新墙镇卫生院,一团队,2025-03-01\n"
    with pytest.raises(SheetFileError) as info:
        open_roster(write_text(tmp_path / "nohead.csv", text, "gb18030"))
    assert str(info.value) == NO_HEADER


def test_csv_header_missing_required_columns(tmp_path):
    text = f"签约居民花名册\n姓名,身份证号,电话,备注\n张三,{ID_A},13800138000,\n"
    with pytest.raises(SheetFileError) as info:
        open_roster(write_text(tmp_path / "missing.csv", text))
    assert str(info.value) == "表头第2行缺少必需列：签约机构、签约团队、签约日期。"


def test_csv_undecodable(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x81\x30" * 20)
    with pytest.raises(SheetFileError, match="^无法识别文件编码，请另存为UTF-8或GBK编码的CSV。$"):
        open_roster(path)


def test_xlsx_without_header(tmp_path):
    path = tmp_path / "nohead.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Sheet1")
    ws.write_string(0, 0, "XX县家庭医生签约居民花名册")
    ws.write_row(2, 0, ["张三", ID_A, "13800138000", "新墙镇卫生院"])
    wb.close()
    with pytest.raises(SheetFileError) as info:
        open_roster(path)
    assert str(info.value) == f"工作表“Sheet1”：{NO_HEADER}"


def test_xlsx_first_sheet_without_header_second_with(tmp_path):
    path = tmp_path / "second.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("封面").write_string(0, 0, "2025年度家庭医生签约名册")
    wb.add_worksheet("空白")  # no cells at all: neither read nor reported
    data = wb.add_worksheet("数据")
    data.write_row(0, 0, HEADER)
    data.write_row(1, 0, ["张三", ID_A, "13800138000", "新墙镇卫生院", "一团队", "2025-03-01", ""])
    wb.close()
    source, chunks = read_all(path)
    assert source.sheets == ["数据"]
    assert source.skipped_sheets == ["封面"]
    assert [(sheet, n) for sheet, n, _ in records(chunks)] == [("数据", 2)]


def test_xlsx_missing_required_columns(tmp_path):
    path = tmp_path / "missing.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("名册")
    ws.write_string(0, 0, "标题")
    ws.write_row(1, 0, ["姓名", "身份证号", "联系电话", "签约团队"])
    wb.close()
    with pytest.raises(SheetFileError) as info:
        open_roster(path)
    assert str(info.value) == "工作表“名册”：表头第2行缺少必需列：签约机构、签约日期。"


def test_workbook_without_any_cells(tmp_path):
    path = tmp_path / "blank.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("Sheet1")
    wb.close()
    with pytest.raises(SheetFileError, match="^文件中没有数据。$"):
        open_roster(path)


def test_a_row_of_spaces_is_skipped_like_a_blank_line(tmp_path):
    text = ",".join(HEADER) + "\n张三,430621199001011234,13800138000,新墙镇卫生院,甲团队,2026-01-01,\n" \
        + ",,,, , , \n" + "  , ,  ,,,,\n" + "李四,430621199001021230,13800138001,新墙镇卫生院,甲团队,2026-01-01,\n"
    _source, chunks = read_all(write_text(tmp_path / "spaces.csv", text), chunk_rows=1)
    assert [row["name"] for chunk in chunks for row in chunk.frame.to_dict("records")] == ["张三", "李四"]


# ---------------------------------------------------------------------------
# CSV blocks: the file is cut into raw blocks of whole rows (parsed by the workers that
# validate them); wherever the cuts fall, the rows must be the ones pandas reads from the file
# ---------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import app.core.sheets as reader_module  # noqa: E402

CELL = st.text(alphabet=list('张伟村组1-2 ,，"\n、'), max_size=8)


def _reference(path: Path, encoding: str, skip: int) -> list[dict]:
    """The whole file in one pandas read: what the blocks must add up to."""
    frame = pd.read_csv(path, encoding=encoding, header=None, skiprows=skip, dtype=str, keep_default_na=False,
                        names=range(len(HEADER)), index_col=False, skip_blank_lines=False)
    frame.columns = FIELDS
    return [row for row in frame.to_dict("records") if any(v.strip() for v in row.values())]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=st.lists(st.lists(CELL, min_size=len(HEADER), max_size=len(HEADER)), min_size=1, max_size=25),
    chunk_rows=st.integers(1, 7),
    read_bytes=st.sampled_from([1, 7, 64, 1 << 20]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]),
    eol=st.sampled_from(["\n", "\r\n"]),
    title=st.booleans(),
)
def test_csv_blocks_give_the_rows_pandas_reads_wherever_they_are_cut(tmp_path_factory, monkeypatch, cells,
                                                                    chunk_rows, read_bytes, encoding, eol, title):
    """Quoted values holding commas, doubled quotes and line breaks, CRLF, a BOM, GB18030,
    title rows, blocks of 1-7 rows read 1 byte to 1 MB at a time: the rows are those of one
    pandas read of the whole file, in order; a file without multi-line values numbers each
    row by its line."""
    monkeypatch.setattr(reader_module, "CSV_READ_BYTES", read_bytes)
    path = tmp_path_factory.mktemp("blocks") / "roster.csv"
    with path.open("w", encoding=encoding, newline="") as fh:
        if title:
            fh.write("岳阳县签约居民名册" + eol + eol)
        writer = csv.writer(fh, lineterminator=eol)
        writer.writerow(HEADER)
        writer.writerows(cells)
    skip = 3 if title else 1

    source = open_roster(path, chunk_rows=chunk_rows)
    assert source.csv is not None  # the block reader, not the fallback
    chunks = list(source.chunks())
    got = [dict(row) for chunk in chunks for row in chunk.frame.to_dict("records")]
    assert got == _reference(path, encoding, skip)
    # the raw blocks are the same rows: they join up to the data part of the file
    blocks = list(open_roster(path, chunk_rows=chunk_rows).blocks())
    header_end = (HEADER[-1] + eol).encode("utf-8" if encoding == "utf-8-sig" else encoding)
    assert b"".join(b.data for b in blocks) == path.read_bytes().split(header_end, 1)[1]
    assert all(block.lines <= chunk_rows for block in blocks if b'"' not in block.data)
    if not any("\n" in cell for row in cells for cell in row):
        numbers = [int(n) for chunk in chunks for n in chunk.row_numbers]
        kept = [skip + 1 + i for i, row in enumerate(cells) if any(cell.strip() for cell in row)]
        assert numbers == kept


def test_csv_title_rows_with_quotes_are_read_by_pandas_from_the_start(tmp_path):
    """Title rows that are not plain lines (a quoted title here) leave the file to pandas'
    own reader, which skips rows the way it counts them."""
    path = tmp_path / "quoted-title.csv"
    path.write_text('"岳阳县签约居民名册\n（2026年11月）"\n' + ",".join(HEADER) + "\n"
                    + ",".join(["张三", ID_A, "13800138000", "荣家湾镇卫生院", "一组", "2026-01-01", ""]) + "\n",
                    encoding="utf-8")
    source, chunks = read_all(path)
    assert source.csv is None
    assert [r[2]["name"] for r in records(chunks)] == ["张三"]
