"""Unit tests for the pure roster-cleaning code: app/roster/normalize.py and
app/roster/validate.py. No database, no app: plain values and pandas Series.

Expected values are worked out by hand here (check digits from the GB 11643 weights,
dates, masks), never copied from the code under test.
"""
from __future__ import annotations

import hmac
import random
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.core.populations import load_vocabulary
from app.roster.normalize import COLUMN_ALIASES, find_header, id_check_digit, id_check_digits, map_columns, match_column, parse_dates, parse_sex, validate_ids
from app.core.cells import normalize_phone_values
from app.core.sheets import HEADER_SCAN_ROWS, HeaderError
from app.core.masking import format_phone, hash_id, hash_ids, mask_id, mask_ids, mask_phone
from app.roster.validate import OUTPUT_COLUMNS, validate_frame

TODAY = date(2026, 11, 23)
POPULATIONS_JSON = Path(__file__).resolve().parents[1] / "app" / "populations.json"

# GB 11643-1999: weights of the first 17 digits and the check character for sum mod 11
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


def check_char(prefix17: str) -> str:
    assert len(prefix17) == 17 and prefix17.isdigit()
    return CHECK_CHARS[sum(int(d) * w for d, w in zip(prefix17, WEIGHTS)) % 11]


def make_id(prefix17: str) -> str:
    return prefix17 + check_char(prefix17)


def wrong_check(prefix17: str) -> str:
    """The same prefix with a check character that is certainly wrong."""
    good = check_char(prefix17)
    return prefix17 + ("0" if good != "0" else "1")


# The textbook example, and a male born 1980-01-01 in 岳阳县 (17th digit 3, odd)
KNOWN_ID = "11010519491231002X"
MALE_ID = make_id("43062119800101123")
CHILD_ID = make_id("43062120250601002")  # a girl born 2025-06-01


def s(*values) -> pd.Series:
    return pd.Series(list(values), dtype=object)


@pytest.fixture(scope="module")
def vocabulary():
    return load_vocabulary(POPULATIONS_JSON)


# ---------------------------------------------------------------------------
# Check digits
# ---------------------------------------------------------------------------


def test_helper_agrees_with_the_known_example():
    # 1*7+1*9+0*10+1*5+0*8+5*4+1*2+9*1+4*6+9*3+1*7+2*9+3*10+1*5+0*8+0*4+2*2 = 167; 167 % 11 = 2 -> 'X'
    assert sum(int(d) * w for d, w in zip("11010519491231002", WEIGHTS)) == 167
    assert check_char("11010519491231002") == "X"
    assert make_id("11010519491231002") == KNOWN_ID


def test_id_check_digit_single():
    assert id_check_digit("11010519491231002") == "X"
    # 4*7+3*9+0*10+6*5+2*8+1*4+1*2+9*1+8*6+0*3+0*7+1*9+0*10+1*5+1*8+2*4+3*2 = 200; 200 % 11 = 2 -> 'X'
    assert id_check_digit("43062119800101123") == "X"
    assert MALE_ID == "43062119800101123X"
    # 4*7+3*9+0*10+6*5+2*8+1*4+1*2+9*1+8*6+0*3+0*7+1*9+0*10+1*5+1*8+2*4+4*2 = 202; 202 % 11 = 4 -> '8'
    assert id_check_digit("43062119800101124") == "8"


def test_id_check_digits_vectorised_matches_hand_computation():
    rng = random.Random(11643)
    prefixes = ["".join(rng.choice("0123456789") for _ in range(17)) for _ in range(300)]
    got = id_check_digits(prefixes)
    assert list(got) == [check_char(p) for p in prefixes]
    # every check character occurs in a sample this size, including X
    assert set(got) == set(CHECK_CHARS)
    assert list(id_check_digits(pd.Series(prefixes[:3], index=[10, 20, 30]))) == [check_char(p) for p in prefixes[:3]]


def test_id_check_digits_empty():
    assert len(id_check_digits([])) == 0
    assert len(id_check_digits(pd.Series([], dtype=object))) == 0


# ---------------------------------------------------------------------------
# validate_ids
# ---------------------------------------------------------------------------

REASON_EMPTY = "身份证号为空"
REASON_NUMBER = "身份证号被存成了数字，末几位已丢失：请把该列设为文本格式后重新导出"
REASON_LENGTH = "身份证号应为18位（末位可为X）或15位旧号码"
REASON_CHECK = "身份证号校验位不符，可能录入有误"
REASON_BIRTH = "身份证号中的出生日期无效"
REASON_FUTURE = "身份证号中的出生日期晚于今天"
REASON_OLD = "身份证号中的出生日期早于120年前"


def one_id(raw, today: date = TODAY) -> dict:
    result = validate_ids(s(raw), today)
    return {
        "id18": result.id18.iloc[0],
        "birth": result.birth_date.iloc[0],
        "sex": result.sex.iloc[0],
        "reason": result.reason.iloc[0],
        "converted15": bool(result.converted15.iloc[0]),
    }


def test_valid_18_digit_ids():
    female = one_id(KNOWN_ID)
    assert female == {
        "id18": KNOWN_ID,
        "birth": pd.Timestamp("1949-12-31"),
        "sex": "F",  # 17th digit 2
        "reason": "",
        "converted15": False,
    }
    male = one_id(MALE_ID)
    assert male["id18"] == MALE_ID
    assert male["birth"] == pd.Timestamp("1980-01-01")
    assert male["sex"] == "M"  # 17th digit 3
    assert male["reason"] == ""


