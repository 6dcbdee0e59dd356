"""What a sheet file may be before anything reads it, and the limits its reader works under.

Every uploaded or imported sheet (roster, organisation sheet, user sheet; web and command
line alike) is checked here first: its extension (one rule, ``UPLOAD_SUFFIXES``), and for a
workbook its zip directory, without extracting anything: the number of members and of
sheets, every member's uncompressed size and compression ratio (a zip bomb), and each
sheet's declared dimension (``<dimension ref="A1:XFD1048576"/>``), read from the first bytes
of the sheet. The reader then runs in a confined child process (``app.core.sandbox``) and
checks rows, columns and cell lengths as it goes (``app.core.sheets``).
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.core.sandbox import ChildFailed, Limits

UPLOAD_SUFFIXES = (".xlsx", ".xls", ".csv")
UPLOAD_SUFFIXES_TEXT = "、".join(UPLOAD_SUFFIXES[:-1]) + " 或 " + UPLOAD_SUFFIXES[-1]
UPLOAD_EXTENSIONS = [suffix[1:] for suffix in UPLOAD_SUFFIXES]  # for the web forms' FileAllowed
UPLOAD_REFUSED = "只支持 " + "、".join(UPLOAD_SUFFIXES) + " 文件"

# a member smaller than this is never called a bomb, whatever its ratio (tiny XML parts of a
# workbook compress very well and harm nobody)
RATIO_MIN_BYTES = 8 << 20
DIMENSION_SCAN_BYTES = 64 << 10
MAX_MEMBERS = 10_000


class SheetFileError(Exception):
    """The file as a whole cannot be read; the message is for the user, in Chinese."""


@dataclass(frozen=True)
class ReadLimits:
    """How big a sheet file may be, and what its reader may use."""

    max_rows: int = 3_000_000
    max_columns: int = 256
    max_cell_chars: int = 1000
    max_sheets: int = 50
    max_unpacked_mb: int = 4096  # the workbook's members together, uncompressed
    max_ratio: int = 100  # uncompressed / compressed size of one member
    memory_mb: int = 2048  # address space the reading child may take beyond its parent's
    timeout_s: float = 600.0

    @classmethod
    def from_config(cls, config: Mapping) -> "ReadLimits":
        return cls(
            max_rows=int(config.get("UPLOAD_MAX_ROWS", cls.max_rows)),
            memory_mb=int(config.get("READER_MAX_MEMORY_MB", cls.memory_mb)),
            timeout_s=float(config.get("READER_TIMEOUT_SECONDS", cls.timeout_s)),
        )

    @property
    def child(self) -> Limits:
        return Limits(memory_mb=self.memory_mb, timeout_s=self.timeout_s)

    @property
    def max_row_bytes(self) -> int:
        """The longest line a CSV row can take within the column and cell limits."""
        return self.max_columns * (self.max_cell_chars * 4 + 3) + 1024


def unsupported_suffix(name: str | Path) -> str | None:
    """The message for a file whose extension is not accepted, or None."""
    suffix = Path(str(name)).suffix.lower()
    if suffix in UPLOAD_SUFFIXES:
        return None
    return f"不支持的文件类型“{suffix or '无扩展名'}”：请上传 {UPLOAD_SUFFIXES_TEXT} 文件。"


def child_failure_message(exc: ChildFailed, limits: ReadLimits) -> str:
    if exc.reason == "memory":
        return (f"文件无法读取：读取时所需内存超过上限（{limits.memory_mb} MB），"
                "文件可能声明了过大的表格范围或含有异常巨大的单元格。请检查文件后重新导出。")
    if exc.reason == "timeout" and exc.detail == "stalled":  # seen when an allocation failed under the cap
        return (f"文件无法读取：读取进程停止响应（通常是所需内存超过上限 {limits.memory_mb} MB），已停止。"
                "请检查文件后重新导出。")
    if exc.reason == "timeout":
        return f"文件无法读取：读取超过 {int(limits.timeout_s)} 秒仍未完成，已停止。请检查文件后重新导出。"
    return "文件无法读取：读取过程异常中止，文件可能已损坏。请检查文件后重新导出。"


_CELL = re.compile(r"^\$?([A-Z]{1,4})\$?([0-9]{1,8})$")
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s[^>]*?ref\s*=\s*[\"']([^\"']+)[\"']")
_SHEET_MEMBER = re.compile(r"^xl/(?:worksheets|chartsheets|dialogsheets|macrosheets)/[^/]+\.xml$", re.IGNORECASE)


def cell_position(ref: str) -> tuple[int, int] | None:
    """'XFD1048576' -> (1048576, 16384): 1-based row and column."""
    match = _CELL.match(ref.strip().upper())
    if not match:
        return None
    column = 0
    for ch in match.group(1):
        column = column * 26 + ord(ch) - 64
    return int(match.group(2)), column


def check_extent(rows: int, columns: int, limits: ReadLimits, where: str = "") -> None:
    if columns > limits.max_columns:
        raise SheetFileError(f"{where}有 {columns} 列，超过上限 {limits.max_columns} 列：请只保留需要的列后重新导出。")
    if rows > limits.max_rows:
        raise SheetFileError(f"{where}有 {rows} 行，超过上限 {limits.max_rows} 行：请分批导入。")


def check_workbook_archive(path: Path, limits: ReadLimits) -> None:
    """An .xlsx file's zip directory and declared sheet dimensions, nothing extracted."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SheetFileError("无法读取 Excel 文件：文件已损坏、被加密或不是有效的 Excel 文件。") from exc
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise SheetFileError(f"Excel 文件结构异常：包含 {len(members)} 个部件。")
        total = 0
        for member in members:
            total += member.file_size
            if member.file_size >= RATIO_MIN_BYTES and member.file_size > limits.max_ratio * max(member.compress_size, 1):
                raise SheetFileError(
                    f"Excel 文件结构异常：部件 {member.filename} 的压缩比超过 {limits.max_ratio} 倍"
                    f"（解压后 {member.file_size >> 20} MB），疑似压缩炸弹，已拒绝读取。")
        if total > limits.max_unpacked_mb << 20:
            raise SheetFileError(f"Excel 文件解压后有 {total >> 20} MB，超过上限 {limits.max_unpacked_mb} MB。")
        sheets = [m for m in members if _SHEET_MEMBER.match(m.filename)]
        if len(sheets) > limits.max_sheets:
            raise SheetFileError(f"Excel 文件有 {len(sheets)} 个工作表，超过上限 {limits.max_sheets} 个。")
        for member in sheets:
            try:
                with archive.open(member) as fh:
                    head = fh.read(DIMENSION_SCAN_BYTES)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
                raise SheetFileError("无法读取 Excel 文件：文件已损坏、被加密或不是有效的 Excel 文件。") from exc
            match = _DIMENSION.search(head)
            if not match:
                continue
            corner = match.group(1).decode("ascii", "replace").split(":")[-1]
            position = cell_position(corner)
            if position is not None:
                name = Path(member.filename).stem
                check_extent(position[0], position[1], limits, f"工作表 {name} 声明的范围（{corner}）")
