"""Validate one chunk of roster rows: pure (no database), vectorised with pandas.

Every failed check yields a Rejection with the original sheet row number, the column (by its
standard name: 身份证号, 联系电话 …), the value (ID numbers masked) and the reason in Chinese. A row with any
rejection is not imported; all of its problems are reported at once so one pass fixes them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from app.core.sheets import Rejection
from app.roster.normalize import FIELD_LABELS, default_contract_end, parse_dates, parse_sex, validate_ids
from app.core.cells import clean_one, clean_text, map_values, normalize_phone_values, phone_cell, squeeze, squeeze_one
from app.core.populations import Vocabulary
from app.core.masking import hash_ids, mask_id, mask_ids

EARLIEST_CONTRACT = pd.Timestamp("2010-01-01")
_HAS_DIGIT = re.compile(r"\d")


def _name_problem(name: str) -> str:
    if not name:
        return "姓名为空"
    if len(name) > 50:
        return "姓名超过50个字"
    if _HAS_DIGIT.search(name):
        return "姓名中含有数字"
    return ""


def _iso_dates(values: pd.Series) -> np.ndarray:
    """datetime64 -> 'YYYY-MM-DD' strings; each distinct day formatted once."""
    days = values.to_numpy(dtype="datetime64[D]")
    codes, uniques = pd.factorize(days)
    return np.asarray(np.datetime_as_string(np.asarray(uniques, dtype="datetime64[D]"), unit="D"), dtype=object)[codes]
LONGEST_CONTRACT_YEARS = 5


@dataclass
class ValidatedChunk:
    rows: pd.DataFrame  # accepted rows, cleaned (see columns below)
    rejections: list[Rejection]
    rejected_rows: int
    # id_hash and unit names of rejected rows whose ID was readable: a --full import must not
    # deactivate a resident who is in the file but whose row had another problem.
    rejected_identified: pd.DataFrame


OUTPUT_COLUMNS = [
    "row_no",
    "id_hash",
    "id_masked",
    "name",
    "sex",
    "birth_date",
    "phone",
    "phone2",
    "address",
    "doctor",
    "doctor_phone",
    "county",
    "institution",
    "institution_code",
    "team",
    "contract_start",
    "contract_end",
    "label_codes",
]


class _Collector:
    def __init__(self, sheet: str, row_numbers: pd.Series):
        self.sheet = sheet
        self.row_numbers = row_numbers
        self.rejections: list[Rejection] = []
        self.bad = pd.Series(False, index=row_numbers.index)

    def add(self, mask: pd.Series, field: str, values: pd.Series, reason: str | pd.Series) -> None:
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        self.bad |= mask
        label = FIELD_LABELS[field]
        reasons = reason[mask] if isinstance(reason, pd.Series) else None
        for idx in mask[mask].index:
            self.rejections.append(
                Rejection(
                    self.sheet,
                    int(self.row_numbers[idx]),
                    label,
                    str(values[idx]),
                    str(reasons[idx]) if reasons is not None else reason,
                )
            )


def validate_frame(
    frame: pd.DataFrame,
    row_numbers: pd.Series,
    sheet: str,
    *,
    today: date,
    vocabulary: Vocabulary,
    hash_key: bytes,
) -> ValidatedChunk:
    def column(field: str) -> pd.Series:
        if field in frame.columns:
            return frame[field].fillna("").astype(str)
        return pd.Series("", index=frame.index, dtype=object)

    errors = _Collector(sheet, row_numbers)
    out = pd.DataFrame(index=frame.index)
    out["row_no"] = row_numbers

    # ID number: the key of everything
    raw_id = column("id_number")
    ids = validate_ids(raw_id, today)
    bad_id = ids.reason != ""
    shown_id = pd.Series("", index=frame.index, dtype=object)
    shown_id[bad_id] = squeeze(raw_id[bad_id]).map(mask_id)
    errors.add(bad_id, "id_number", shown_id, ids.reason)
    has_id = ids.id18 != ""
    valid_ids = ids.id18[has_id]
    out["id_hash"] = hash_ids(hash_key, valid_ids).reindex(frame.index, fill_value="")
    out["id_masked"] = mask_ids(valid_ids).reindex(frame.index, fill_value="")
    out["sex"] = ids.sex
    out["birth_date"] = ids.birth_date

    # Name
    name = map_values(column("name"), lambda v: squeeze_one(v).replace("•", "·"))
    name_reason = map_values(name, _name_problem)
    errors.add(name_reason != "", "name", name, name_reason)
    out["name"] = name

    # Sex and birth date columns, when present, must agree with the ID
    if "sex" in frame.columns:
        sex_col = parse_sex(column("sex"))
        errors.add(sex_col == "?", "sex", column("sex"), "性别无法识别（应为 男/女）")
        errors.add(has_id & sex_col.isin(["M", "F"]) & (sex_col != ids.sex), "sex", column("sex"), "性别与身份证号不符")
    if "birth_date" in frame.columns:
        birth_col, birth_empty = parse_dates(column("birth_date"))
        errors.add(~birth_empty & birth_col.isna(), "birth_date", column("birth_date"), "出生日期无法识别")
        errors.add(
            has_id & birth_col.notna() & (birth_col != ids.birth_date),
            "birth_date",
            column("birth_date"),
            "出生日期与身份证号不符",
        )

    # Phones
    phones = normalize_phone_values(column("phone"))
    errors.add(phones["empty"], "phone", column("phone"), "联系电话为空")
    errors.add(phones["reason"] != "", "phone", column("phone"), phones["reason"])
    out["phone"] = phones["phone"]
    second = phones["extra"]
    if "phone2" in frame.columns:
        phones2 = normalize_phone_values(column("phone2"))
        errors.add(phones2["reason"] != "", "phone2", column("phone2"), phones2["reason"])
        second = phones2["phone"].where(phones2["phone"] != "", second)
    out["phone2"] = second.where(second != out["phone"], "")

    # Units
    out["county"] = squeeze(column("county"), few=True)
    out["institution"] = squeeze(column("institution"), few=True)
    out["institution_code"] = squeeze(column("institution_code"), few=True)
    out["team"] = squeeze(column("team"), few=True)
    errors.add(out["institution"] == "", "institution", out["institution"], "签约机构为空")
    errors.add(out["team"] == "", "team", out["team"], "签约团队为空")
    out["doctor"] = squeeze(column("doctor"), few=True)
    out["doctor_phone"] = map_values(column("doctor_phone"), lambda v: phone_cell(v)[0], few=True)
    out["address"] = map_values(column("address"), lambda v: clean_one(v)[:200], few=True)

    # Contract dates
    start, start_empty = parse_dates(column("contract_start"))
    errors.add(start_empty, "contract_start", column("contract_start"), "签约日期为空")
    errors.add(~start_empty & start.isna(), "contract_start", column("contract_start"), "签约日期无法识别")
    today_ts = pd.Timestamp(today)
    errors.add(start.notna() & (start > today_ts), "contract_start", column("contract_start"), "签约日期晚于今天")
    errors.add(start.notna() & (start < EARLIEST_CONTRACT), "contract_start", column("contract_start"), "签约日期早于2010年，请核对")
    errors.add(
        start.notna() & ids.birth_date.notna() & (start < ids.birth_date),
        "contract_start",
        column("contract_start"),
        "签约日期早于出生日期",
    )
    end = default_contract_end(start)
    if "contract_end" in frame.columns:
        end_col, end_empty = parse_dates(column("contract_end"))
        errors.add(~end_empty & end_col.isna(), "contract_end", column("contract_end"), "到期日期无法识别")
        errors.add(end_col.notna() & start.notna() & (end_col <= start), "contract_end", column("contract_end"), "到期日期不晚于签约日期")
        errors.add(
            end_col.notna() & start.notna() & (end_col > start + pd.DateOffset(years=LONGEST_CONTRACT_YEARS)),
            "contract_end",
            column("contract_end"),
            f"签约期限超过{LONGEST_CONTRACT_YEARS}年，请核对",
        )
        end = end_col.where(end_col.notna(), end)
    out["contract_start"] = start
    out["contract_end"] = end

    # Key populations, from the configured vocabulary only
    raw_labels = clean_text(column("labels"), few=True)
    parsed = {cell: vocabulary.parse(cell) for cell in raw_labels.unique()}  # few distinct cells
    out["label_codes"] = raw_labels.map({cell: codes for cell, (codes, _) in parsed.items()}).astype(object)
    unknown = raw_labels.map({cell: "、".join(bad) for cell, (_, bad) in parsed.items()}).astype(object)
    errors.add(
        unknown != "",
        "labels",
        raw_labels,
        "人群分类不在配置的词表中：" + unknown,
    )

    bad = errors.bad
    accepted = out.loc[~bad, OUTPUT_COLUMNS].copy()
    for col in ("birth_date", "contract_start", "contract_end"):
        accepted[col] = _iso_dates(accepted[col])
    identified = out.loc[bad & has_id, ["id_hash", "county", "institution"]]
    return ValidatedChunk(
        rows=accepted,
        rejections=errors.rejections,
        rejected_rows=int(bad.sum()),
        rejected_identified=identified,
    )
