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
SUPPORTED_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".csv", ".txt")
HeaderFinder = Callable[[list[list[object]]], Header]


class SheetFileError(Exception):
    """The file as a whole cannot be read; the message is for the user, in Chinese."""


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

    def chunk(self, frame: pd.DataFrame, first_line: int) -> Chunk:
        frame = frame.rename(columns=self.names).fillna("")
        numbers = pd.Series(range(first_line, first_line + len(frame)), index=frame.index)
        return _drop_blank(Chunk("", numbers, frame))

    @contextmanager
    def errors(self) -> Iterator[None]:
        """A file that does not parse gets one message for the user."""
        try:
            yield
        except UnicodeDecodeError as exc:
            raise SheetFileError(f"文件编码错误：文件中途出现无法按 {self.encoding} 解码的内容。") from exc
        except (pd.errors.ParserError, ValueError) as exc:
            raise SheetFileError(f"CSV 格式错误：{_short(exc)}（某行的列数多于表头？）") from exc

    def parse(self, block: CsvBlock) -> Chunk:
        with self.errors():
            return self.chunk(self.read(io.BytesIO(block.data)), block.first_line)


@dataclass
class SheetSource:
    path: Path
    fields: set[str]
    sheets: list[str]
    skipped_sheets: list[str] = field(default_factory=list)
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


def open_sheet(path: str | Path, chunk_rows: int, find_header: HeaderFinder) -> SheetSource:
    """Open a sheet whose header ``find_header`` recognises (a HeaderSpec, or the roster's)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SheetFileError(f"不支持的文件类型“{suffix or '无扩展名'}”：请上传 .xlsx、.xls 或 .csv 文件。")
    if not path.exists() or path.stat().st_size == 0:
        raise SheetFileError("文件为空或不存在。")
    if suffix in (".csv", ".txt"):
        return _open_csv(path, chunk_rows, find_header)
    return _open_workbook(path, chunk_rows, find_header)


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


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
        raise SheetFileError("无法识别文件编码：请另存为 UTF-8 或 GB18030 编码的 CSV。") from exc


def _open_csv(path: Path, chunk_rows: int, find_header: HeaderFinder) -> SheetSource:
    with path.open("rb") as fh:
        head = fh.read(256 * 1024)
    encoding = detect_encoding(head)
    text = head.decode(encoding, errors="ignore")
    lines = text.splitlines()[:40]
    delimiter, rows, header = _find_csv_header(lines, find_header)
    ncols = max(len(r) for r in rows)
    layout = CsvLayout(encoding, delimiter, ncols, {idx: fld for fld, idx in header.columns.items()})
    source = SheetSource(path=path, fields=set(header.columns), sheets=[""])
    first_line = header.row_index + 2  # 1-based line number of the first data line
    start = _data_start(head, encoding, lines, header.row_index + 1)
    if start is not None:
        # the BOM, if any, is before the data
        source.csv = replace(layout, encoding="utf-8") if encoding == "utf-8-sig" else layout
        source._blocks = _csv_blocks(path, start, first_line, chunk_rows)
        source._chunks = (source.csv.parse(block) for block in source._blocks)
    else:
        source._chunks = _csv_frames(path, layout, header.row_index + 1, first_line, chunk_rows)
    return source


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


def _csv_blocks(path: Path, start: int, first_line: int, chunk_rows: int) -> Iterator[CsvBlock]:
    """The data lines from byte ``start`` on, ``chunk_rows`` rows per block. A block ends after
    a newline outside any quoted field: with an even number of quote characters before it
    (RFC 4180 doubles a quote inside a quoted field), so a quoted value holding a line break
    stays whole. Line numbers count physical lines."""
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
    with layout.errors(), layout.read(path, skiprows=skip, chunksize=chunk_rows) as reader:
        for frame in reader:
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


def _open_workbook(path: Path, chunk_rows: int, find_header: HeaderFinder) -> SheetSource:
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
        names = [
            meta.name
            for meta in workbook.sheets_metadata
            if str(meta.typ).endswith("WorkSheet") and str(meta.visible).endswith("Visible")
        ]
    except Exception as exc:  # calamine raises its own error types for broken files
        raise SheetFileError("无法读取 Excel 文件：文件已损坏、被加密或不是有效的 Excel 文件。") from exc

    found: list[tuple[str, object, Header]] = []
    skipped: list[str] = []
    first_error: str | None = None
    for name in names:
        try:
            sheet = workbook.get_sheet_by_name(name)
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
        path=path, fields=set().union(*(set(h.columns) for _, _, h in found)), sheets=[n for n, _, _ in found], skipped_sheets=skipped
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


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text[:200]
