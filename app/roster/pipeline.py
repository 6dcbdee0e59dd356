"""Validation of a roster's chunks, in worker processes for a large file.

Validation is pure and CPU-bound (app.roster.validate); the importing process meanwhile
writes the chunks already validated to the database. The workers parse the file's rows
too, so they are confined like the file's reader (app.core.sandbox): capped memory and CPU
time, and they die with the importing process, even when it is killed outright."""
from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import date

from app.core import sandbox
from app.core.upload_guard import child_failure_message, SheetFileError

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
    validate = functools.partial(_validate_chunk, **args)
    if source.csv is not None and ctx.workers > 0:
        blocks = source.blocks()  # whole rows, cut here, parsed by the workers
        first_block = next(blocks, None)
        if first_block is None:
            return
        if first_block.lines >= min(PARALLEL_MIN_ROWS, ctx.chunk_rows):
            work = functools.partial(_parse_and_validate, source.csv, **args)
            yield from _in_workers(itertools.chain([first_block], blocks), work, ctx)
            return
        blocks.close()
        items, work, size = source.chunks(), validate, None  # a small file: parsed by its reader
    else:
        items, work, size = source.chunks(), validate, (lambda chunk: len(chunk.frame))  # noqa: E731
    first = next(items, None)
    if first is None:
        return
    items = itertools.chain([first], items)
    if ctx.workers <= 0 or size is None or size(first) < min(PARALLEL_MIN_ROWS, ctx.chunk_rows):
        for item in items:
            done = work(item)
            if done is not None:
                yield done
        return
    yield from _in_workers(items, work, ctx)


def _in_workers(items: Iterator, work, ctx: ImportContext) -> Iterator[tuple[str, int, ValidatedChunk]]:
    # fork: the workers start at once and import nothing (spawn would re-run the caller's
    # main script); they only compute, never touch the parent's database connections, and
    # leave through os._exit, so nothing inherited is closed twice. Each is confined as it
    # starts: it cannot outgrow its memory or CPU time, nor outlive this process.
    limits = ctx.read_limits
    with _worker_failures(limits), ProcessPoolExecutor(
        max_workers=ctx.workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=sandbox.confine,
        initargs=(limits.child, os.getpid()),
    ) as pool:
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


@contextmanager
def _worker_failures(limits) -> Iterator[None]:
    """A worker that ran out of memory or CPU time, or died, fails the file with one message."""
    try:
        yield
    except MemoryError as exc:
        raise SheetFileError(child_failure_message(sandbox.ChildFailed("memory"), limits)) from exc
    except BrokenProcessPool as exc:
        raise SheetFileError(child_failure_message(sandbox.ChildFailed("crash"), limits)) from exc


def _validate_chunk(chunk: Chunk, **args) -> tuple[str, int, ValidatedChunk] | None:
    if chunk.frame.empty:  # only blank or footer lines
        return None
    return chunk.sheet, len(chunk.frame), validate_frame(chunk.frame, chunk.row_numbers, chunk.sheet, **args)


def _parse_and_validate(layout: CsvLayout, block: CsvBlock, **args) -> tuple[str, int, ValidatedChunk] | None:
    return _validate_chunk(layout.parse(block), **args)

