"""Pure, vectorised cleaning and validation of roster columns.

Everything here works on plain values or pandas Series and knows nothing of the database,
so it is tested directly and reused by the importer, the demo data and the benchmark.
Reasons are in Chinese: they go straight into the error report an administrator reads.
"""
from __future__ import annotations

import hmac
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

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

HEADER_SCAN_ROWS = 30


def _header_key(cell: object) -> str:
    text = unicodedata.normalize("NFKC", str(cell or ""))
    return re.sub(r"[\s*※]+", "", text).strip()


_ALIAS_INDEX: dict[str, str] = {
    _header_key(alias): field for field, aliases in COLUMN_ALIASES.items() for alias in aliases
}


def match_column(cell: object) -> str | None:
    """The canonical field a header cell names, or None."""
    key = _header_key(cell)
    if not key:
        return None
    if key in _ALIAS_INDEX:
        return _ALIAS_INDEX[key]
    # "联系电话(必填)", "身份证号【18位】": drop a trailing note in brackets
    stripped = re.sub(r"[(\[【][^(\[【]*[)\]】]$", "", key)
    return _ALIAS_INDEX.get(stripped)


@dataclass
class Header:
    row_index: int  # 0-based index in the rows given
    columns: dict[str, int]  # field -> 0-based column index


class HeaderError(ValueError):
    pass


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


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------


def clean_text(series: pd.Series) -> pd.Series:
    """Full-width to half-width (NFKC), trimmed; missing values become ''."""
    s = series.fillna("").astype(str)
    return s.str.normalize("NFKC").str.strip()


def squeeze(series: pd.Series) -> pd.Series:
    """clean_text and remove every space (for IDs, names of units)."""
    return clean_text(series).str.replace(r"\s+", "", regex=True)


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


def validate_ids(raw: pd.Series, today: date) -> IdResult:
    s = squeeze(raw).str.upper().str.lstrip("'‘’`")  # Excel's text marker survives some exports
    reason = pd.Series("", index=s.index, dtype=object)
    id18 = pd.Series("", index=s.index, dtype=object)

    numeric = s.str.contains(r"E\+|^\d+\.\d+$", regex=True)
    is18 = s.str.fullmatch(r"\d{17}[\dX]")
    is15 = s.str.fullmatch(r"\d{15}")

    reason[s == ""] = "身份证号为空"
    reason[(s != "") & numeric] = "身份证号被存成了数字，末几位已丢失：请把该列设为文本格式后重新导出"
    reason[(s != "") & ~numeric & ~is18 & ~is15] = "身份证号应为18位（末位可为X）或15位旧号码"

    # 15-digit legacy numbers (GB 11643-1989): insert the century, add a check digit
    if is15.any():
        legacy = s[is15]
        prefix = legacy.str[:6] + "19" + legacy.str[6:]
        id18[is15] = prefix + id_check_digits(prefix)
    if is18.any():
        full = s[is18]
        expected = id_check_digits(full.str[:17])
        ok = full.str[17].to_numpy() == expected
        good_index = full.index[ok]
        id18[good_index] = full[ok]
        reason[full.index[~ok]] = "身份证号校验位不符，可能录入有误"

    has_id = id18 != ""
    birth = pd.to_datetime(id18.where(has_id, "").str[6:14], format="%Y%m%d", errors="coerce")
    bad_birth = has_id & birth.isna()
    reason[bad_birth] = "身份证号中的出生日期无效"
    today_ts = pd.Timestamp(today)
    future = has_id & birth.notna() & (birth > today_ts)
    reason[future] = "身份证号中的出生日期晚于今天"
    too_old = has_id & birth.notna() & (birth < today_ts - pd.DateOffset(years=120))
    reason[too_old] = "身份证号中的出生日期早于120年前"
    valid = has_id & (reason == "")
    id18 = id18.where(valid, "")
    birth = birth.where(valid)
    sex_digit = pd.to_numeric(id18.where(valid, "0").str[16], errors="coerce").fillna(0)
    sex = pd.Series(np.where(sex_digit % 2 == 1, "M", "F"), index=s.index).where(valid, "")
    return IdResult(id18=id18, birth_date=birth, sex=sex, reason=reason, converted15=is15 & valid)


def hash_id(key: bytes, id18: str) -> str:
    return hmac.digest(key, id18.encode("ascii"), "sha256").hex()


def hash_ids(key: bytes, ids: pd.Series) -> pd.Series:
    return pd.Series([hash_id(key, v) for v in ids], index=ids.index, dtype=object)


def mask_id(id18: str) -> str:
    """430621********123X: region code and the last four, never the birth date. Values too
    short to be an ID keep only their first two characters."""
    if len(id18) >= 14:
        return id18[:6] + "*" * (len(id18) - 10) + id18[-4:]
    return id18[:2] + "*" * max(len(id18) - 2, 0)


def mask_ids(ids: pd.Series) -> pd.Series:
    return ids.str[:6] + "********" + ids.str[-4:]


# ---------------------------------------------------------------------------
# Phones
# ---------------------------------------------------------------------------

MOBILE_RE = r"1[3-9]\d{9}"
LANDLINE_RE = r"0\d{9,11}"


