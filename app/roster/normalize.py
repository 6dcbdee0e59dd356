"""Pure, vectorised cleaning and validation of roster columns.

Everything here works on plain values or pandas Series and knows nothing of the database,
so it is tested directly and reused by the importer, the demo data and the benchmark.
Reasons are in Chinese: they go straight into the error report an administrator reads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from app.core.cells import clean_one, clean_text, map_values, squeeze_one
from app.core.sheets import CHUNK_ROWS, Header, header_key, HEADER_SCAN_ROWS, HeaderError, open_sheet, SheetSource
from app.core.upload_guard import ReadLimits

# ---------------------------------------------------------------------------
# Header detection and column mapping
# ---------------------------------------------------------------------------

#: canonical field -> the column names seen in real contract-system exports
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "居民姓名", "签约居民姓名", "签约人姓名", "患者姓名", "签约居民"),
    "id_number": ("身份证号", "身份证号码", "证件号码", "居民身份证号", "居民身份证号码", "证件号", "身份证"),
    "phone": ("联系电话", "手机号码", "电话", "手机号", "联系方式", "电话号码", "本人电话", "手机"),
    "phone2": ("联系电话2", "备用电话", "其他联系电话", "家属电话", "紧急联系人电话", "第二联系电话"),
    "institution": ("签约机构", "机构名称", "签约机构名称", "医疗机构", "所属机构", "签约单位", "机构"),
    "institution_code": ("机构编码", "机构代码", "签约机构编码"),
    "team": ("签约团队", "团队名称", "家庭医生团队", "签约团队名称", "团队", "所属团队"),
    "doctor": ("签约医生", "家庭医生", "签约医生姓名", "责任医生", "家庭医生姓名"),
    "doctor_phone": ("医生电话", "医生联系电话", "团队电话", "家庭医生电话"),
    "contract_start": ("签约日期", "签约时间", "签约开始日期", "协议开始日期", "服务开始日期"),
    "contract_end": ("到期日期", "签约到期日期", "协议截止日期", "签约结束日期", "截止日期", "服务截止日期"),
    "labels": ("人群分类", "重点人群", "人群类型", "人群类别", "签约人群", "人群标签"),
    "sex": ("性别",),
    "birth_date": ("出生日期", "出生年月", "出生年月日"),
    "address": ("住址", "现住址", "家庭住址", "居住地址", "村(社区)", "村/社区", "地址", "所属村", "村组"),
    "county": ("县区", "县市区", "所属县区", "区县", "县(市、区)"),
}

REQUIRED_FIELDS = ("name", "id_number", "phone", "institution", "team", "contract_start")

FIELD_LABELS = {
    "name": "姓名",
    "id_number": "身份证号",
    "phone": "联系电话",
    "phone2": "备用电话",
    "institution": "签约机构",
    "institution_code": "机构编码",
    "team": "签约团队",
    "doctor": "签约医生",
    "doctor_phone": "医生电话",
    "contract_start": "签约日期",
    "contract_end": "到期日期",
    "labels": "人群分类",
    "sex": "性别",
    "birth_date": "出生日期",
    "address": "住址",
    "county": "县区",
}

_ALIAS_INDEX: dict[str, str] = {
    header_key(alias): field for field, aliases in COLUMN_ALIASES.items() for alias in aliases
}


def match_column(cell: object) -> str | None:
    """The canonical field a header cell names, or None."""
    key = header_key(cell)
    if not key:
        return None
    if key in _ALIAS_INDEX:
        return _ALIAS_INDEX[key]
    # "联系电话(必填)", "身份证号【18位】": drop a trailing note in brackets
    stripped = re.sub(r"[(\[【][^(\[【]*[)\]】]$", "", key)
    return _ALIAS_INDEX.get(stripped)


def map_columns(cells: list[object]) -> dict[str, int]:
    """Field -> column index for one header row; a second phone column becomes phone2."""
    mapping: dict[str, int] = {}
    for idx, cell in enumerate(cells):
        field = match_column(cell)
        if field is None:
            continue
        if field in mapping:
            if field == "phone" and "phone2" not in mapping:
                mapping["phone2"] = idx
            continue
        mapping[field] = idx
    return mapping


def find_header(rows: list[list[object]]) -> Header:
    """Find the header among the first rows (title rows and blank lines come first)."""
    best: tuple[int, dict[str, int]] | None = None
    for idx, cells in enumerate(rows[:HEADER_SCAN_ROWS]):
        mapping = map_columns(cells)
        if "name" in mapping and "id_number" in mapping and len(mapping) >= 3:
            best = (idx, mapping)
            break
    if best is None:
        raise HeaderError(
            "未找到表头：前%d行中没有同时包含“姓名”和“身份证号”的行。" % HEADER_SCAN_ROWS
        )
    idx, mapping = best
    missing = [FIELD_LABELS[f] for f in REQUIRED_FIELDS if f not in mapping]
    if missing:
        raise HeaderError("表头第%d行缺少必需列：%s。" % (idx + 1, "、".join(missing)))
    return Header(row_index=idx, columns=mapping)


def open_roster(path, chunk_rows: int = CHUNK_ROWS, limits: ReadLimits | None = None) -> SheetSource:
    """A roster file, its header found by the roster's column names."""
    return open_sheet(path, chunk_rows, find_header, limits)