@pytest.mark.parametrize(
    "sex_digit, expected",
    [("0", "F"), ("1", "M"), ("2", "F"), ("3", "M"), ("4", "F"), ("5", "M"), ("6", "F"), ("7", "M"), ("8", "F"), ("9", "M")],
)
def test_sex_from_17th_digit(sex_digit, expected):
    number = make_id("4306211990050612" + sex_digit)
    result = one_id(number)
    assert result["reason"] == ""
    assert result["sex"] == expected


def test_lower_case_x_is_accepted_and_upper_cased():
    result = one_id("11010519491231002x")
    assert result["reason"] == ""
    assert result["id18"] == "11010519491231002X"


def test_full_width_digits_and_spaces_are_cleaned():
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in KNOWN_ID)  # １１０１０５…Ｘ
    assert full_width != KNOWN_ID
    assert one_id(full_width)["id18"] == KNOWN_ID
    assert one_id(" 110105 19491231 002X\t")["id18"] == KNOWN_ID
    assert one_id("110105\u300019491231002x")["id18"] == KNOWN_ID  # ideographic space


def test_wrong_check_digit_is_rejected():
    bad = wrong_check("11010519491231002")
    result = one_id(bad)
    assert result["reason"] == REASON_CHECK
    assert result["id18"] == ""
    assert result["sex"] == ""
    assert pd.isna(result["birth"])
    # a single mistyped digit in the body is caught by the check digit too
    typo = KNOWN_ID[:10] + "3" + KNOWN_ID[11:]
    assert one_id(typo)["reason"] == REASON_CHECK


def test_legacy_15_digit_id_is_converted():
    # 110105 491231 002 -> 110105 19 491231 002 + check digit X
    result = one_id("110105491231002")
    assert result["id18"] == "11010519491231002X"
    assert result["converted15"] is True
    assert result["birth"] == pd.Timestamp("1949-12-31")
    assert result["sex"] == "F"
    other = one_id("430621800101123")
    assert other["id18"] == make_id("43062119800101123") == "43062119800101123X"
    assert other["sex"] == "M"
    assert other["converted15"] is True


def test_legacy_15_digit_with_invalid_birth_date():
    result = one_id("430621801301123")  # month 13
    assert result["reason"] == REASON_BIRTH
    assert result["id18"] == ""
    assert result["converted15"] is False


@pytest.mark.parametrize("raw", ["4.306211980010113e+17", "4.30621E+17", "4.3062119800101126E+17", "430621198001011234.0"])
def test_id_stored_as_number_is_rejected(raw):
    result = one_id(raw)
    assert result["reason"] == REASON_NUMBER
    assert "存成了数字" in result["reason"]
    assert result["id18"] == ""


@pytest.mark.parametrize(
    "raw",
    ["12345", "4306211980010112", "43062119800101123", "4306211980010112345", "43062119800101123A", "4306211980X1011234", "43062119800101123Y"],
)
def test_wrong_length_or_characters(raw):
    assert one_id(raw)["reason"] == REASON_LENGTH


@pytest.mark.parametrize(
    "prefix17",
    [
        "43062119801301123",  # month 13
        "43062119800001123",  # month 00
        "43062119800230123",  # 30 February
        "43062120230229002",  # 29 February in a common year
        "43062119800132123",  # day 32
        "43062119800100123",  # day 00
    ],
)
def test_invalid_birth_dates_with_correct_check_digit(prefix17):
    result = one_id(make_id(prefix17))
    assert result["reason"] == REASON_BIRTH
    assert result["id18"] == ""
    assert pd.isna(result["birth"])


def test_leap_day_in_a_leap_year_is_valid():
    result = one_id(make_id("43062120000229123"))
    assert result["reason"] == ""
    assert result["birth"] == pd.Timestamp("2000-02-29")


def test_birth_date_in_the_future_is_rejected():
    assert one_id(make_id("43062120270101123"))["reason"] == REASON_FUTURE
    assert one_id(make_id("43062120261124002"))["reason"] == REASON_FUTURE  # tomorrow
    born_today = one_id(make_id("43062120261123002"))  # a newborn registered today
    assert born_today["reason"] == ""
    assert born_today["birth"] == pd.Timestamp("2026-11-23")


def test_birth_date_more_than_120_years_ago_is_rejected():
    # 120 years before 2026-11-23 is 1906-11-23
    assert one_id(make_id("43062119060101123"))["reason"] == REASON_OLD
    assert one_id(make_id("43062119061123123"))["reason"] == ""


@pytest.mark.parametrize("raw", ["", "   ", None, float("nan")])
def test_empty_id(raw):
    result = one_id(raw)
    assert result["reason"] == REASON_EMPTY
    assert result["id18"] == ""
    assert result["sex"] == ""


def test_validate_ids_keeps_the_index_and_handles_a_mixed_column():
    raw = pd.Series(
        [KNOWN_ID, "", "110105491231002", wrong_check("43062119800101123"), "4.3e+17", MALE_ID.lower()],
        index=[7, 3, 11, 5, 2, 40],
        dtype=object,
    )
    result = validate_ids(raw, TODAY)
    for part in (result.id18, result.birth_date, result.sex, result.reason, result.converted15):
        assert list(part.index) == [7, 3, 11, 5, 2, 40]
    assert list(result.id18) == [KNOWN_ID, "", KNOWN_ID, "", "", MALE_ID]
    assert list(result.sex) == ["F", "", "F", "", "", "M"]
    assert list(result.reason) == ["", REASON_EMPTY, "", REASON_CHECK, REASON_NUMBER, ""]
    assert list(result.converted15) == [False, False, True, False, False, False]
    assert result.birth_date[40] == pd.Timestamp("1980-01-01")
    assert pd.isna(result.birth_date[3])


