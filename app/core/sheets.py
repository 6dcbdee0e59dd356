"""Read the sheets people export from their systems (.xlsx, .xls, .csv in UTF-8 / UTF-8 with
BOM / GB18030) into chunks of text cells keyed by field, each row carrying its original sheet
row number: rosters, the organisation sheet and the user sheet. Which columns a sheet has is
the caller's: a header finder (a ``HeaderSpec``, or the roster's own) names the fields.

Cells are read as text, never as numbers: an ID number that Excel stored as a number has
already lost its last digits, and that is reported rather than silently "repaired".
"""
from __future__ import annotations

import codecs
import csv
import io
import math
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import pandas as pd
import python_calamine

from app.core import sandbox
from app.core.upload_guard import (
    check_extent,
    check_workbook_archive,
    child_failure_message,
    ReadLimits,
    SheetFileError,
    unsupported_suffix,
    UPLOAD_SUFFIXES,
)


HEADER_SCAN_ROWS = 30


def header_key(cell: object) -> str:
    """A header cell as compared with column names: NFKC, no spaces, asterisks or ※."""
    text = unicodedata.normalize("NFKC", str(cell or ""))
    return re.sub(r"[\s*※]+", "", text).strip()



@dataclass
class Header:
    row_index: int  # 0-based index in the rows given
    columns: dict[str, int]  # field -> 0-based column index


class HeaderError(ValueError):
    pass


@dataclass(frozen=True)
class HeaderSpec:
    """The header of another kind of sheet read by the same reader (the organisation sheet,
    the user sheet): field -> accepted column names; the header row is the first of the first
    rows that names every one of ``anchors``; ``required`` fields must then all be there."""

    aliases: dict[str, tuple[str, ...]]
    labels: dict[str, str]
    anchors: tuple[str, ...]
    required: tuple[str, ...]

    def map_columns(self, cells: list[object]) -> dict[str, int]:
        index = {header_key(a): f for f, names in self.aliases.items() for a in names}
        mapping: dict[str, int] = {}
        for idx, cell in enumerate(cells):
            key = header_key(cell)
            field = index.get(key) or index.get(re.sub(r"[(\[【][^(\[【]*[)\]】]$", "", key))
            if field is not None and field not in mapping:
                mapping[field] = idx
        return mapping

    def __call__(self, rows: list[list[object]]) -> Header:
        for idx, cells in enumerate(rows[:HEADER_SCAN_ROWS]):
            mapping = self.map_columns(cells)
            if all(a in mapping for a in self.anchors):
                missing = [self.labels[f] for f in self.required if f not in mapping]
                if missing:
                    raise HeaderError("表头第%d行缺少必需列：%s。" % (idx + 1, "、".join(missing)))
                return Header(row_index=idx, columns=mapping)
        names = "”和“".join(self.labels[a] for a in self.anchors)
        raise HeaderError(f"未找到表头：前{HEADER_SCAN_ROWS}行中没有包含“{names}”的行。")


@dataclass(frozen=True)
class Rejection:
    sheet: str
    row: int
    column: str
    value: str
    reason: str



CHUNK_ROWS = 100_000  # rows per chunk where the caller has no reason to choose
SUPPORTED_SUFFIXES = UPLOAD_SUFFIXES  # the one rule for the web forms and the commands alike
HeaderFinder = Callable[[list[list[object]]], Header]


@dataclass
class Chunk:
    sheet: str
    row_numbers: pd.Series  # 1-based row numbers as the user sees them in the file
    frame: pd.DataFrame  # canonical field -> text


@dataclass
class CsvBlock:
    """Whole rows of a CSV file as raw bytes, cut where no quoted field is open."""

    first_line: int  # 1-based line number of its first row in the file
    data: bytes

    @property
    def lines(self) -> int:
        return self.data.count(b"\n") + (not self.data.endswith(b"\n"))