# ---------------------------------------------------------------------------
# Resident ID (GB 11643-1999)
# ---------------------------------------------------------------------------

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.array(list("10X98765432"))


def id_check_digits(prefixes: pd.Series | list[str]) -> np.ndarray:
    """Check characters for 17-digit prefixes (all must be 17 ASCII digits)."""
    values = list(prefixes)
    if not values:
        return np.array([], dtype="<U1")
    digits = np.frombuffer("".join(values).encode("ascii"), dtype=np.uint8).reshape(-1, 17)
    totals = (digits.astype(np.int64) - 48) @ _ID_WEIGHTS
    return _ID_CHECK[totals % 11]


def id_check_digit(prefix17: str) -> str:
    return str(id_check_digits([prefix17])[0])


@dataclass
class IdResult:
    id18: pd.Series  # '' where invalid
    birth_date: pd.Series  # datetime64, NaT where invalid
    sex: pd.Series  # 'M' / 'F' / ''
    reason: pd.Series  # '' where valid
    converted15: pd.Series  # bool: a legacy 15-digit number was converted


_REASON_ID_EMPTY = "身份证号为空"
_REASON_ID_NUMERIC = "身份证号被存成了数字，末几位已丢失：请把该列设为文本格式后重新导出"
_REASON_ID_FORMAT = "身份证号应为18位（末位可为X）或15位旧号码"
_NUMERIC_RE = re.compile(r"E\+|^\d+\.\d+$")


def _canonical_id(value: object) -> tuple[str, str, bool]:
    """(18-character candidate or '', reason, converted from 15 digits)."""
    if type(value) is str and len(value) == 18 and value.isascii() and value[:17].isdigit():
        last = value[17]
        if last.isdigit() or last == "X":
            return value, "", False  # the common case, already clean
        if last == "x":
            return value[:17] + "X", "", False
    text = "".join(clean_one(value).split()).upper().lstrip("'‘’`")
    if not text:
        return "", _REASON_ID_EMPTY, False
    if text.isascii():
        if len(text) == 18 and text[:17].isdigit() and (text[17].isdigit() or text[17] == "X"):
            return text, "", False
        if len(text) == 15 and text.isdigit():
            prefix = text[:6] + "19" + text[6:]
            return prefix + id_check_digit(prefix), "", True
        if _NUMERIC_RE.search(text):
            return "", _REASON_ID_NUMERIC, False
    return "", _REASON_ID_FORMAT, False