# ---------------------------------------------------------------------------
# Masking and hashing
# ---------------------------------------------------------------------------


def test_mask_id():
    assert mask_id(KNOWN_ID) == "**************002X"
    assert mask_id(MALE_ID) == "**************123X"
    # the birth date (digits 7-14) never shows
    assert "19491231" not in mask_id(KNOWN_ID)
    # short garbage keeps its first two characters only
    assert mask_id("12345") == "12***"
    assert mask_id("") == ""
    # a number that lost its digits is masked too, keeping its length
    masked = mask_id("4.306211980010113e+17")
    assert masked == "*" * 17 + "e+17"


def test_mask_ids_series():
    out = mask_ids(pd.Series([KNOWN_ID, MALE_ID], index=[4, 9], dtype=object))
    assert list(out) == ["**************002X", "**************123X"]
    assert list(out.index) == [4, 9]


def test_hash_id_is_keyed():
    key_a, key_b = b"county-key-A-0123456789", b"county-key-B-0123456789"
    first = hash_id(key_a, KNOWN_ID)
    assert first == hash_id(key_a, KNOWN_ID)  # stable
    assert first != hash_id(key_b, KNOWN_ID)  # another key, another hash
    assert first != hash_id(key_a, MALE_ID)  # another person, another hash
    assert len(first) == 32 and all(c in "0123456789abcdef" for c in first)  # 128 bits of HMAC-SHA256, hex
    assert bytes.fromhex(first) == hmac.digest(key_a, KNOWN_ID.encode(), "sha256")[:16]
    assert KNOWN_ID not in first and KNOWN_ID.lower() not in first
    assert "19491231" not in first and "110105" not in first


def test_hash_ids_series():
    key = b"k" * 16
    ids = pd.Series([KNOWN_ID, MALE_ID, KNOWN_ID], index=[5, 6, 7], dtype=object)
    out = hash_ids(key, ids)
    assert list(out.index) == [5, 6, 7]
    assert list(out) == [hash_id(key, KNOWN_ID), hash_id(key, MALE_ID), hash_id(key, KNOWN_ID)]
    assert out[5] == out[7] != out[6]


# ---------------------------------------------------------------------------
# Phones
# ---------------------------------------------------------------------------

PHONE_FORMAT = "电话号码格式不正确（应为11位手机号或带区号的固定电话）"
PHONE_NO_AREA = "固定电话缺少区号"
PHONE_SCI = "电话号码被存成了科学计数法，无法还原"
PHONE_SECOND = "同一单元格中的第二个号码无法识别"


def one_phone(raw) -> dict:
    out = normalize_phone_values(s(raw))
    return {k: (bool(v) if k == "empty" else v) for k, v in out.iloc[0].items()}


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        " 138 0013-8000 ",
        "+8613800138000",
        "+86 138 0013 8000",
        "008613800138000",
        "8613800138000",
        "１３８００１３８０００",  # full-width digits
        "13800138000.0",  # a number Excel wrote as float
        "13800138000.00",
    ],
)
def test_mobile_spellings(raw):
    assert one_phone(raw) == {"phone": "13800138000", "extra": "", "reason": "", "empty": False}


@pytest.mark.parametrize(
    "raw",
    [
        "0730-8221234",
        "(0730)8221234",
        "（0730）8221234",  # full-width brackets
        "0730 8221234",
        "07308221234",
        "０７３０－８２２１２３４",
        "+86 730 8221234",
    ],
)
def test_landline_with_area_code(raw):
    assert one_phone(raw) == {"phone": "07308221234", "extra": "", "reason": "", "empty": False}


def test_three_digit_area_codes():
    assert one_phone("010-12345678")["phone"] == "01012345678"
    assert one_phone("021 8765 4321")["phone"] == "02187654321"


@pytest.mark.parametrize("raw", ["8221234", "822-1234", "82212345"])
def test_landline_without_area_code_rejected(raw):
    result = one_phone(raw)
    assert result["reason"] == PHONE_NO_AREA
    assert "缺少区号" in result["reason"]
    assert result["phone"] == ""


@pytest.mark.parametrize("raw", ["1.38001380E+10", "1.3800138e+10"])
def test_scientific_notation_rejected(raw):
    result = one_phone(raw)
    assert result["reason"] == PHONE_SCI
    assert result["phone"] == ""


@pytest.mark.parametrize("raw", ["12345", "1380013800", "138001380001", "23800138000", "无", "13800l38000"])
def test_malformed_phone(raw):
    result = one_phone(raw)
    assert result["reason"] == PHONE_FORMAT
    assert result["phone"] == ""


