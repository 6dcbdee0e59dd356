"""The county's call list for a round: sample_lists/<county>/<YYYY-MM>-呼叫名单.xlsx and .csv,
the same rows for the download button and the print page."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from sqlalchemy import case as sql_case
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Case, Round
from app.core.spreadsheets import write_csv, write_xlsx

COLUMNS = [
    "序号", "机构", "团队", "家庭医生", "姓名", "性别", "年龄", "联系电话", "人群类别", "签约日期", "样本类型",
    # left empty for the paper fallback
    "拨打日期", "结果", "满意度", "备注",
]
WIDTHS = {"机构": 24, "团队": 22, "联系电话": 28, "人群类别": 28, "样本类型": 14, "备注": 30, "结果": 14}
SEX = {"M": "男", "F": "女"}
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def sample_label(kind: str, position: int) -> str:
    return f"主样本 {position}" if kind == "primary" else f"备用样本 {position}"


def ordered_cases(session: Session, round_id: int) -> list[Case]:
    """Institution, team, then sample order (primaries before backups)."""
    return list(
        session.scalars(
            select(Case)
            .where(Case.round_id == round_id)
            .order_by(
                Case.institution_name,
                Case.institution_id,
                Case.team_name,
                Case.team_id,
                sql_case((Case.kind == "primary", 0), else_=1),
                Case.position,
            )
        )
    )


def call_list_rows(cases: list[Case]) -> list[dict]:
    rows = []
    for number, c in enumerate(cases, start=1):
        # digits as stored, so the number can be copied into a phone as it is
        phones = c.phone + (f" / {c.phone2}" if c.phone2 else "")
        rows.append(
            {
                "序号": number,
                "机构": c.institution_name,
                "团队": c.team_name,
                "家庭医生": c.doctor_name or "",
                "姓名": c.name,
                "性别": SEX.get(c.sex, ""),
                "年龄": c.age,
                "联系电话": phones,
                "人群类别": c.population_labels,
                "签约日期": c.contract_start.isoformat(),
                "样本类型": sample_label(c.kind, c.position),
                "拨打日期": "",
                "结果": "",
                "满意度": "",
                "备注": "",
            }
        )
    return rows


def call_list_frame(session: Session, round_id: int) -> pd.DataFrame:
    return pd.DataFrame(call_list_rows(ordered_cases(session, round_id)), columns=COLUMNS)


def safe_dirname(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name).strip().strip(".")
    return cleaned or "county"


def call_list_paths(base_dir: str | Path, county_name: str, month: str) -> tuple[Path, Path]:
    folder = Path(base_dir) / safe_dirname(county_name)
    stem = f"{month}-呼叫名单"
    return folder / f"{stem}.xlsx", folder / f"{stem}.csv"


def write_call_list(session: Session, round_id: int, base_dir: str | Path) -> list[Path]:
    """Write both files atomically (each to a temporary name, then renamed)."""
    round_ = session.get(Round, round_id)
    frame = call_list_frame(session, round_id)
    xlsx, csv = call_list_paths(base_dir, round_.county.name, round_.month)
    write_xlsx(xlsx, {f"{round_.month}呼叫名单": frame}, column_widths=WIDTHS)
    write_csv(csv, frame)
    return [xlsx, csv]