@dataclass
class CsvLayout:
    """How to parse a CSV file's data rows: small and picklable, so that worker processes can
    parse the blocks they validate (the file's one reader then only cuts bytes)."""

    encoding: str
    delimiter: str
    ncols: int
    names: dict[int, str]  # column index -> canonical field
    limits: ReadLimits = field(default_factory=ReadLimits)

    def read(self, source, **options):
        """pandas.read_csv of data rows, every cell as text."""
        return pd.read_csv(
            source,
            encoding=self.encoding,
            sep=self.delimiter,
            # explicit column names: a blank or short first line must not decide the width
            header=None,
            names=range(self.ncols),
            index_col=False,
            usecols=sorted(self.names),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            engine="c",
            **options,
        )

    def chunk(self, frame: pd.DataFrame, first_line: int, *, long_lines: bool = True) -> Chunk:
        """``long_lines=False``: no line of the text was longer than a cell may be, so no cell
        is, and measuring every cell (a second or two per million rows) is skipped."""
        frame = frame.rename(columns=self.names).fillna("")
        numbers = pd.Series(range(first_line, first_line + len(frame)), index=frame.index)
        if long_lines:
            check_cells(frame, numbers, {f: i for i, f in self.names.items()}, self.limits, "")
        return _drop_blank(Chunk("", numbers, frame))

    @contextmanager
    def errors(self) -> Iterator[None]:
        """A file that does not parse gets one message for the user."""
        try:
            yield
        except UnicodeDecodeError as exc:
            raise SheetFileError(f"文件编码错误：文件中途出现无法按 {self.encoding} 解码的内容。") from exc
        except (pd.errors.ParserError, ValueError) as exc:
            raise SheetFileError(csv_error_message(exc)) from exc

    def parse(self, block: CsvBlock) -> Chunk:
        if not block.data.strip():  # only blank lines: pandas finds no columns in them
            return Chunk("", pd.Series([], dtype=int), pd.DataFrame({f: pd.Series([], dtype=object) for f in self.names.values()}))
        # a line of at most max_cell_chars bytes holds no cell of more characters
        long_lines = max(map(len, block.data.split(b"\n"))) > self.limits.max_cell_chars
        with self.errors():
            return self.chunk(self.read(io.BytesIO(block.data)), block.first_line, long_lines=long_lines)


@dataclass
class SheetSource:
    path: Path
    fields: set[str]
    sheets: list[str]
    skipped_sheets: list[str] = field(default_factory=list)
    hidden_sheets: list[str] = field(default_factory=list)  # not read: said in the import's summary
    _chunks: Iterator[Chunk] | None = None
    # CSV files: the same rows as raw blocks, and how to parse one (see app.roster.pipeline.validated_chunks)
    csv: CsvLayout | None = None
    _blocks: Iterator[CsvBlock] | None = None

    def chunks(self) -> Iterator[Chunk]:
        assert self._chunks is not None
        return self._chunks

    def blocks(self) -> Iterator[CsvBlock]:
        assert self._blocks is not None
        return self._blocks

    @property
    def notice(self) -> str | None:
        """What the import's summary says about sheets not read, if any."""
        parts = []
        if self.skipped_sheets:
            parts.append("已跳过没有表头的工作表：" + "、".join(self.skipped_sheets))
        if self.hidden_sheets:
            parts.append("未读取隐藏的工作表：" + "、".join(self.hidden_sheets) + "（如需导入，请在 Excel 中取消隐藏后重新上传）")
        return "；".join(parts) or None


def open_sheet(path: str | Path, chunk_rows: int, find_header: HeaderFinder,
               limits: ReadLimits | None = None) -> SheetSource:
    """Open a sheet whose header ``find_header`` recognises (a HeaderSpec, or the roster's).

    The file is checked before anything reads it (``app.core.upload_guard``); a workbook is
    then read in a confined child process that sends its chunks back, and a CSV file's rows
    are parsed there too (``chunks``; ``blocks`` are the raw rows, cut here, for worker
    processes confined the same way), so no file can take this process down."""
    limits = limits or ReadLimits()
    path = Path(path)
    refused = unsupported_suffix(path)
    if refused:
        raise SheetFileError(refused)
    if not path.exists() or path.stat().st_size == 0:
        raise SheetFileError("文件为空或不存在。")
    if path.suffix.lower() == ".csv":
        return _open_csv(path, chunk_rows, find_header, limits)
    if path.suffix.lower() == ".xlsx":
        check_workbook_archive(path, limits)
    items = isolated(_workbook_items, (path, chunk_rows, find_header, limits), limits)
    fields, sheets, skipped, hidden = next(items)
    return SheetSource(path=path, fields=fields, sheets=sheets, skipped_sheets=skipped, hidden_sheets=hidden,
                       _chunks=items)


