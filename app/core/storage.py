"""Files the product keeps on disk: readable by its own system user only, and not kept longer
than needed.

Every process sets the umask 077 at start-up (``create_app``), so whatever it creates —
uploads, error reports, call lists, exports, the SQLite database and its -wal/-shm files —
has mode 0600 (folders 0700). The helpers here say so explicitly where personal data is
written, in case a file is created before the umask applies or by a library that chooses
its own mode.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

PRIVATE_UMASK = 0o077
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def restrict_umask() -> None:
    """Files and folders created from here on are private to this system user."""
    os.umask(PRIVATE_UMASK)


def make_private(path: str | Path) -> None:
    os.chmod(path, PRIVATE_FILE)


def save_private(stream: BinaryIO, path: str | Path) -> Path:
    """Copy an uploaded stream to a new file of mode 0600 (an existing file is refused)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def private_sqlite_file(database: str | Path) -> None:
    """Create the SQLite database file with mode 0600 before SQLite does (an empty file is an
    empty database), and make an existing one and its -wal/-shm/-journal files 0600. SQLite
    gives the files it adds later the database file's own mode."""
    database = Path(database)
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        pass
    except OSError:
        return  # a folder it may not write to: SQLite itself will say whether it can open the file
    for suffix in SQLITE_COMPANIONS:
        companion = database.with_name(database.name + suffix)
        try:
            make_private(companion)
        except OSError:
            pass  # absent, not this user's file, or on a read-only file system


def remove_older_than(folder: str | Path, now: datetime, hours: float) -> list[Path]:
    """Delete the files under ``folder`` last written more than ``hours`` before ``now``
    (naive UTC), then the old folders that leaves empty (never ``folder`` itself). Symbolic links
    are neither followed nor deleted. Returns the deleted files."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now_utc = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    cutoff = (now_utc - timedelta(hours=hours)).timestamp()
    removed: list[Path] = []
    for root, _dirs, files in os.walk(folder, topdown=False):
        try:
            folder_written = Path(root).lstat().st_mtime  # before its own files go
        except FileNotFoundError:
            continue
        for name in files:
            path = Path(root) / name
            try:
                info = path.lstat()
                if path.is_symlink() or not path.is_file() or info.st_mtime >= cutoff:
                    continue
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                continue  # another process removed it first
        if Path(root) != folder:
            try:
                if folder_written < cutoff:  # not one a request has just made
                    Path(root).rmdir()
            except OSError:
                pass  # not empty (or gone already)
    return removed
