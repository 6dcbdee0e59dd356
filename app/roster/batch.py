"""What an import is asked to do and what it reports: the options, the context it runs in,
the result and the error a failed import raises. Shared by the importer, its pipeline and
staging, and by the views and commands that start an import."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path


from app.core.populations import Vocabulary
from app.core.sheets import Rejection
from app.core.upload_guard import ReadLimits


@dataclass
class ImportOptions:
    county: str | None = None
    create_missing: bool = False
    full: bool = False
    dry_run: bool = False


@dataclass
class ImportContext:
    """Everything an import needs from the application, passed explicitly."""

    hash_key: bytes
    vocabulary: Vocabulary
    reports_dir: Path
    actor: str
    user_id: int | None = None
    today: date | None = None
    chunk_rows: int = 100_000
    workers: int = 2  # processes validating chunks of large files; 0 validates inline
    read_limits: ReadLimits = field(default_factory=ReadLimits)  # the file's size and its readers' memory and time


@dataclass
class ImportResult:
    batch_id: int
    status: str
    read: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deactivated: int = 0
    institutions_created: int = 0
    teams_created: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    error_report: Path | None = None
    message: str | None = None

    def summary_line(self) -> str:
        return (
            f"read={self.read} imported={self.imported} updated={self.updated} "
            f"unchanged={self.unchanged} rejected={self.rejected}"
        )


class ImportFailed(Exception):
    """The import did not run to the end; nothing was changed. Message in Chinese."""

    def __init__(self, message: str, batch_id: int | None = None):
        super().__init__(message)
        self.batch_id = batch_id


class AlreadyConfirmed(ImportFailed):
    """The preview was confirmed already (a double click, a second tab): nothing was done and
    no failed batch is recorded. ``batch_id`` is the batch that applied it."""

    def __init__(self, batch_id: int):
        super().__init__("该批次已确认导入。", batch_id)


class ImportBusy(ImportFailed):
    """The database stayed busy with another write (SQLite's lock) longer than the wait allows:
    nothing was done and no failed batch is recorded."""

    def __init__(self):
        super().__init__("数据库正忙（可能有另一项导入正在进行），本次没有导入任何数据。请稍后刷新页面查看结果，或再试一次。")