@pytest.mark.parametrize(
    "raw, phone, extra",
    [
        ("13800138000/0730-8221234", "13800138000", "07308221234"),
        ("13800138000 / 13900139000", "13800138000", "13900139000"),
        ("0730-8221234、13800138000", "07308221234", "13800138000"),
        ("13800138000，13900139000", "13800138000", "13900139000"),
        ("13800138000;13900139000", "13800138000", "13900139000"),
        ("13800138000｜13900139000", "13800138000", "13900139000"),
    ],
)
def test_two_numbers_in_one_cell(raw, phone, extra):
    assert one_phone(raw) == {"phone": phone, "extra": extra, "reason": "", "empty": False}


def test_unreadable_second_number_is_reported():
    result = one_phone("13800138000/找家属")
    assert result["phone"] == "13800138000"
    assert result["extra"] == ""
    assert result["reason"] == PHONE_SECOND


@pytest.mark.parametrize("raw", ["", "  ", None])
def test_empty_phone(raw):
    result = one_phone(raw)
    assert result == {"phone": "", "extra": "", "reason": "", "empty": True}


def test_phone_frame_keeps_index():
    out = normalize_phone_values(pd.Series(["13800138000", "", "8221234"], index=[10, 20, 30], dtype=object))
    assert list(out.index) == [10, 20, 30]
    assert list(out["phone"]) == ["13800138000", "", ""]
    assert list(out["empty"]) == [False, True, False]
    assert list(out["reason"]) == ["", "", PHONE_NO_AREA]


def test_phone_normalisation_of_an_empty_series():
    out = normalize_phone_values(pd.Series([], dtype=object))
    assert len(out) == 0
    assert set(out.columns) == {"phone", "extra", "reason", "empty"}


def test_format_phone():
    assert format_phone("13800138000") == "138 0013 8000"
    assert format_phone("07308221234") == "0730-8221234"
    assert format_phone("01012345678") == "010-12345678"
    assert format_phone("02187654321") == "021-87654321"
    assert format_phone("") == ""
    assert format_phone(None) == ""
    assert format_phone("12345") == "12345"


def test_mask_phone():
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("07308221234") == "073****1234"
    assert mask_phone("12345") == "****"
    assert mask_phone("") == ""
    assert mask_phone(None) == ""
    assert "0013" not in mask_phone("13800138000")


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "2025-03-01",
        "2025/3/1",
        "2025/03/01",
        "2025.3.1",
        "2025年3月1日",
        "2025年03月01日",
        "20250301",
        "2025-03-01 00:00:00",
        "2025-03-01 14:30:00",
        "2025-03-01T08:00:00",
        "45717",  # Excel serial: 1899-12-30 + 45717 days
        "45717.0",
        " ２０２５－０３－０１ ",  # full-width, padded
    ],
)
def test_parse_dates_spellings(raw):
    parsed, empty = parse_dates(s(raw))
    assert parsed.iloc[0] == pd.Timestamp("2025-03-01")
    assert not empty.iloc[0]


def test_excel_serial_arithmetic():
    # 45717 days after 1899-12-30 is 2025-03-01; day 1 is 1899-12-31; 45352 is 2024-03-01
    parsed, _ = parse_dates(s("45717", "45352", "43831"))
    assert list(parsed) == [pd.Timestamp("2025-03-01"), pd.Timestamp("2024-03-01"), pd.Timestamp("2020-01-01")]


@pytest.mark.parametrize("raw", ["garbage", "2025-02-30", "2025-13-01", "20251301", "明年", "2025年3月", "3/1/2025x"])
def test_parse_dates_garbage_is_nat(raw):
    parsed, empty = parse_dates(s(raw))
    assert pd.isna(parsed.iloc[0])
    assert not empty.iloc[0]


def test_parse_dates_empty_is_flagged():
    parsed, empty = parse_dates(pd.Series(["", None, "  ", "2024-02-29"], index=[3, 4, 5, 6], dtype=object))
    assert list(empty) == [True, True, True, False]
    assert parsed.isna().tolist() == [True, True, True, False]
    assert parsed[6] == pd.Timestamp("2024-02-29")
    assert list(parsed.index) == [3, 4, 5, 6]


def test_parse_sex():
    out = parse_sex(s("男", "女", "M", "f", " 1 ", "2", "男性", "女性", "", None, "未知"))
    assert list(out) == ["M", "F", "M", "F", "M", "F", "M", "F", "", "", "?"]


# ---------------------------------------------------------------------------
# Header detection and column mapping
# ---------------------------------------------------------------------------