def isolated(produce: Callable[..., Iterator], args: tuple, limits: ReadLimits) -> Iterator:
    """``produce(*args)`` run by a confined child process (app.core.sandbox); a child that
    runs out of memory or time becomes one SheetFileError."""
    try:
        yield from sandbox.stream(produce, args, limits.child)
    except sandbox.ChildFailed as exc:
        raise SheetFileError(child_failure_message(exc, limits)) from exc


def check_cells(frame: pd.DataFrame, numbers: pd.Series, columns: dict[str, int], limits: ReadLimits,
                sheet: str) -> None:
    """No cell longer than ``limits.max_cell_chars`` characters."""
    for fld in frame.columns:
        lengths = frame[fld].str.len()
        if len(lengths) and lengths.max() > limits.max_cell_chars:
            at = int(lengths.to_numpy().argmax())
            where = f"工作表“{sheet}”" if sheet else ""
            column = columns.get(fld)
            raise SheetFileError(
                f"{where}第{int(numbers.iloc[at])}行" + (f"第{column + 1}列" if column is not None else "")
                + f"的内容有 {int(lengths.iloc[at])} 个字符，超过单元格上限 {limits.max_cell_chars} 个字符。")


def csv_error_message(exc: Exception) -> str:
    """pandas' parser errors, said in Chinese."""
    text = str(exc)
    if "EOF inside string" in text:
        return "CSV 格式错误：有未闭合的引号（某个以引号开始的单元格直到文件末尾都没有结束引号）。"
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        return f"CSV 格式错误：数据第{match.group(2)}行有 {match.group(3)} 列，多于表头的 {match.group(1)} 列。"
    if "No columns to parse" in text or "Too many columns specified" in text:
        return "CSV 格式错误：数据行中找不到表头的各列。"
    if "out of memory" in text.lower():
        return "CSV 格式错误：文件内容过大，无法读取。"
    return "CSV 格式错误：文件无法按 CSV 格式读取（引号、分隔符或列数不正确）。"


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


ENCODING_MESSAGE = "无法识别文件编码，请另存为UTF-8或GBK编码的CSV。"


def detect_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=False)  # a character cut at the end is not an error
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        codecs.getincrementaldecoder("gb18030")().decode(head, final=False)
        return "gb18030"
    except UnicodeDecodeError as exc:
        raise SheetFileError(ENCODING_MESSAGE) from exc


def _looks_misdecoded(text: str) -> bool:
    """Text decoded as GB18030 that is not: another encoding (Big5, ...) read as GB18030
    gives characters outside GB2312's common ones, a real Chinese header has none."""
    letters = [ch for ch in text if ord(ch) > 0x7F]
    if not letters:
        return False
    odd = 0
    for ch in letters:
        try:
            ch.encode("gb2312")
        except UnicodeEncodeError:
            odd += 1
    return odd * 5 > len(letters)


def _open_csv(path: Path, chunk_rows: int, find_header: HeaderFinder, limits: ReadLimits) -> SheetSource:
    with path.open("rb") as fh:
        head = fh.read(256 * 1024)
    encoding = detect_encoding(head)
    text = head.decode(encoding, errors="ignore")
    lines = text.splitlines()[:40]
    try:
        delimiter, rows, header = _find_csv_header(lines, find_header)
    except SheetFileError as exc:
        if encoding == "gb18030" and _looks_misdecoded("".join(lines[:HEADER_SCAN_ROWS])):
            raise SheetFileError(ENCODING_MESSAGE) from exc
        raise
    ncols = max(len(r) for r in rows)
    check_extent(0, ncols, limits, "文件")
    layout = CsvLayout(encoding, delimiter, ncols, {idx: fld for fld, idx in header.columns.items()}, limits)
    source = SheetSource(path=path, fields=set(header.columns), sheets=[""])
    first_line = header.row_index + 2  # 1-based line number of the first data line
    start = _data_start(head, encoding, lines, header.row_index + 1)
    if start is not None:
        # the BOM, if any, is before the data
        source.csv = replace(layout, encoding="utf-8") if encoding == "utf-8-sig" else layout
        source._blocks = _csv_blocks(path, start, first_line, chunk_rows, limits)
        source._chunks = isolated(_parsed_blocks, (path, source.csv, start, first_line, chunk_rows, limits), limits)
    else:
        source._chunks = isolated(_csv_frames, (path, layout, header.row_index + 1, first_line, chunk_rows), limits)
    return source


