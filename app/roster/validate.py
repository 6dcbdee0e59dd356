"""Validate one chunk of roster rows: pure (no database), vectorised with pandas.

Every failed check yields a Rejection with the original sheet row number, the column (by its
standard name: 身份证号, 联系电话 …), the value (ID numbers masked) and the reason in Chinese. A row with any
rejection is not imported; all of its problems are reported at once so one pass fixes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

from app.roster.normalize import (
    FIELD_LABELS,
    Vocabulary,
    clean_text,
    default_contract_end,
    hash_ids,
    mask_id,
    mask_ids,
    normalize_phone_values,
    parse_dates,
    parse_sex,
    squeeze,
    validate_ids,
)

EARLIEST_CONTRACT = pd.Timestamp("2010-01-01")
LONGEST_CONTRACT_YEARS = 5


@dataclass(frozen=True)
class Rejection:
    sheet: str
    row: int
    column: str
    value: str
    reason: str


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
    out["id_hash"] = ""
    out.loc[has_id, "id_hash"] = hash_ids(hash_key, ids.id18[has_id])
    out["id_masked"] = ""
    out.loc[has_id, "id_masked"] = mask_ids(ids.id18[has_id])
    out["sex"] = ids.sex
    out["birth_date"] = ids.birth_date

    # Name
    name = squeeze(column("name")).str.replace("•", "·")
    errors.add(name == "", "name", name, "姓名为空")
    errors.add(name.str.len() > 50, "name", name, "姓名超过50个字")
    errors.add(name.str.contains(r"\d", regex=True), "name", name, "姓名中含有数字")
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
    out["county"] = squeeze(column("county"))
    out["institution"] = squeeze(column("institution"))
    out["institution_code"] = squeeze(column("institution_code"))
    out["team"] = squeeze(column("team"))
    errors.add(out["institution"] == "", "institution", out["institution"], "签约机构为空")
    errors.add(out["team"] == "", "team", out["team"], "签约团队为空")
    out["doctor"] = squeeze(column("doctor"))
    doctor_phone = normalize_phone_values(column("doctor_phone"))
    out["doctor_phone"] = doctor_phone["phone"]
    out["address"] = clean_text(column("address")).str.slice(0, 200)

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
    raw_labels = clean_text(column("labels"))
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
        accepted[col] = accepted[col].dt.strftime("%Y-%m-%d")
    identified = out.loc[bad & has_id, ["id_hash", "county", "institution"]]
    return ValidatedChunk(
        rows=accepted,
        rejections=errors.rejections,
        rejected_rows=int(bad.sum()),
        rejected_identified=identified,
    )