ALIAS_TABLE = [
    ("姓名", "name"), ("居民姓名", "name"), ("签约居民姓名", "name"), ("签约人姓名", "name"),
    ("患者姓名", "name"), ("签约居民", "name"),
    ("身份证号", "id_number"), ("身份证号码", "id_number"), ("证件号码", "id_number"),
    ("居民身份证号", "id_number"), ("居民身份证号码", "id_number"), ("证件号", "id_number"), ("身份证", "id_number"),
    ("联系电话", "phone"), ("手机号码", "phone"), ("电话", "phone"), ("手机号", "phone"), ("联系方式", "phone"),
    ("电话号码", "phone"), ("本人电话", "phone"), ("手机", "phone"),
    ("联系电话2", "phone2"), ("备用电话", "phone2"), ("其他联系电话", "phone2"), ("家属电话", "phone2"),
    ("紧急联系人电话", "phone2"), ("第二联系电话", "phone2"),
    ("签约机构", "institution"), ("机构名称", "institution"), ("签约机构名称", "institution"),
    ("医疗机构", "institution"), ("所属机构", "institution"), ("签约单位", "institution"), ("机构", "institution"),
    ("机构编码", "institution_code"), ("机构代码", "institution_code"), ("签约机构编码", "institution_code"),
    ("签约团队", "team"), ("团队名称", "team"), ("家庭医生团队", "team"), ("签约团队名称", "team"),
    ("团队", "team"), ("所属团队", "team"),
    ("签约医生", "doctor"), ("家庭医生", "doctor"), ("签约医生姓名", "doctor"), ("责任医生", "doctor"),
    ("家庭医生姓名", "doctor"),
    ("医生电话", "doctor_phone"), ("医生联系电话", "doctor_phone"), ("团队电话", "doctor_phone"),
    ("家庭医生电话", "doctor_phone"),
    ("签约日期", "contract_start"), ("签约时间", "contract_start"), ("签约开始日期", "contract_start"),
    ("协议开始日期", "contract_start"), ("服务开始日期", "contract_start"),
    ("到期日期", "contract_end"), ("签约到期日期", "contract_end"), ("协议截止日期", "contract_end"),
    ("签约结束日期", "contract_end"), ("截止日期", "contract_end"), ("服务截止日期", "contract_end"),
    ("人群分类", "labels"), ("重点人群", "labels"), ("人群类型", "labels"), ("人群类别", "labels"),
    ("签约人群", "labels"), ("人群标签", "labels"),
    ("性别", "sex"),
    ("出生日期", "birth_date"), ("出生年月", "birth_date"), ("出生年月日", "birth_date"),
    ("住址", "address"), ("现住址", "address"), ("家庭住址", "address"), ("居住地址", "address"),
    ("村(社区)", "address"), ("村（社区）", "address"), ("村/社区", "address"), ("地址", "address"),
    ("所属村", "address"), ("村组", "address"),
    ("县区", "county"), ("县市区", "county"), ("所属县区", "county"), ("区县", "county"),
    ("县(市、区)", "county"), ("县（市、区）", "county"),
]


@pytest.mark.parametrize("cell, field", ALIAS_TABLE)
def test_match_column_every_alias(cell, field):
    assert match_column(cell) == field


def test_alias_table_is_unambiguous():
    # every alias the module declares resolves to the field it is declared under (no alias
    # shadowed by another field's)
    for field, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            assert match_column(alias) == field, alias


@pytest.mark.parametrize(
    "cell, field",
    [
        (" 姓 名 ", "name"),
        ("姓\u3000名", "name"),  # ideographic space
        ("*姓名", "name"),
        ("＊姓名", "name"),  # full-width asterisk
        ("※身份证号", "id_number"),
        ("联系电话(必填)", "phone"),
        ("联系电话（必填）", "phone"),
        ("*签约日期（格式：2025-01-01）", "contract_start"),
        ("身份证号【18位】", "id_number"),
        ("身份证号码[必填]", "id_number"),
        ("姓名\n(必填)", "name"),
        ("ｓ", None),
        ("序号", None),
        ("备注", None),
        ("XX县家庭医生签约居民花名册", None),
        ("", None),
        (None, None),
        (12, None),
    ],
)
def test_match_column_variants(cell, field):
    assert match_column(cell) == field


def test_match_column_bracketed_alias_with_note():
    assert match_column("县(市、区)(必填)") == "county"
    assert match_column("村（社区）（选填）") == "address"


HEADER = ["序号", "姓名", "身份证号", "联系电话", "签约机构", "签约团队", "签约日期", "人群分类"]


def test_map_columns_basic():
    assert map_columns(HEADER) == {
        "name": 1,
        "id_number": 2,
        "phone": 3,
        "institution": 4,
        "team": 5,
        "contract_start": 6,
        "labels": 7,
    }


def test_second_phone_column_becomes_phone2():
    mapping = map_columns(["姓名", "身份证号", "联系电话", "手机号码", "电话", "签约机构"])
    assert mapping["phone"] == 2
    assert mapping["phone2"] == 3
    assert "电话" not in mapping  # the third phone column is ignored
    assert mapping == {"name": 0, "id_number": 1, "phone": 2, "phone2": 3, "institution": 5}


def test_explicit_phone2_column_wins_over_a_later_phone_column():
    mapping = map_columns(["姓名", "身份证号", "联系电话", "备用电话", "手机"])
    assert mapping["phone"] == 2
    assert mapping["phone2"] == 3


def test_first_of_duplicate_columns_is_kept():
    mapping = map_columns(["姓名", "居民姓名", "身份证号", "证件号码"])
    assert mapping == {"name": 0, "id_number": 2}


def test_find_header_below_title_and_blank_rows():
    rows = [
        ["XX县家庭医生签约居民花名册", None, None, None],
        [None, None, None, None, None],
        ["导出时间：2025-03-01", "", "", ""],
        [],
        ["", "", "", ""],
        HEADER,
        ["1", "张三", KNOWN_ID, "13800138000", "新墙镇卫生院", "张伟团队", "2025-03-01", "高血压"],
    ]
    header = find_header(rows)
    assert header.row_index == 5
    assert header.columns["name"] == 1
    assert header.columns["labels"] == 7


def test_find_header_with_messy_names():
    rows = [
        ["签约居民花名册"],
        [" 序 号", "*居民姓名", "身份证号码(必填)", "手机号码（必填）", "＊签约机构名称", "家庭医生团队", "签约时间", "备用电话", "重点人群", "性别", "出生年月"],
    ]
    header = find_header(rows)
    assert header.row_index == 1
    assert header.columns == {
        "name": 1,
        "id_number": 2,
        "phone": 3,
        "institution": 4,
        "team": 5,
        "contract_start": 6,
        "phone2": 7,
        "labels": 8,
        "sex": 9,
        "birth_date": 10,
    }


