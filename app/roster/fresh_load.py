"""A first import into an empty residents table: every accepted row is a new resident,
written straight in as its chunk is validated (see FreshLoad)."""
from __future__ import annotations

import itertools
from array import array

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.bulk import bulk_load
from app.core.clock import utcnow
from app.models import ImportBatch, Resident
from app.roster.staging import (
    BULK_KEYS_MIN_NEW,
    RESIDENT_FIELDS,
    DuplicateWatch,
    SetAside,
    advance_id_sequence,
    bulk_keys,
    new_id_base,
    repeated_id,
    resident_values,
)
from app.core.sheets import Rejection


class FreshLoad:
    """When the residents table is empty as the import starts (a city's or county's first
    roster, the biggest import it will ever have), there is nothing to match or update: every
    accepted row is a new resident, written straight into ``residents`` and
    ``resident_labels`` as its chunk is validated, instead of staged and copied at the end.
    The database work then overlaps the reading and validating of the next chunks.

    The table stays empty for everyone else until the import commits: PostgreSQL locks it
    against other writers from the check on (SQLite: the import already holds the write lock,
    its batch row being written first). A repeated ID is rejected like on the staged path: within
    a chunk by pandas, across chunks by ``DuplicateWatch`` candidates checked exactly against
    the rows already written, read back by their ids (a row's id tells its number in the load:
    id = base + 1 + number), so no lookup needs the hash index. For a big file the residents'
    and labels' foreign keys (PostgreSQL), the team index and the unique hash index are set
    aside for the load and put back at the end (see SetAside): the table was empty, so that
    checks and indexes only this import's rows, and building the hash index once (a sort)
    costs a fraction of 1.5 million inserts at random places in it. Were a repeat ever let
    through, building the unique index would fail the import."""

    def __init__(self, session: Session, batch: ImportBatch, base: int) -> None:
        self.batch = batch
        self.base = base
        self.aside: SetAside | None = None  # decided on the first chunk
        self.count = 0
        self.watch = DuplicateWatch()
        self.sheets: list[str] = []
        self.sheet_of: array = array("H")  # per loaded row: index into self.sheets
        self.row_of: array = array("L")  # per loaded row: its row number in the file
        self.sqlite = session.connection().dialect.name == "sqlite"
        now = utcnow()
        # the timestamp as SQLAlchemy stores it on SQLite (ISO text); PostgreSQL takes the value
        self.now = now.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else now

    @classmethod
    def start(cls, session: Session, batch: ImportBatch) -> FreshLoad | None:
        any_resident = select(Resident.__table__.c.id).limit(1)
        if session.scalar(any_resident) is not None:
            return None
        base = new_id_base(session)
        if session.scalar(any_resident) is not None:
            return None  # another import got in before the lock
        return cls(session, batch, base)

    def insert(self, session: Session, rows: pd.DataFrame, sheet: str, label_ids: dict[str, int],
               rejections: list[Rejection]) -> int:
        """Write the chunk's accepted rows; returns how many were rejected as repeats (of a row
        kept in an earlier chunk, or earlier in this one)."""
        hashes = rows["id_hash"]
        repeat = hashes.duplicated(keep="first").to_numpy()
        candidates = self.watch.earlier(hashes[~repeat])
        earlier = self._written(session, candidates) if candidates else {}
        again = hashes.isin(list(earlier)).to_numpy() if earlier else np.zeros(len(rows), dtype=bool)
        dropped = repeat | again
        if not dropped.any():
            rejected = 0
        else:
            first_row = dict(zip(hashes[~repeat], rows["row_no"][~repeat]))
            for row_no, masked, id_hash in zip(rows["row_no"][dropped], rows["id_masked"][dropped], hashes[dropped]):
                if id_hash in earlier:
                    number = earlier[id_hash]
                    kept = (self.sheets[self.sheet_of[number]], self.row_of[number])
                else:
                    kept = (sheet, int(first_row[id_hash]))
                rejections.append(repeated_id(sheet, row_no, masked, *kept))
            rejected = int(dropped.sum())
            rows = rows[~dropped]
        if not len(rows):
            return rejected
        if self.aside is None:
            # a big file (its first chunk says so): the keys (PostgreSQL) are checked once at
            # the end and the indexes built once (a sort) instead of row by row. A small one
            # keeps them all: dropping them takes locks that would make the pages reading
            # these tables wait.
            big = len(rows) >= BULK_KEYS_MIN_NEW // 2
            self.aside = SetAside.take(session, bulk_keys(), _rebuilt_indexes()) if big else SetAside()
        first_id = self.base + self.count + 1
        ids = range(first_id, first_id + len(rows))
        if not self.sheets or self.sheets[-1] != sheet:
            self.sheets.append(sheet)
        self.sheet_of.extend([len(self.sheets) - 1] * len(rows))
        self.row_of.extend(rows["row_no"].astype(int).tolist())
        self.watch.add(rows["id_hash"], range(self.count, self.count + len(rows)))
        self.count += len(rows)
        batch_id, now = self.batch.id, self.now
        yes, no = (1, 0) if self.sqlite else (True, False)
        data = zip(ids, *resident_values(rows), itertools.repeat(yes), itertools.repeat(no),
                   itertools.repeat(batch_id), itertools.repeat(batch_id), itertools.repeat(now), itertools.repeat(now))
        bulk_load(session, "residents", FRESH_COLUMNS, data)
        pairs = ((i, label_ids[code]) for i, cell in zip(ids, rows["label_codes"]) for code in cell)
        bulk_load(session, "resident_labels", ["resident_id", "label_id"], pairs)
        return rejected

    def _written(self, session: Session, candidates: dict[str, list[int]]) -> dict[str, int]:
        """Of the candidates, those written already: each with its row's number in the load."""
        residents = Resident.__table__
        ids = sorted({self.base + 1 + number for numbers in candidates.values() for number in numbers})
        stored: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            stored.update(session.execute(select(residents.c.id, residents.c.id_hash)
                                          .where(residents.c.id.in_(part))).all())
        found: dict[str, int] = {}
        for id_hash, numbers in candidates.items():
            for number in numbers:
                if stored[self.base + 1 + number] == id_hash:
                    found[id_hash] = number
                    break
        return found

    def finish(self, session: Session) -> int:
        if self.aside is not None:
            self.aside.put_back(session)
        advance_id_sequence(session)
        return self.count


def _rebuilt_indexes() -> list:
    return sorted((index for index in Resident.__table__.indexes
                   if index.name in ("ix_residents_team_id_active", "uq_residents_id_hash")), key=lambda i: i.name)


FRESH_COLUMNS = ["id", *RESIDENT_FIELDS, "active", "do_not_call", "first_seen_batch_id", "last_seen_batch_id",
                 "created_at", "updated_at"]
