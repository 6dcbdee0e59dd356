"""Validation of a roster's chunks, in worker processes for a large file.

Validation is pure and CPU-bound (app.roster.validate); the importing process meanwhile
writes the chunks already validated to the database."""
from __future__ import annotations

import functools
import itertools
import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import date

from app.roster.batch import ImportContext
from app.core.sheets import Chunk, CsvBlock, CsvLayout, SheetSource
from app.roster.validate import ValidatedChunk, validate_frame



PARALLEL_MIN_ROWS = 20_000


def validated_chunks(source: SheetSource, ctx: ImportContext, today: date
                     ) -> Iterator[tuple[str, int, ValidatedChunk]]:
    """Each chunk's sheet, rows read and validation. Validation is pure and CPU-bound; for a
    large file it runs in worker processes while this process writes the chunks already
    validated. A CSV file goes to them as raw blocks of whole rows, which they parse too:
    this process then only cuts the bytes (no parsing, no chunk pickled on its way out)."""
    args = {"today": today, "vocabulary": ctx.vocabulary, "hash_key": ctx.hash_key}
    if source.csv is not None:
        items = source.blocks()
        work = functools.partial(_parse_and_validate, source.csv, **args)
        size = lambda block: block.lines  # noqa: E731
    else:
        items = source.chunks()
        work = functools.partial(_validate_chunk, **args)
        size = lambda chunk: len(chunk.frame)  # noqa: E731
    first = next(items, None)
    if first is None:
        return
    items = itertools.chain([first], items)
    if ctx.workers <= 0 or size(first) < min(PARALLEL_MIN_ROWS, ctx.chunk_rows):
        for item in items:
            done = work(item)
            if done is not None:
                yield done
        return
    # fork: the workers start at once and import nothing (spawn would re-run the caller's
    # main script); they only compute, never touch the parent's database connections, and
    # leave through os._exit, so nothing inherited is closed twice
    with ProcessPoolExecutor(max_workers=ctx.workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) > ctx.workers:
                done = pending.popleft().result()
                if done is not None:
                    yield done
        while pending:
            done = pending.popleft().result()
            if done is not None:
                yield done


def _validate_chunk(chunk: Chunk, **args) -> tuple[str, int, ValidatedChunk] | None:
    if chunk.frame.empty:  # only blank or footer lines
        return None
    return chunk.sheet, len(chunk.frame), validate_frame(chunk.frame, chunk.row_numbers, chunk.sheet, **args)


def _parse_and_validate(layout: CsvLayout, block: CsvBlock, **args) -> tuple[str, int, ValidatedChunk] | None:
    return _validate_chunk(layout.parse(block), **args)