def test_find_header_needs_three_known_columns():
    # a row naming only 姓名 and 身份证号 is not a header; the real one comes later
    rows = [["姓名", "身份证号"], HEADER]
    assert find_header(rows).row_index == 1


def test_find_header_scans_the_first_30_rows_only():
    assert HEADER_SCAN_ROWS == 30
    rows = [[""]] * 29 + [HEADER]
    assert find_header(rows).row_index == 29
    with pytest.raises(HeaderError, match="未找到表头"):
        find_header([[""]] * 30 + [HEADER])


def test_missing_required_columns_are_listed_in_chinese():
    rows = [["花名册"], ["", ""], ["姓名", "身份证号", "签约团队", "人群分类"]]
    with pytest.raises(HeaderError) as info:
        find_header(rows)
    assert str(info.value) == "表头第3行缺少必需列：联系电话、签约机构、签约日期。"


def test_missing_one_required_column():
    with pytest.raises(HeaderError) as info:
        find_header([["姓名", "身份证号", "联系电话", "签约机构", "签约团队"]])
    assert str(info.value) == "表头第1行缺少必需列：签约日期。"


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [["XX县家庭医生签约居民花名册"], [], ["张三", KNOWN_ID, "13800138000"]],
        [["姓名", "电话", "签约机构", "签约团队"]],  # no ID column
        [["a", "b", "c"], [1, 2, 3]],
    ],
)
def test_no_header_at_all(rows):
    with pytest.raises(HeaderError) as info:
        find_header(rows)
    assert str(info.value) == "未找到表头：前30行中没有同时包含“姓名”和“身份证号”的行。"


# ---------------------------------------------------------------------------
# Key-population vocabulary
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        "高血压、糖尿病",
        "高血压，糖尿病",
        "高血压,糖尿病",
        "高血压；糖尿病",
        "高血压;糖尿病",
        "高血压/糖尿病",
        "高血压／糖尿病",
        "高血压 糖尿病",
        "高血压 、 糖尿病",
        "高血压|糖尿病",
        "糖尿病、高血压、高血压病",  # duplicates collapse
    ],
)
def test_several_labels_in_one_cell(vocabulary, cell):
    assert vocabulary.parse(cell) == (("diabetes", "hypertension"), [])


@pytest.mark.parametrize(
    "cell, code",
    [
        ("糖尿病", "diabetes"),
        ("2型糖尿病", "diabetes"),
        ("Ⅱ型糖尿病", "diabetes"),
        ("二型糖尿病", "diabetes"),
        ("高血压患者", "hypertension"),
        ("老年人", "elderly"),
        ("65岁及以上老年人", "elderly"),
        ("孕妇", "pregnant"),
        ("0-6岁儿童", "child"),
        ("0～6岁儿童", "child"),
        ("0~6岁儿童", "child"),
        ("残疾", "disabled"),
        ("严重精神障碍患者", "mental"),
        ("结核病", "tuberculosis"),
        ("建档立卡贫困人口", "poverty"),
        ("计生特殊家庭", "special_family"),
        ("失能老人", "disabled_elderly"),
        ("普通人群", "general"),
        (" 高 血 压 ", "hypertension"),
    ],
)
def test_aliases(vocabulary, cell, code):
    assert vocabulary.parse(cell) == ((code,), [])


def test_canonical_name_with_a_slash_is_one_label(vocabulary):
    assert vocabulary.parse("脱贫人口/监测对象") == (("poverty",), [])
    assert vocabulary.parse("脱贫人口/监测对象、高血压") == (("hypertension", "poverty"), [])


@pytest.mark.parametrize("cell", ["", "   ", None])
def test_empty_cell_is_general(vocabulary, cell):
    assert vocabulary.parse(cell) == (("general",), [])


def test_unknown_labels_are_returned(vocabulary):
    assert vocabulary.parse("外星人") == ((), ["外星人"])
    assert vocabulary.parse("高血压、外星人，火星人") == (("hypertension",), ["外星人", "火星人"])


def test_general_dropped_when_a_specific_label_is_present(vocabulary):
    assert vocabulary.parse("一般人群、高血压") == (("hypertension",), [])
    assert vocabulary.parse("其他/老年人/糖尿病") == (("diabetes", "elderly"), [])
    assert vocabulary.parse("一般人群") == (("general",), [])
    assert vocabulary.parse("一般人群，普通人群") == (("general",), [])


def test_vocabulary_contents(vocabulary):
    assert vocabulary.default_code == "general"
    assert vocabulary.names["poverty"] == "脱贫人口/监测对象"
    assert vocabulary.annual_services["hypertension"] == 5
    assert vocabulary.annual_services["general"] == 0


# ---------------------------------------------------------------------------
# validate_frame
# ---------------------------------------------------------------------------

HASH_KEY = b"test-hash-key-0123456789"
GOOD = {
    "name": "张三",
    "id_number": MALE_ID,
    "sex": "",
    "birth_date": "",
    "phone": "13800138000",
    "institution": "新墙镇卫生院",
    "team": "张伟家庭医生团队",
    "contract_start": "2025-03-01",
    "contract_end": "",
    "labels": "高血压",
}


