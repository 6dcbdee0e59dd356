"""Cleaning the cells read from a sheet: text (NFKC, stray spaces and control characters)
and phone numbers (one or two in a cell, separators, +86, numbers Excel turned into floats),
each refused with a reason in Chinese rather than guessed at."""
from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------


_is_normalized = unicodedata.is_normalized
_normalize = unicodedata.normalize


def clean_one(value: object) -> str:
    if type(value) is not str:
        if value is None or value != value:  # None / NaN
            return ""
        value = str(value)
    if not value.isascii() and not _is_normalized("NFKC", value):
        value = _normalize("NFKC", value)
    return value.strip()


def squeeze_one(value: object) -> str:
    text = clean_one(value)
    if " " in text or "\t" in text or "\n" in text or "\r" in text:
        return "".join(text.split())
    return text


def map_values(series: pd.Series, func, *, few: bool = False) -> pd.Series:
    """Apply a per-value function, returning an object Series on the same index. With
    few=True (institution, team, dates, labels: few distinct values) each distinct value is
    computed once. Plain Python per value beats chains of pandas .str calls here: each of
    those walks the whole column again."""
    values = series.to_numpy(dtype=object)
    if few and len(values):
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        mapped = np.empty(len(uniques), dtype=object)
        mapped[:] = [func(u) for u in uniques]
        out = mapped[codes]
    else:
        out = np.empty(len(values), dtype=object)
        out[:] = [func(v) for v in values]
    return pd.Series(out, index=series.index, dtype=object)


def clean_text(series: pd.Series, few: bool = False) -> pd.Series:
    """Full-width to half-width (NFKC), trimmed; missing values become ''."""
    return map_values(series, clean_one, few=few)


def squeeze(series: pd.Series, few: bool = False) -> pd.Series:
    """clean_text and remove every space (for IDs, names of units)."""
    return map_values(series, squeeze_one, few=few)


def _mask(values, index) -> pd.Series:
    return pd.Series(np.fromiter(values, dtype=bool, count=len(index)), index=index)


# ---------------------------------------------------------------------------
# Phones
# ---------------------------------------------------------------------------


_PHONE_SPLIT = re.compile(r"\s*[/,，;；、|]\s*")
_PLUS86_MOBILE = re.compile(r"^(?:\+86|0086|86)(?=1[3-9]\d{9}$)")
_PLUS86_LANDLINE = re.compile(r"^(?:\+86|0086)0?(?=[2-9]\d{8,10}$)")
_TRAILING_ZERO = re.compile(r"^(\d+)\.0+$")
_REASON_PHONE_FORMAT = "电话号码格式不正确（应为11位手机号或带区号的固定电话）"


_PHONE_NOISE_TABLE = str.maketrans("", "", " \t\u00a0-—()（）.")
_SEPARATORS = re.compile(r"[/,，;；、|]")


def _is_mobile(d: str) -> bool:
    return len(d) == 11 and d[0] == "1" and d[1] in "3456789" and d.isdigit() and d.isascii()


def _is_landline(d: str) -> bool:
    return 10 <= len(d) <= 12 and d[0] == "0" and d.isdigit() and d.isascii()


def _one_phone(text: str) -> tuple[str, str]:
    """(dialable digits, '') or ('', reason); ('', '') for an empty piece."""
    if not text:
        return "", ""
    if "e+" in text or "E+" in text:
        return "", "电话号码被存成了科学计数法，无法还原"
    digits = text.translate(_PHONE_NOISE_TABLE)
    if digits.startswith(("+", "86", "0086")):
        digits = _PLUS86_LANDLINE.sub("0", _PLUS86_MOBILE.sub("", digits))
    if _is_mobile(digits) or _is_landline(digits):
        return digits, ""
    if 7 <= len(digits) <= 8 and digits[0] in "23456789" and digits.isdigit():
        return "", "固定电话缺少区号"
    return "", _REASON_PHONE_FORMAT


def phone_cell(value: object) -> tuple[str, str, str, bool]:
    """(phone, second number in the same cell, reason, cell empty)."""
    if type(value) is str and _is_mobile(value):
        return value, "", "", False  # the common case, already clean
    text = clean_one(value)
    if not text:
        return "", "", "", True
    if "." in text:
        text = _TRAILING_ZERO.sub(r"\1", text)  # a number stored as 13800138000.0
    if _SEPARATORS.search(text):
        parts = _PHONE_SPLIT.split(text, maxsplit=1)
        phone, reason = _one_phone(parts[0])
        extra, extra_reason = _one_phone(parts[1]) if len(parts) > 1 else ("", "")
        if not reason and extra_reason:
            reason = "同一单元格中的第二个号码无法识别"
        return phone, extra, reason, False
    phone, reason = _one_phone(text)
    return phone, "", reason, False


def clean_phone(value: object) -> tuple[str, str]:
    """One phone cell outside a roster (a doctor's, a user's): (phone, reason); ('', '') when
    empty, the reason in Chinese when the number cannot be dialled."""
    phone, _extra, reason, _empty = phone_cell(value)
    return phone, reason


def normalize_phone_values(raw: pd.Series) -> pd.DataFrame:
    """Clean phone cells: returns columns phone, extra (a second number in the same cell),
    reason ('' when dialable or empty) and empty."""
    cells = [phone_cell(v) for v in raw.to_numpy(dtype=object)]
    index = raw.index
    return pd.DataFrame(
        {
            "phone": pd.Series([c[0] for c in cells], index=index, dtype=object),
            "extra": pd.Series([c[1] for c in cells], index=index, dtype=object),
            "reason": pd.Series([c[2] for c in cells], index=index, dtype=object),
            "empty": _mask((c[3] for c in cells), index),
        },
        index=index,
    )