def _parsed_blocks(path: Path, layout: CsvLayout, start: int, first_line: int, chunk_rows: int,
                   limits: ReadLimits) -> Iterator[Chunk]:
    for block in _csv_blocks(path, start, first_line, chunk_rows, limits):
        yield layout.parse(block)


def _data_start(head: bytes, encoding: str, lines: list[str], skip: int) -> int | None:
    """The byte offset of the first data line, when the lines above it (title rows and the
    header) are plain "\n" or "\r\n" lines without quotes; otherwise None, and the file is
    read by pandas from the start (skipping rows the way its parser counts them)."""
    end = -1
    for _ in range(skip):
        end = head.find(b"\n", end + 1)
        if end < 0:
            return None
    above = head[: end + 1]
    if b'"' in above or above.count(b"\r") != above.count(b"\r\n"):
        return None
    if above.decode(encoding, errors="ignore").splitlines() != lines[:skip]:
        return None  # another line break (\x0b, \x1c, U+2028, ...) in the title rows
    return end + 1


# Bytes read from the file at a time while cutting blocks
CSV_READ_BYTES = 16 << 20


def _csv_blocks(path: Path, start: int, first_line: int, chunk_rows: int,
                limits: ReadLimits | None = None) -> Iterator[CsvBlock]:
    """The data lines from byte ``start`` on, ``chunk_rows`` rows per block. A block ends after
    a newline outside any quoted field: with an even number of quote characters before it
    (RFC 4180 doubles a quote inside a quoted field), so a quoted value holding a line break
    stays whole. Line numbers count physical lines. A row longer than the column and cell
    limits allow (an unclosed quote swallows the rest of the file) or more rows than
    ``limits.max_rows`` end the file with a SheetFileError: what is held here stays small."""
    limits = limits or ReadLimits()
    longest = limits.max_row_bytes
    line = first_line
    carry = b""
    with path.open("rb") as fh:
        fh.seek(start)
        while True:
            more = fh.read(CSV_READ_BYTES)
            buf = carry + more if carry else more
            if not more:
                if buf.strip(b"\r\n"):
                    yield CsvBlock(line, buf)
                return
            data = np.frombuffer(buf, dtype=np.uint8)
            ends = np.flatnonzero(data == 10)  # "\n"
            if buf.find(b'"') >= 0:
                quotes = np.flatnonzero(data == 34)
                ends = ends[(np.searchsorted(quotes, ends) & 1) == 0]  # carry starts outside quotes
            starts = np.concatenate(([0], ends + 1))  # where each row (and the unfinished tail) begins
            too_long = np.flatnonzero(np.diff(starts, append=len(buf)) > longest)
            if len(too_long):
                at = line + buf[: int(starts[too_long[0]])].count(b"\n")
                raise SheetFileError(
                    f"CSV 格式错误：约第{at}行起有一行超过 {longest >> 10} KB 仍未结束："
                    "可能有未闭合的引号，或单元格内容过长。")
            if line - first_line + len(ends) > limits.max_rows:
                check_extent(line - first_line + len(ends), 0, limits, "文件至少")
            cut = 0
            for k in range(chunk_rows - 1, len(ends), chunk_rows):
                stop = int(ends[k]) + 1
                block = CsvBlock(line, buf[cut:stop])
                line += block.data.count(b"\n")
                cut = stop
                yield block
            carry = buf[cut:]