def frame_of(rows: list[dict], start_index: int = 100) -> tuple[pd.DataFrame, pd.Series]:
    """Rows as the reader delivers them (text), with a non-default index (blank lines were
    dropped) and row numbers that are not the index."""
    index = [start_index + 3 * i for i in range(len(rows))]
    frame = pd.DataFrame([{**GOOD, **r} for r in rows], index=index)
    numbers = pd.Series([i + 4 for i in range(len(rows))], index=index)
    return frame, numbers


def run(rows: list[dict], vocabulary, sheet: str = "名册"):
    frame, numbers = frame_of(rows)
    return validate_frame(frame, numbers, sheet, today=TODAY, vocabulary=vocabulary, hash_key=HASH_KEY)


def test_validate_frame_one_row_per_kind_of_error(vocabulary):
    bad_id = wrong_check("43062119800101123")
    rows = [
        # row 4: fine, male, phone with spaces, two labels, no end date
        {"name": "张 三", "phone": "138 0013 8000", "labels": "高血压、糖尿病", "sex": "男", "birth_date": "1980/1/1"},
        # row 5: fine, legacy 15-digit ID, two numbers, explicit end date, no label
        {"name": "王芳", "id_number": "110105491231002", "phone": "13900139000/0730-8221234",
         "contract_start": "2025年3月1日", "contract_end": "2027-02-28", "labels": ""},
        {"id_number": bad_id},                                       # row 6
        {"name": ""},                                                # row 7
        {"name": "张三1"},                                           # row 8
        {"sex": "女"},                                               # row 9: the ID says male
        {"birth_date": "1980-01-02"},                                # row 10: the ID says 1980-01-01
        {"phone": "8221234"},                                        # row 11
        {"institution": ""},                                         # row 12
        {"team": " "},                                               # row 13
        {"contract_start": "2026-11-24"},                            # row 14: tomorrow
        {"contract_start": "去年春天"},                              # row 15
        {"contract_start": "2009-12-31"},                            # row 16
        {"id_number": CHILD_ID, "contract_start": "2025-03-01"},     # row 17: born 2025-06-01
        {"contract_start": "2025-03-01", "contract_end": "2025-02-01"},  # row 18
        {"labels": "高血压、外星人"},                                # row 19
        {"phone": ""},                                               # row 20
        {"contract_start": ""},                                      # row 21
        {"sex": "未知"},                                             # row 22
        {"contract_start": "2025-03-01", "contract_end": "2030-03-02"},  # row 23: more than 5 years
        {"contract_end": "下辈子"},                                   # row 24
        {"birth_date": "八十年代"},                                  # row 25
        {"phone": "1.38001380E+10"},                                 # row 26
    ]
    result = run(rows, vocabulary)
    got = sorted((r.row, r.column, r.reason) for r in result.rejections)
    expected = sorted(
        [
            (6, "身份证号", REASON_CHECK),
            (7, "姓名", "姓名为空"),
            (8, "姓名", "姓名中含有数字"),
            (9, "性别", "性别与身份证号不符"),
            (10, "出生日期", "出生日期与身份证号不符"),
            (11, "联系电话", PHONE_NO_AREA),
            (12, "签约机构", "签约机构为空"),
            (13, "签约团队", "签约团队为空"),
            (14, "签约日期", "签约日期晚于今天"),
            (15, "签约日期", "签约日期无法识别"),
            (16, "签约日期", "签约日期早于2010年，请核对"),
            (17, "签约日期", "签约日期早于出生日期"),
            (18, "到期日期", "到期日期不晚于签约日期"),
            (19, "人群分类", "人群分类不在配置的词表中：外星人"),
            (20, "联系电话", "联系电话为空"),
            (21, "签约日期", "签约日期为空"),
            (22, "性别", "性别无法识别（应为 男/女）"),
            (23, "到期日期", "签约期限超过5年，请核对"),
            (24, "到期日期", "到期日期无法识别"),
            (25, "出生日期", "出生日期无法识别"),
            (26, "联系电话", PHONE_SCI),
        ]
    )
    assert got == expected
    assert result.rejected_rows == len(expected)
    assert all(r.sheet == "名册" for r in result.rejections)

    by_row = {r.row: r for r in result.rejections}
    # the rejected ID is shown masked, never in clear
    assert by_row[6].value == "*" * (len(bad_id) - 4) + bad_id[-4:]
    assert by_row[9].value == "女"
    assert by_row[11].value == "8221234"
    assert by_row[15].value == "去年春天"
    assert by_row[19].value == "高血压、外星人"
    for rejection in result.rejections:
        for clear in (bad_id, MALE_ID, CHILD_ID):
            assert clear not in rejection.value

    # accepted rows come out cleaned
    rows_out = result.rows
    assert list(rows_out.columns) == OUTPUT_COLUMNS
    assert list(rows_out["row_no"]) == [4, 5]
    first, second = rows_out.iloc[0], rows_out.iloc[1]
    assert first["id_hash"] == hash_id(HASH_KEY, MALE_ID)
    assert first["id_masked"] == "**************123X"
    assert first["name"] == "张三"
    assert first["sex"] == "M"
    assert first["birth_date"] == "1980-01-01"
    assert first["phone"] == "13800138000"
    assert first["phone2"] == ""
    assert first["institution"] == "新墙镇卫生院"
    assert first["team"] == "张伟家庭医生团队"
    assert first["contract_start"] == "2025-03-01"
    assert first["contract_end"] == "2026-02-28"  # start + 1 year - 1 day
    assert tuple(first["label_codes"]) == ("diabetes", "hypertension")

    assert second["id_hash"] == hash_id(HASH_KEY, KNOWN_ID)  # converted from 15 digits
    assert second["id_masked"] == "**************002X"
    assert second["sex"] == "F"
    assert second["birth_date"] == "1949-12-31"
    assert second["phone"] == "13900139000"
    assert second["phone2"] == "07308221234"
    assert second["contract_start"] == "2025-03-01"
    assert second["contract_end"] == "2027-02-28"
    assert tuple(second["label_codes"]) == ("general",)

    # no clear ID anywhere in the accepted output
    flat = rows_out.astype(str).to_numpy().ravel().tolist()
    assert not any(MALE_ID in v or KNOWN_ID in v for v in flat)

    # rejected rows with a readable ID are still identified (all but the bad-ID row 6)
    identified = result.rejected_identified
    assert len(identified) == len(expected) - 1
    assert hash_id(HASH_KEY, CHILD_ID) in set(identified["id_hash"])
    assert "" not in set(identified["id_hash"])


