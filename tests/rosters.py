"""Build roster export files the way contract systems hand them over (title rows, blank
lines, merged cells, variant column names, odd encodings), plus valid resident IDs.

Everything here is invented test data: the IDs carry a correct GB 11643 check digit but
belong to nobody.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from app.roster.normalize import id_check_digit

HEADER = ["姓名", "身份证号", "联系电话", "签约机构", "签约团队", "签约医生", "签约日期", "人群分类", "住址"]
# the same fields under the other names real exports use
VARIANT_HEADER = ["居民姓名", "证件号码", "手机号码", "机构名称", "团队名称", "家庭医生", "签约时间", "重点人群", "现住址"]

INSTITUTION = "新墙镇卫生院"
TEAM = "张伟家庭医生团队"
OTHER_TEAM = "李娜家庭医生团队"
REGION = "430621"

_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def fullwidth(text: str) -> str:
    return text.translate(_FULLWIDTH)


def make_id(birth: str = "19800101", seq: str = "123", region: str = REGION) -> str:
    """A valid 18-digit ID: region + birth date (YYYYMMDD) + 3-digit sequence + check digit.
    The sequence's last digit decides the sex (odd = male)."""
    prefix = f"{region}{birth}{seq}"
    assert len(prefix) == 17, prefix
    return prefix + id_check_digit(prefix)


def id_ending(last4: str, region: str = REGION, start: date = date(1950, 1, 1)) -> str:
    """A valid ID whose last four characters are last4 (e.g. '123X'): walks birth dates
    until the check digit comes out right."""
    day = start
    while True:
        candidate = make_id(day.strftime("%Y%m%d"), last4[:3], region)
        if candidate.endswith(last4):
            return candidate
        day += timedelta(days=1)


def bad_check_digit(id18: str) -> str:
    wrong = "0" if id18[17] != "0" else "1"
    return id18[:17] + wrong


def to_15(id18: str) -> str:
    """The legacy 15-digit form of a 19xx ID (no century, no check digit)."""
    assert id18[6:8] == "19"
    return id18[:6] + id18[8:17]


@dataclass
class Person:
    name: str
    id: str
    phone: str = "13800138000"
    institution: str = INSTITUTION
    team: str = TEAM
    doctor: str = "张伟"
    start: str = "2026-03-01"
    labels: str = "高血压"
    address: str = "新墙村3组"

    def row(self, header: list[str] = HEADER) -> list[str]:
        values = {
            "name": self.name,
            "id": self.id,
            "phone": self.phone,
            "institution": self.institution,
            "team": self.team,
            "doctor": self.doctor,
            "start": self.start,
            "labels": self.labels,
            "address": self.address,
        }
        fields = ["name", "id", "phone", "institution", "team", "doctor", "start", "labels", "address"]
        by_position = dict(zip(HEADER, fields))
        by_variant = dict(zip(VARIANT_HEADER, fields))
        return [values[by_position.get(col) or by_variant[col]] for col in header]


def people(n: int, *, first_seq: int = 100, birth_year: int = 1960, **overrides) -> list[Person]:
    """n distinct valid residents of the default team."""
    out = []
    for i in range(n):
        birth = date(birth_year, 1, 1) + timedelta(days=37 * i)
        ident = make_id(birth.strftime("%Y%m%d"), f"{first_seq + i:03d}")
        phone = f"139{i:08d}"
        out.append(Person(name=f"居民{chr(0x4E00 + i)}", id=ident, phone=phone, **overrides))
    return out


def rows_of(persons: list[Person], header: list[str] = HEADER) -> list[list[str]]:
    return [p.row(header) for p in persons]


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------


def write_csv(
    path: Path,
    rows: list[list[str]],
    header: list[str] = HEADER,
    *,
    encoding: str = "utf-8",
    title: str | None = None,
) -> Path:
    """CSV in the given encoding ('utf-8', 'utf-8-sig', 'gb18030'); a title line and a blank
    line above the header when title is given."""
    lines = []
    if title:
        lines += [title, ""]
    lines.append(",".join(header))
    lines += [",".join(_csv_cell(v) for v in row) for row in rows]
    Path(path).write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return Path(path)


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_xlsx(
    path: Path,
    rows: list[list[object]],
    header: list[str] = HEADER,
    *,
    title: str | None = "岳阳县家庭医生签约居民花名册",
    blank_lines_after: tuple[int, ...] = (),
    merge_column: str | None = None,
    footer: str | None = None,
    sheet_title: str = "签约居民",
) -> Path:
    """An export as a contract system writes it, built with openpyxl: a merged title row, a
    blank line, the header, data rows (blank lines inserted after the given data indexes),
    optionally one column merged over runs of equal values, and a footer line.

    Returns the path; data row i lands on sheet row first_data_row(...) + i (+ blanks)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = sheet_title
    ncols = len(header)
    r = 1
    if title:
        ws.cell(row=1, column=1, value=title)
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncols)
        r = 3  # row 2 stays blank
    for c, name in enumerate(header, start=1):
        ws.cell(row=r, column=c, value=name)
    r += 1
    placed: list[int] = []
    for i, row in enumerate(rows):
        for c, value in enumerate(row, start=1):
            if value is not None and value != "":
                ws.cell(row=r, column=c, value=value)
        placed.append(r)
        r += 1
        if i in blank_lines_after:
            r += 1
    if merge_column is not None and rows:
        col = header.index(merge_column) + 1
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i][col - 1] != rows[start][col - 1] or placed[i] != placed[i - 1] + 1:
                if i - start > 1:
                    for k in range(start + 1, i):  # the merged cells hold nothing
                        ws.cell(row=placed[k], column=col, value=None)
                    ws.merge_cells(start_row=placed[start], start_column=col, end_row=placed[i - 1], end_column=col)
                start = i
    if footer:
        ws.cell(row=r + 1, column=1, value=footer)
    wb.save(path)
    return Path(path)


def xlsx_rows(title: bool = True) -> int:
    """Sheet row number of the first data row written by write_xlsx."""
    return 4 if title else 2


def write_xls(
    path: Path,
    rows: list[list[object]],
    header: list[str] = HEADER,
    *,
    title: str | None = "岳阳县家庭医生签约居民花名册",
    merge_column: str | None = None,
) -> Path:
    """The old .xls format (xlwt): title merged over the header's width, a blank line, the
    header, the data; optionally one column merged over runs of equal values."""
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Sheet1")
    r = 0
    if title:
        ws.write_merge(0, 0, 0, len(header) - 1, title)
        r = 2
    for c, name in enumerate(header):
        ws.write(r, c, name)
    r += 1
    col = header.index(merge_column) if merge_column else None
    start = 0
    for i in range(len(rows) + 1):
        if col is not None and (i == len(rows) or rows[i][col] != rows[start][col]):
            if i - start > 1:
                ws.write_merge(r + start, r + i - 1, col, col, rows[start][col])
            elif i - start == 1:
                ws.write(r + start, col, rows[start][col])
            start = i
        if i == len(rows):
            break
        for c, value in enumerate(rows[i]):
            if c == col:
                continue
            ws.write(r + i, c, value)
    wb.save(str(path))
    return Path(path)