def _csv_frames(path: Path, layout: CsvLayout, skip: int, first_line: int, chunk_rows: int) -> Iterator[Chunk]:
    """Files whose title rows are not plain lines: pandas reads them from the start."""
    read = 0
    with layout.errors(), layout.read(path, skiprows=skip, chunksize=chunk_rows) as reader:
        for frame in reader:
            read += len(frame)
            check_extent(read, 0, layout.limits, "文件至少")
            yield layout.chunk(frame, first_line)
            first_line += len(frame)


def _find_csv_header(lines: list[str], find_header: HeaderFinder) -> tuple[str, list[list[str]], Header]:
    """Try separators, most frequent first; keep the first one under which a header is found
    (a ';' inside a quoted label cell must not win over the real ',')."""
    counts = {sep: max((line.count(sep) for line in lines), default=0) for sep in (",", "\t", ";", "|")}
    first_error: HeaderError | None = None
    for sep in sorted(counts, key=lambda k: -counts[k]):
        if counts[sep] == 0 and sep != ",":
            continue
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=sep))
        try:
            return sep, rows, find_header(rows)
        except HeaderError as exc:
            first_error = first_error or exc
    raise SheetFileError(str(first_error or "未找到表头。"))


# ---------------------------------------------------------------------------
# Excel
# ---------------------------------------------------------------------------