def test_all_problems_of_a_row_are_reported_at_once(vocabulary):
    result = run([{"name": "", "phone": "12345", "labels": "外星人", "contract_start": "2009-01-01"}], vocabulary)
    assert sorted((r.row, r.column) for r in result.rejections) == [(4, "人群分类"), (4, "姓名"), (4, "签约日期"), (4, "联系电话")]
    assert result.rejected_rows == 1
    assert len(result.rows) == 0


def test_default_end_date_is_start_plus_one_year_minus_one_day(vocabulary):
    result = run(
        [
            {"contract_start": "2025-03-01"},
            {"contract_start": "2024-01-15"},
            {"contract_start": "2023-03-01"},  # 2024 is a leap year: ends 2024-02-29
            {"contract_start": "2024-12-31"},
        ],
        vocabulary,
    )
    assert result.rejections == []
    assert list(result.rows["contract_end"]) == ["2026-02-28", "2025-01-14", "2024-02-29", "2025-12-30"]


def test_sex_and_birth_columns_that_agree_are_accepted(vocabulary):
    result = run(
        [
            {"sex": "男", "birth_date": "1980-01-01"},
            {"sex": "M", "birth_date": "29221"},  # Excel serial of 1980-01-01
            {"sex": "1", "birth_date": "19800101"},
            {"id_number": KNOWN_ID, "sex": "女", "birth_date": "1949年12月31日"},
        ],
        vocabulary,
    )
    assert result.rejections == []
    assert list(result.rows["sex"]) == ["M", "M", "M", "F"]
    assert list(result.rows["birth_date"]) == ["1980-01-01"] * 3 + ["1949-12-31"]


def test_phone2_column(vocabulary):
    frame, numbers = frame_of(
        [
            {"phone": "13800138000"},
            {"phone": "13800138000"},
            {"phone": "13800138000/13700137000"},
            {"phone": "13800138000"},
        ]
    )
    frame["phone2"] = ["139-0013-9000", "13800138000", "", "12345"]
    result = validate_frame(frame, numbers, "S", today=TODAY, vocabulary=vocabulary, hash_key=HASH_KEY)
    assert [(r.row, r.column, r.reason) for r in result.rejections] == [(7, "备用电话", PHONE_FORMAT)]
    # a phone2 equal to phone is dropped; without a phone2 value the second number of the cell is used
    assert list(result.rows["phone2"]) == ["13900139000", "", "13700137000"]


def test_unknown_label_reason_lists_every_unknown_piece(vocabulary):
    result = run([{"labels": "外星人/火星人、高血压"}], vocabulary)
    assert [(r.column, r.reason) for r in result.rejections] == [("人群分类", "人群分类不在配置的词表中：外星人、火星人")]


def test_name_with_middle_dot_and_long_name(vocabulary):
    result = run([{"name": "阿依古丽•买买提"}, {"name": "长" * 51}], vocabulary)
    assert [(r.row, r.reason) for r in result.rejections] == [(5, "姓名超过50个字")]
    assert result.rows["name"].tolist() == ["阿依古丽·买买提"]


def test_frame_without_optional_columns(vocabulary):
    frame = pd.DataFrame(
        {
            "name": ["李四"],
            "id_number": [KNOWN_ID],
            "phone": ["0730-8221234"],
            "institution": ["新墙镇卫生院"],
            "team": ["张伟家庭医生团队"],
            "contract_start": ["2025-03-01"],
        }
    )
    result = validate_frame(frame, pd.Series([2]), "", today=TODAY, vocabulary=vocabulary, hash_key=HASH_KEY)
    assert result.rejections == []
    row = result.rows.iloc[0]
    assert row["phone"] == "07308221234"
    assert row["label_codes"] == ("general",)
    assert row["county"] == "" and row["doctor"] == "" and row["address"] == ""
    assert row["contract_end"] == "2026-02-28"


def test_validate_frame_on_an_empty_chunk(vocabulary):
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in GOOD})
    result = validate_frame(
        frame, pd.Series([], dtype=np.int64), "S", today=TODAY, vocabulary=vocabulary, hash_key=HASH_KEY
    )
    assert result.rejections == []
    assert result.rejected_rows == 0
    assert len(result.rows) == 0