def normalize_phone_values(raw: pd.Series) -> pd.DataFrame:
    """Clean phone cells: returns columns phone, extra (a second number in the same cell)
    and reason ('' when dialable, or empty when the cell was empty)."""
    s = clean_text(raw)
    if s.empty:
        return pd.DataFrame(
            {"phone": s.astype(object), "extra": s.astype(object), "reason": s.astype(object), "empty": s == ""}
        )
    s = s.str.replace(r"^(\d+)\.0+$", r"\1", regex=True)  # a number stored as 13800138000.0
    parts = s.str.split(r"\s*[/,，;；、|]\s*", n=1, regex=True, expand=True)
    if parts.shape[1] == 1:
        parts[1] = None
    first = parts[0].fillna("")
    extra = parts[1].fillna("")
    phone, reason = _normalize_one_phone(first)
    extra_phone, extra_reason = _normalize_one_phone(extra)
    reason = reason.mask((reason == "") & (extra != "") & (extra_reason != ""), "同一单元格中的第二个号码无法识别")
    return pd.DataFrame({"phone": phone, "extra": extra_phone, "reason": reason, "empty": s == ""})


def _normalize_one_phone(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    sci = s.str.contains(r"[Ee]\+", regex=True)
    digits = s.str.replace(r"[\s\-—()（）.]", "", regex=True)
    digits = digits.str.replace(r"^(?:\+86|0086|86)(?=1[3-9]\d{9}$)", "", regex=True)
    digits = digits.str.replace(r"^(?:\+86|0086)0?(?=[2-9]\d{8,10}$)", "0", regex=True)  # +86 730 …
    mobile = digits.str.fullmatch(MOBILE_RE)
    landline = digits.str.fullmatch(LANDLINE_RE)
    no_area = digits.str.fullmatch(r"[2-9]\d{6,7}")
    reason = pd.Series("", index=s.index, dtype=object)
    reason[(s != "") & ~mobile & ~landline] = "电话号码格式不正确（应为11位手机号或带区号的固定电话）"
    reason[(s != "") & no_area] = "固定电话缺少区号"
    reason[(s != "") & sci] = "电话号码被存成了科学计数法，无法还原"
    phone = digits.where(mobile | landline, "")
    return phone, reason


def format_phone(phone: str | None) -> str:
    """For display where a call is made: 138 0013 8000 / 0730-8221234."""
    if not phone:
        return ""
    if re.fullmatch(MOBILE_RE, phone):
        return f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    if phone.startswith(("010", "02")):
        return f"{phone[:3]}-{phone[3:]}"
    if phone.startswith("0"):
        return f"{phone[:4]}-{phone[4:]}"
    return phone


def mask_phone(phone: str | None) -> str:
    """For lists and reports: 138****8000."""
    if not phone:
        return ""
    if len(phone) >= 7:
        return phone[:3] + "****" + phone[-4:]
    return "****"


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------

_EXCEL_EPOCH = pd.Timestamp("1899-12-30")


def parse_dates(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse the date spellings of roster exports. Returns (datetime64 series, empty mask):
    2025-03-01, 2025/3/1, 2025.3.1, 2025年3月1日, 20250301, '2025-03-01 00:00:00', and Excel
    serial numbers (45717)."""
    s = clean_text(raw)
    empty = s == ""
    serial = s.str.fullmatch(r"\d{5}(?:\.0+)?")
    compact = s.str.fullmatch(r"\d{8}")
    text = s.str.replace(r"[年月/.]", "-", regex=True).str.replace("日", "", regex=False)
    text = text.str.split(r"[ T]", n=1, regex=True).str[0]
    parsed = pd.to_datetime(text.where(~serial & ~compact, ""), format="%Y-%m-%d", errors="coerce")
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
    s = squeeze(raw).str.upper()
    return s.map(lambda v: _SEX_VALUES.get(v, "?") if v else "")


# ---------------------------------------------------------------------------
# Key-population labels
# ---------------------------------------------------------------------------

LABEL_SEPARATORS = r"[、，,；;/／|\s]+"


@dataclass
class Vocabulary:
    """The configured key populations: code -> display name, plus alias lookup."""

    names: dict[str, str]
    lookup: dict[str, str]
    annual_services: dict[str, int]
    default_code: str = "general"

    @classmethod
    def from_config(cls, data: dict) -> Vocabulary:
        names: dict[str, str] = {}
        lookup: dict[str, str] = {}
        services: dict[str, int] = {}
        for entry in data["populations"]:
            code = entry["code"]
            names[code] = entry["name"]
            services[code] = int(entry.get("annual_services", 0))
            for spelling in (entry["name"], *entry.get("aliases", ())):
                lookup[_label_key(spelling)] = code
        return cls(names=names, lookup=lookup, annual_services=services)

    def parse(self, cell: str) -> tuple[tuple[str, ...], list[str]]:
        """Codes named in one cell (sorted, deduplicated) and the unknown pieces."""
        text = unicodedata.normalize("NFKC", cell or "").strip()
        if not text:
            return (self.default_code,), []
        whole = self.lookup.get(_label_key(text))
        if whole:
            return (whole,), []
        codes: set[str] = set()
        unknown: list[str] = []
        for piece in re.split(LABEL_SEPARATORS, text):
            if not piece:
                continue
            code = self.lookup.get(_label_key(piece))
            if code:
                codes.add(code)
            else:
                unknown.append(piece)
        if len(codes) > 1:
            codes.discard(self.default_code)
        if not codes and not unknown:
            codes.add(self.default_code)
        return tuple(sorted(codes)), unknown


def _label_key(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).replace("～", "-").replace("~", "-")


# ---------------------------------------------------------------------------
# Institutions
# ---------------------------------------------------------------------------


def infer_institution_type(name: str) -> str | None:
    if "社区卫生服务中心" in name or "社区卫生服务站" in name:
        return "社区卫生服务中心"
    if "中心卫生院" in name:
        return "中心卫生院"
    if name.endswith("卫生院"):
        return "乡镇卫生院"
    return None


def default_contract_end(start: pd.Series) -> pd.Series:
    """A family-doctor contract runs one year unless the roster says otherwise."""
    return start + pd.DateOffset(years=1) - pd.Timedelta(days=1)


def age_on(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
