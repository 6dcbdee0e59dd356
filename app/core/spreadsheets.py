"""The one spreadsheet helper every export goes through.

Cells that start with = + - @ (or a tab / carriage return) are prefixed with an apostrophe
so a resident's name or a note can never run as a formula in Excel (CSV/formula injection).
Files are written to a temporary name and renamed, so a failed export never leaves half a file,
with mode 0600: only the product's own system user can read them. Imports write their error
report (the rejected rows, and why) through it too, with every ID-like number in any column
masked.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from app.core.masking import scrub_ids

_DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    if isinstance(value, str) and value.startswith(_DANGEROUS_START):
        return "'" + value
    return value


def _safe(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(neutralise)
    return out


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)  # mode 0600


def _publish(tmp: str, path: Path) -> None:
    os.chmod(tmp, 0o600)  # whatever the writer did to the temporary file, the result is private
    os.replace(tmp, path)


def write_xlsx(
    path: str | Path,
    sheets: dict[str, pd.DataFrame],
    column_widths: dict[str, int] | None = None,
    *,
    titles: dict[str, str] | None = None,
    number_formats: dict[str, str] | None = None,
) -> Path:
    """One sheet per frame, header row frozen. ``titles`` (sheet name -> one line) puts a bold
    title row above a sheet's header; ``number_formats`` (column name -> Excel number format,
    e.g. "0.0%") formats a column's numbers wherever it appears, so a rate stays a number."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        with pd.ExcelWriter(tmp, engine="xlsxwriter") as writer:
            formats: dict[str, object] = {}

            def cell_format(key: str, spec: dict):
                if key not in formats:
                    formats[key] = writer.book.add_format(spec)
                return formats[key]

            for name, frame in sheets.items():
                title = (titles or {}).get(name)
                start = 1 if title else 0
                _safe(frame).to_excel(writer, sheet_name=name[:31], index=False, startrow=start)
                sheet = writer.sheets[name[:31]]
                if title:
                    bold = cell_format("title", {"bold": True, "font_size": 12})
                    sheet.write_string(0, 0, str(neutralise(title)), bold)
                for idx, column in enumerate(frame.columns):
                    width = (column_widths or {}).get(str(column), max(10, min(40, len(str(column)) * 2 + 4)))
                    number = (number_formats or {}).get(str(column))
                    shown = cell_format("num:" + number, {"num_format": number}) if number else None
                    sheet.set_column(idx, idx, width, shown)
                sheet.freeze_panes(start + 1, 0)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    """UTF-8 with BOM, so Excel on a Chinese Windows desktop opens it correctly."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as fh:
            _safe(frame).to_csv(fh, index=False)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------
# The error report of an import (rejected rows of a roster, user or organisation sheet)
# ---------------------------------------------------------------------------

REPORT_COLUMNS = ["工作表", "行号", "列", "值", "原因"]


class RejectedRow(Protocol):
    """A row an import turned down, and why (app.roster.validate.Rejection is one)."""

    @property
    def sheet(self) -> str: ...

    @property
    def row(self) -> int: ...

    @property
    def column(self) -> str: ...

    @property
    def value(self) -> str: ...

    @property
    def reason(self) -> str: ...


def write_error_report(reports_dir: Path, sha: str, rejections: Sequence[RejectedRow]) -> Path | None:
    """xlsx and csv side by side; returns the xlsx path, or None when nothing was rejected."""
    if not rejections:
        return None
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{sha[:8]}-{uuid.uuid4().hex[:6]}-错误报告"
    frame = pd.DataFrame(
        [(r.sheet, r.row, r.column, r.value, r.reason) for r in rejections], columns=REPORT_COLUMNS
    )
    for column in ("工作表", "列", "值", "原因"):  # an ID typed into any column is masked too
        frame[column] = [scrub_ids(v) if isinstance(v, str) else v for v in frame[column]]
    frame = frame.sort_values(["工作表", "行号"], kind="stable")
    reports_dir = Path(reports_dir)
    write_csv(reports_dir / f"{stem}.csv", frame)
    return write_xlsx(reports_dir / f"{stem}.xlsx", {"错误行": frame}, {"原因": 60, "值": 30})