def cell_text(value: object) -> str:
    """One cell as text. Large numbers keep their float spelling (4.30621198001011e+17) so
    the validator can say the ID lost its digits instead of accepting a wrong number."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _workbook_items(path: Path, chunk_rows: int, find_header: HeaderFinder, limits: ReadLimits) -> Iterator:
    """In the reading child: what the workbook holds (fields, sheets, skipped and hidden
    sheets), then its chunks."""
    source = _open_workbook(path, chunk_rows, find_header, limits)
    yield source.fields, source.sheets, source.skipped_sheets, source.hidden_sheets
    yield from source.chunks()


def _open_workbook(path: Path, chunk_rows: int, find_header: HeaderFinder, limits: ReadLimits) -> SheetSource:
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
        worksheets = [meta for meta in workbook.sheets_metadata if str(meta.typ).endswith("WorkSheet")]
        names = [meta.name for meta in worksheets if str(meta.visible).endswith(".Visible")]
        hidden = [meta.name for meta in worksheets if not str(meta.visible).endswith(".Visible")]
    except Exception as exc:  # calamine raises its own error types for broken files
        raise SheetFileError("无法读取 Excel 文件：文件已损坏、被加密或不是有效的 Excel 文件。") from exc
    if len(workbook.sheets_metadata) > limits.max_sheets:
        raise SheetFileError(f"Excel 文件有 {len(workbook.sheets_metadata)} 个工作表，超过上限 {limits.max_sheets} 个。")

    found: list[tuple[str, object, Header]] = []
    skipped: list[str] = []
    first_error: str | None = None
    rows_total = 0
    for name in names:
        try:
            sheet = workbook.get_sheet_by_name(name)
        except Exception as exc:
            raise SheetFileError(f"无法读取工作表“{name}”。") from exc
        rows_total += sheet.height
        check_extent(sheet.height, sheet.width, limits, f"工作表“{name}”")
        check_extent(rows_total, 0, limits, "文件的工作表合计")
        try:
            head = sheet.to_python(skip_empty_area=False, nrows=40)
        except Exception as exc:
            raise SheetFileError(f"无法读取工作表“{name}”。") from exc
        if not any(any(cell_text(c).strip() for c in row) for row in head):
            continue
        try:
            header = find_header(head)
        except HeaderError as exc:
            first_error = first_error or f"工作表“{name}”：{exc}"
            skipped.append(name)
            continue
        found.append((name, sheet, header))
    if not found:
        raise SheetFileError(first_error or "文件中没有数据。")

    def generate() -> Iterator[Chunk]:
        for name, sheet, header in found:
            try:
                rows = sheet.to_python(skip_empty_area=False)
                merged = sheet.merged_cell_ranges or []
            except Exception as exc:
                raise SheetFileError(f"无法读取工作表“{name}”。") from exc
            columns = header.columns
            data_start = header.row_index + 1
            filled = _fill_merged(rows, merged, data_start)
            data = rows[data_start:]
            fields_at: dict[int, list[str]] = {}
            for fld, idx in columns.items():
                fields_at.setdefault(idx, []).append(fld)
            for start in range(0, len(data), chunk_rows):
                part = data[start : start + chunk_rows]
                frame = pd.DataFrame({fld: _column_text(part, idx) for fld, idx in columns.items()})
                first = header.row_index + 2 + start
                numbers = pd.Series(range(first, first + len(part)), index=frame.index)
                check_cells(frame, numbers, columns, limits, name)
                original = None
                lo, hi = data_start + start, data_start + start + len(part)
                here: dict[int, list[int]] = {}  # column -> positions in this chunk filled from a merge
                for r, c in filled:
                    if lo <= r < hi and c in fields_at:
                        here.setdefault(c, []).append(r - lo)
                if here:  # blank and footer lines are judged by what they really contain
                    original = frame.copy()
                    for c, positions in here.items():
                        for fld in fields_at[c]:
                            original.iloc[positions, original.columns.get_loc(fld)] = ""
                yield _drop_blank(Chunk(name, numbers, frame), original)

    source = SheetSource(
        path=path, fields=set().union(*(set(h.columns) for _, _, h in found)), sheets=[n for n, _, _ in found],
        skipped_sheets=skipped, hidden_sheets=hidden,
    )
    source._chunks = generate()
    return source


def _column_text(part: list[list[object]], idx: int) -> list[str]:
    """Column ``idx`` of the rows as text (most cells are text already: only the others go
    through cell_text)."""
    values = [r[idx] if idx < len(r) else None for r in part]
    return [v if type(v) is str else cell_text(v) for v in values]


def _fill_merged(rows: list[list[object]], merged: list, first_row: int = 0) -> set[tuple[int, int]]:
    """A merged cell (an institution's name spanning its residents' rows) holds its value in
    the top-left cell only; give every cell of the range from ``first_row`` on (the data; a
    merged title above the header does not matter) that value. Returns the cells filled, so
    blank and footer lines are still recognised by what they really contain."""
    filled: set[tuple[int, int]] = set()
    for (r0, c0), (r1, c1) in merged:
        if r0 >= len(rows) or c0 >= len(rows[r0]) or r1 < first_row:
            continue
        value = rows[r0][c0]
        for r in range(max(r0, first_row), min(r1, len(rows) - 1) + 1):
            row = rows[r]
            for c in range(c0, min(c1, len(row) - 1) + 1):
                if (r, c) != (r0, c0):
                    row[c] = value
                    filled.add((r, c))
    return filled


FOOTER_PATTERN = r"^(?:合计|总计|小计|共计|制表|填表|审核|备注|说明)"


def _drop_blank(chunk: Chunk, original: pd.DataFrame | None = None) -> Chunk:
    """Drop blank lines and footer lines ("合计：1234人", "制表人：…") that fill one cell only.
    `original` is the chunk before merged cells were filled in, when there were any."""
    frame = chunk.frame if original is None else original
    count = frame.ne("").sum(axis=1)
    # only these can be blank or footer lines: look closer at them alone. A row of spaces has
    # no empty cell, but its first cell is blank once merged cells are filled in (as every
    # blank row's is), and few other rows' are.
    first = chunk.frame.iloc[:, 0] if len(chunk.frame.columns) else None
    sparse = count <= 2 if first is None else (count <= 2) | first.str.strip().eq("").to_numpy()
    if sparse.any():
        count = count.copy()
        count[sparse] = frame[sparse].apply(lambda col: col.str.strip()).ne("").sum(axis=1)
    blank = count == 0
    single = count == 1
    if single.any():
        lone = frame[single].apply(lambda row: next((v for v in row if str(v).strip()), ""), axis=1)
        footer = lone.astype(str).str.strip().str.contains(FOOTER_PATTERN, regex=True)
        blank |= footer.reindex(frame.index, fill_value=False)
    if blank.any():
        keep = ~blank
        return Chunk(chunk.sheet, chunk.row_numbers[keep], chunk.frame[keep])
    return chunk

