"""Pieces every benchmark script shares: memory readings, child-process hygiene, and the
machine description printed with the figures."""
from __future__ import annotations

import os
import platform
import resource
import signal
import time


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def die_with_parent() -> None:
    """In the child before exec: be killed if the orchestrator dies (Linux prctl)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that drops the database(s)


def machine_info(pg_admin, pg_settings: tuple[str, ...]) -> list[str]:
    import sqlite3

    import numpy
    import pandas
    import sqlalchemy

    cpu = mem = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        kb = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")))
        mem = f"{kb / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration):
        pass
    lines = [
        f"machine : {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, {mem}",
        f"os      : {platform.platform()}",
        f"python  : {platform.python_version()}  numpy {numpy.__version__}  pandas {pandas.__version__}"
        f"  SQLAlchemy {sqlalchemy.__version__}",
        f"sqlite  : {sqlite3.sqlite_version} (WAL, synchronous=NORMAL, as the app configures it)",
    ]
    if pg_admin is not None:
        from sqlalchemy import text

        with pg_admin.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar()
            settings = {k: conn.execute(text(f"SHOW {k}")).scalar() for k in pg_settings}
        lines.append(f"postgres: {version} (" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")")
    return lines


def print_table(title: str, head: list[str], rows: list[list[str]], right: set[int]) -> None:
    """A plain-text table: columns in ``right`` right-aligned."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(title)
    print(line(head))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))


BENCH_HASH_KEY = "bench-id-hash-key-0123456789abcdef"


def bench_app(url: str, work, **overrides):
    """The application on the benchmark's database, its files under ``work``."""
    from pathlib import Path

    from app import create_app

    work = Path(work)
    config = {
        "APP_ENV": "development",
        "TESTING": False,
        "SQLALCHEMY_DATABASE_URI": url,
        "ID_HASH_KEY": BENCH_HASH_KEY,
        "IMPORT_REPORTS_DIR": str(work / "reports"),
        "UPLOAD_DIR": str(work / "uploads"),
        "SAMPLE_LISTS_DIR": str(work / "sample_lists"),
        "SCHEDULER_IN_WEB": False,
    }
    config.update(overrides)
    return create_app(config)


def time_statements(engine, on_statement) -> None:
    """Call ``on_statement(statement, seconds, executemany)`` after every cursor.execute."""
    import time

    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        on_statement(statement, time.perf_counter() - conn.info["bench_t0"].pop(), executemany)


def git_output(root, *cmd: str) -> str:
    """``git <cmd>`` in ``root``; empty when git or the repository is not there."""
    import subprocess

    try:
        return subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


class Steps:
    """Named set-up steps, each timed and printed as it finishes."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self.t0 = time.perf_counter()

    def run(self, label: str, fn, *a, **k):
        print(f"    {label} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        out = fn(*a, **k)
        sec = time.perf_counter() - t0
        self.times.append((label, sec))
        print(f"{sec:.1f} s", flush=True)
        return out

    @property
    def total(self) -> float:
        return time.perf_counter() - self.t0