def validate_ids(raw: pd.Series, today: date) -> IdResult:
    index = raw.index
    parsed = [_canonical_id(v) for v in raw.to_numpy(dtype=object)]
    candidates = np.array([p[0] for p in parsed], dtype=object)
    reason = np.array([p[1] for p in parsed], dtype=object)
    converted = np.fromiter((p[2] for p in parsed), dtype=bool, count=len(parsed))
    has = candidates != ""

    birth = pd.Series(pd.NaT, index=index, dtype="datetime64[us]")
    sex = np.full(len(parsed), "", dtype=object)
    if has.any():
        digits = np.frombuffer("".join(candidates[has]).encode("ascii"), dtype=np.uint8).reshape(-1, 18)
        values = digits.astype(np.int64) - 48
        check = _ID_CHECK[(values[:, :17] @ _ID_WEIGHTS) % 11]
        last = digits[:, 17].view("S1").astype(str)
        bad_check = check != last
        year = values[:, 6] * 1000 + values[:, 7] * 100 + values[:, 8] * 10 + values[:, 9]
        month = values[:, 10] * 10 + values[:, 11]
        day = values[:, 12] * 10 + values[:, 13]
        dates = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce")
        today_ts = pd.Timestamp(today)
        oldest = today_ts - pd.DateOffset(years=120)
        rows = np.flatnonzero(has)
        sub_reason = np.full(len(rows), "", dtype=object)
        sub_reason[dates.isna().to_numpy()] = "身份证号中的出生日期无效"
        sub_reason[(dates > today_ts).to_numpy()] = "身份证号中的出生日期晚于今天"
        sub_reason[(dates < oldest).to_numpy()] = "身份证号中的出生日期早于120年前"
        sub_reason[bad_check] = "身份证号校验位不符，可能录入有误"
        reason[rows] = sub_reason
        ok = sub_reason == ""
        birth.iloc[rows[ok]] = dates.to_numpy()[ok]
        sex[rows[ok]] = np.where(values[ok, 16] % 2 == 1, "M", "F")
    valid = reason == ""
    id18 = np.where(valid, candidates, "")
    return IdResult(
        id18=pd.Series(id18, index=index, dtype=object),
        birth_date=birth,
        sex=pd.Series(sex, index=index, dtype=object),
        reason=pd.Series(reason, index=index, dtype=object),
        converted15=pd.Series(converted & valid, index=index),
    )


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------

_EXCEL_EPOCH = pd.Timestamp("1899-12-30")


def parse_dates(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse the date spellings of roster exports. Returns (datetime64 series, empty mask):
    2025-03-01, 2025/3/1, 2025.3.1, 2025年3月1日, 20250301, '2025-03-01 00:00:00', and Excel
    serial numbers (45717). A roster has few distinct dates: each is parsed once."""
    values = raw.to_numpy(dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    parsed, empty = _parse_distinct_dates(pd.Series(uniques, dtype=object))
    index = raw.index
    return (
        pd.Series(parsed.to_numpy()[codes], index=index, dtype="datetime64[us]"),
        pd.Series(empty.to_numpy()[codes], index=index),
    )


def _parse_distinct_dates(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    s = clean_text(raw).astype(str)
    empty = s == ""
    serial = s.str.fullmatch(r"\d{5}(?:\.0+)?")
    compact = s.str.fullmatch(r"\d{8}")
    text = s.str.replace(r"[年月/.]", "-", regex=True).str.replace("日", "", regex=False)
    text = text.str.split(r"[ T]", n=1, regex=True).str[0]
    parsed = pd.to_datetime(text.where(~serial & ~compact, ""), format="%Y-%m-%d", errors="coerce").astype(
        "datetime64[us]"
    )
    if compact.any():
        parsed[compact] = pd.to_datetime(s[compact], format="%Y%m%d", errors="coerce")
    if serial.any():
        days = pd.to_numeric(s[serial], errors="coerce")
        parsed[serial] = _EXCEL_EPOCH + pd.to_timedelta(days, unit="D")
    return parsed, empty


# ---------------------------------------------------------------------------
# Sex column
# ---------------------------------------------------------------------------

_SEX_VALUES = {"男": "M", "女": "F", "M": "M", "F": "F", "1": "M", "2": "F", "男性": "M", "女性": "F"}


def parse_sex(raw: pd.Series) -> pd.Series:
    """'M' / 'F', '' when empty, '?' when unreadable."""
    return map_values(raw, lambda v: _SEX_VALUES.get(squeeze_one(v).upper(), "?") if squeeze_one(v) else "", few=True)


# ---------------------------------------------------------------------------
# Key-population labels
# ---------------------------------------------------------------------------


def default_contract_end(start: pd.Series) -> pd.Series:
    """A family-doctor contract runs one year unless the roster says otherwise."""
    return start + pd.DateOffset(years=1) - pd.Timedelta(days=1)

