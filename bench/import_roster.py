"""Roster import benchmark: a city-scale roster (Yueyang, 1.5 million contracted residents)
as CSV and a 200,000-row .xlsx, imported into SQLite and PostgreSQL, each figure printed
beside the same run's *floor*: a bare read of the same file (``pandas.read_csv`` /
calamine) plus a bulk insert of the same rows into a plain table with no validation, by the
same mechanism the importer uses (``app.core.bulk.bulk_load``: COPY on PostgreSQL,
``executemany`` on SQLite).

    .venv/bin/python bench/import_roster.py                       # full size, both databases
    .venv/bin/python bench/import_roster.py --rows 50000 --xlsx-rows 10000 --db sqlite

Targets (2-core machine): 1.5M-row CSV <= 30 s into SQLite and into PostgreSQL, 200k-row
xlsx <= 10 s, peak memory <= 2 GB. This is not a timed test: it prints figures.

Every measured phase runs in a child process of its own (this script re-invoked with
``--phase``), so each phase's peak RSS (``ru_maxrss`` of that child) is its own and phases
do not warm or pollute each other's heap. Data generation is timed and reported separately
and is not part of any measured import. Each import also prints a step breakdown (reading,
validate_frame and its parts, staging, each merge SQL statement, ...) collected by wrapping
the importer's module-level functions with timers from outside (app code is not modified;
the overhead is a few timer calls per 100,000-row chunk).

A single phase can be run by hand, e.g. under py-spy or cProfile:

    .venv/bin/python bench/import_roster.py --phase import --url sqlite:////tmp/x.db \\
        --file bench/output/roster-1500000.csv --setup --out /tmp/x.json [--cprofile /tmp/x.prof]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path

# BENCH_ROOT: phase children run from the run folder's copy of this script
ROOT = Path(os.environ.get("BENCH_ROOT") or Path(__file__).resolve().parent.parent)
# `python bench/import_roster.py` puts bench/ first on the path, not the project root. Phase
# children import `app` from the run's snapshot of it (BENCH_SRC), so that every phase of a
# run measures the same code even while app/ is being edited.
SRC = Path(os.environ.get("BENCH_SRC") or ROOT)
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

# run as `python bench/<name>.py`: this folder is on sys.path
from _shared import current_rss_mb, die_with_parent, exit_on_signal, machine_info, peak_rss_mb, print_table, bench_app, time_statements, git_output  # noqa: E402

OUTPUT = ROOT / "bench" / "output"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_ROWS = 1_500_000
DEFAULT_XLSX_ROWS = 200_000
TARGET_CSV_S = 30.0  # for 1.5M rows
TARGET_XLSX_S = 10.0  # for 200k rows
TARGET_RSS_MB = 2048.0
READ_LABEL = "read (reader: chunks, or for a CSV raw blocks that the workers parse)"


# ===========================================================================
# Child phases
# ===========================================================================


class TreeMemory:
    """Peak memory of this process and all its descendants (worker processes the importer
    may fork), sampled every 0.1 s. The cheap RSS sum (/proc/<pid>/statm) is read at every
    sample; the PSS sum (proportional set size: pages a forked worker shares with its parent
    counted once) only when the RSS sum reaches a new high by 32 MB or more, because
    /proc/<pid>/smaps_rollup walks the page tables (~25 ms for a 1.5 GB process) and would
    otherwise take CPU from the measured import. ru_maxrss alone would miss the workers."""

    PSS_STEP_KB = 32 * 1024

    def __init__(self, interval: float = 0.1) -> None:
        import threading

        self.interval = interval
        self.peak_mb = 0.0  # PSS sum, read at the RSS highs (may lag the true peak by < 32 MB)
        self.peak_rss_sum_mb = 0.0  # upper bound: shared pages counted once per process
        self.max_processes = 1
        self._pss_at_kb = -self.PSS_STEP_KB
        self._page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    @staticmethod
    def _tree() -> list[int]:
        found, pids = [], [os.getpid()]
        while pids:
            pid = pids.pop()
            if pid in found:
                continue
            found.append(pid)
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as fh:
                        pids.extend(int(x) for x in fh.read().split())
            except (OSError, ValueError):
                continue  # a worker that just exited
        return found

    def sample(self) -> None:
        pids = self._tree()
        rss_kb = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/statm") as fh:
                    rss_kb += int(fh.read().split()[1]) * self._page_kb
            except (OSError, ValueError, IndexError):
                continue
        self.peak_rss_sum_mb = max(self.peak_rss_sum_mb, rss_kb / 1024)
        self.max_processes = max(self.max_processes, len(pids))
        if rss_kb < self._pss_at_kb + self.PSS_STEP_KB:
            return
        self._pss_at_kb = rss_kb
        pss_kb = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/smaps_rollup") as fh:
                    pss_kb += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
            except (OSError, StopIteration, ValueError):
                continue
        self.peak_mb = max(self.peak_mb, pss_kb / 1024)


def phase_memory(out: dict, tree: TreeMemory) -> None:
    """peak_rss_mb: the larger of this process's ru_maxrss and the sampled process-tree PSS."""
    own = peak_rss_mb()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    out["own_maxrss_mb"] = own
    out["children_maxrss_mb"] = children
    out["tree_pss_peak_mb"] = tree.peak_mb
    out["tree_rss_sum_peak_mb"] = tree.peak_rss_sum_mb
    out["processes"] = tree.max_processes
    out["peak_rss_mb"] = max(own, tree.peak_mb)


def _make_app(url: str):
    return bench_app(url, OUTPUT / "instance")


def _diagnostics(engine, args) -> list[str]:
    """Optional knobs for investigating, applied to connections opened from here on:
    --sqlite-pragmas (e.g. cache_size=-1048576) and, on PostgreSQL, --explain: auto_explain
    with ANALYZE and trigger times for every statement over 0.5 s, sent to this client as
    NOTICEs and collected into the returned list."""
    from sqlalchemy import event

    plans: list[str] = []
    pragmas = [p.strip() for p in (getattr(args, "sqlite_pragmas", None) or "").split(",") if p.strip()]
    explain = bool(getattr(args, "explain", False))
    if engine.dialect.name == "sqlite" and pragmas:
        engine.dispose()

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            for pragma in pragmas:
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

    if engine.dialect.name == "postgresql" and explain:
        engine.dispose()

        @event.listens_for(engine, "connect")
        def _auto_explain(dbapi_conn, _record):
            dbapi_conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
            with dbapi_conn.cursor() as cur:
                cur.execute("LOAD 'auto_explain'")
                for setting in ("log_min_duration = '500ms'", "log_analyze = on", "log_triggers = on",
                                "log_buffers = on", "log_level = notice"):
                    cur.execute(f"SET auto_explain.{setting}")
            dbapi_conn.commit()

    return plans


def phase_generate(args) -> dict:
    """The CSV (standard headers, messy values) and the xlsx (a contract-system export:
    title row, blank line, variant headers, text-formatted cells, a footer line)."""
    import xlsxwriter

    from app.demo.synth import MESSY_HEADERS, make_roster, make_units, messify

    out: dict = {}
    units = make_units(args.seed)
    csv_path, xlsx_path = Path(args.csv), Path(args.xlsx)

    t0 = time.perf_counter()
    frame = messify(make_roster(args.rows, seed=args.seed, units=units), seed=args.seed)
    out["csv_make_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame.to_csv(csv_path, index=False, encoding="utf-8")
    out["csv_write_s"] = time.perf_counter() - t0
    out["csv_rows"] = len(frame)
    out["csv_mb"] = csv_path.stat().st_size / 2**20
    out["csv_distinct_ids"] = int(frame["身份证号"].str.upper().nunique())
    del frame

    t0 = time.perf_counter()
    data = messify(make_roster(args.xlsx_rows, seed=args.seed + 1, units=units), seed=args.seed + 1)
    data = data.rename(columns=MESSY_HEADERS)
    values = data.astype(str).to_numpy().tolist()
    headers = list(data.columns)
    out["xlsx_distinct_ids"] = int(data["身份证号码"].str.upper().nunique())
    del data
    out["xlsx_make_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    workbook = xlsxwriter.Workbook(str(xlsx_path), {"constant_memory": True})
    sheet = workbook.add_worksheet("签约居民")
    text = workbook.add_format({"num_format": "@"})
    bold = workbook.add_format({"bold": True, "align": "center", "font_size": 14})
    sheet.merge_range(0, 0, 0, len(headers) - 1, "岳阳市家庭医生签约居民花名册（基准测试）", bold)
    sheet.write_row(2, 0, headers)
    write_string = sheet.write_string
    for r, row in enumerate(values, start=3):
        for c, value in enumerate(row):
            write_string(r, c, value, text)
    sheet.write_string(3 + len(values) + 1, 0, f"合计：{len(values)}人")
    workbook.close()
    out["xlsx_write_s"] = time.perf_counter() - t0
    out["xlsx_rows"] = len(values)
    out["xlsx_mb"] = xlsx_path.stat().st_size / 2**20
    return out


class StepTimer:
    """Times the importer's steps by wrapping module-level functions it calls by name."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[str] = []
        self.sql: list[tuple[str, str, float]] = []  # (enclosing step, statement, seconds)
        self.active = False  # only statements issued inside the measured call are recorded

    def add(self, label: str, seconds: float) -> None:
        self.totals[label] += seconds
        self.calls[label] += 1

    def wrap(self, module, name: str, label: str | None = None) -> None:
        original = getattr(module, name, None)
        if original is None:  # a step renamed or moved: say so rather than drop its line
            raise SystemExit(f"bench: {getattr(module, '__name__', module)}.{name} no longer exists; update StepTimer")
        label = label or name

        def wrapper(*a, **k):
            self.stack.append(label)
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                self.add(label, time.perf_counter() - t0)
                self.stack.pop()

        setattr(module, name, wrapper)

    def install(self, engine) -> None:

        import app.roster.fresh_load as fresh_load
        import app.roster.importer as importer
        import app.roster.validate as validate

        # The steps live in app.roster.{staging,units,pipeline,fresh_load} and app.core.spreadsheets,
        # but the import calls them by the names app.roster.importer imported: they are
        # wrapped there. Validation runs in worker processes for large files (validate_frame
        # is sent to them by reference and must stay unwrapped): it is timed by what the
        # importer waits for (validated_chunks, below).
        for name in (
            "file_sha256",
            "sync_labels",
            "OrgIndex",
            "create_stage",
            "stage_rows",
            "stage_labels",
            "stage_seen",
            "reject_duplicates",
            "merge",
            "drop_stage",
            "write_error_report",
        ):
            self.wrap(importer, name)
        # a first import into an empty residents table writes its rows as the chunks come
        self.wrap(fresh_load.FreshLoad, "start", "FreshLoad.start (check empty, drop keys)")
        self.wrap(fresh_load.FreshLoad, "insert", "FreshLoad.insert (rows + labels straight in)")
        self.wrap(fresh_load.FreshLoad, "finish", "FreshLoad.finish (keys back)")
        # parts of validate_frame: the helpers it calls by name (nested calls inside
        # app.roster.normalize go through that module's globals and are not double counted)
        for name in (
            "validate_ids",
            "hash_ids",
            "mask_ids",
            "squeeze",
            "clean_text",
            "normalize_phone_values",
            "parse_dates",
            "default_contract_end",
            "map_values",
        ):
            self.wrap(validate, name, f"validate_frame/{name}")

        original_open = importer.open_roster
        timer = self

        def open_roster(*a, **k):
            t0 = time.perf_counter()
            source = original_open(*a, **k)
            timer.add("open_roster (header)", time.perf_counter() - t0)

            def timed(inner):
                while True:
                    t0 = time.perf_counter()
                    try:
                        item = next(inner)
                    except StopIteration:
                        timer.add(READ_LABEL, time.perf_counter() - t0)
                        return
                    timer.add(READ_LABEL, time.perf_counter() - t0)
                    yield item

            # a CSV file's rows are pulled as raw blocks (parsed where they are validated)
            source._chunks = timed(source._chunks)
            if getattr(source, "_blocks", None) is not None:
                source._blocks = timed(source._blocks)
            return source

        importer.open_roster = open_roster

        # validation runs in forked worker processes for large files (validate_frame itself is
        # sent to them by reference and must stay unwrapped): time what the importer waits for
        original_validated = importer.validated_chunks

        # the reader's chunks are pulled from inside validated_chunks: that time is counted
        # as reading, not twice
        wait_label = "validate (waiting for workers, or inline; reading excluded)"

        def validated_chunks(*a, **k):
            inner = original_validated(*a, **k)
            while True:
                read_before = timer.totals[READ_LABEL]
                t0 = time.perf_counter()
                try:
                    item = next(inner)
                except StopIteration:
                    item = None
                waited = time.perf_counter() - t0 - (timer.totals[READ_LABEL] - read_before)
                timer.add(wait_label, waited)
                if item is None:
                    return
                yield item

        importer.validated_chunks = validated_chunks

        def record(statement, elapsed, _executemany):
            if timer.active and elapsed >= 0.005:
                step = self.stack[0] if self.stack else "-"
                timer.sql.append((step, statement, elapsed))

        time_statements(engine, record)


def sql_label(statement: str) -> str:
    s = " ".join(statement.split())
    up = s.upper()
    if up.startswith("CREATE INDEX"):
        return "CREATE INDEX " + s.split()[2]
    if up.startswith("INSERT INTO ROSTER_MATCH"):
        return "INSERT INTO roster_match: match + change detection"
    if "ROSTER_MATCH.CHANGED" in up and up.startswith("SELECT"):
        return "SELECT count/sum(changed) FROM roster_match"
    if up.startswith("UPDATE RESIDENTS SET LAST_SEEN_BATCH_ID"):
        return "UPDATE residents: stamp last_seen_batch_id"
    if up.startswith("UPDATE RESIDENTS"):
        return "UPDATE residents: changed rows"
    if up.startswith("INSERT INTO RESIDENTS"):
        return "INSERT INTO residents ... SELECT new rows"
    if up.startswith("DELETE FROM RESIDENT_LABELS"):
        return "DELETE FROM resident_labels: dropped labels"
    if up.startswith("INSERT INTO RESIDENT_LABELS"):
        return "INSERT INTO resident_labels ... SELECT new pairs"
    if "EXCEPT" in up:
        return "SELECT count(changed): field diff UNION label EXCEPTs"
    if up.startswith(("ANALYZE", "PRAGMA")):
        return s[:60]
    if up.startswith("SELECT COUNT(*)") and "JOIN RESIDENTS" in up:
        return "SELECT count(existing): stage JOIN residents"
    if up.startswith("SELECT COUNT(*)"):
        return "SELECT count(staged)"
    if "HAVING" in up:
        return "SELECT duplicates in stage (GROUP BY id_hash)"
    if up.startswith("DELETE FROM ROSTER_STAGE_LABELS"):
        return "DELETE duplicates from roster_stage_labels (IN 500)"
    if up.startswith("DELETE FROM ROSTER_STAGE"):
        return "DELETE duplicates from roster_stage (IN 500)"
    if up.startswith("DROP TABLE"):
        return "DROP TABLE " + s.split()[2]
    return s[:70]


def phase_import(args) -> dict:
    from sqlalchemy import func, select

    from app.demo.synth import YUEYANG_COUNTIES
    from app.extensions import db
    from app.models import County, Resident, resident_labels
    from app.roster.context import import_context
    from app.roster.importer import import_and_commit
    from app.roster.batch import ImportOptions

    app = _make_app(args.url)
    out: dict = {}
    with app.app_context():
        if args.setup:
            db.create_all()
            for name, region, _urban, _n in YUEYANG_COUNTIES:
                db.session.add(County(name=name, code=region))
            db.session.commit()
        plans = _diagnostics(db.engine, args)
        timer = StepTimer()
        timer.install(db.engine)
        ctx = import_context(app, actor="bench")
        path = Path(args.file)
        out["rss_before_mb"] = current_rss_mb()
        profiler = None
        if args.cprofile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        timer.active = True
        with TreeMemory() as tree:
            t0 = time.perf_counter()
            result = import_and_commit(db.session, path, ImportOptions(create_missing=True), ctx, path.name)
            seconds = time.perf_counter() - t0
        timer.active = False
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        phase_memory(out, tree)
        out["seconds"] = seconds
        out["counts"] = {
            "read": result.read,
            "imported": result.imported,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "rejected": result.rejected,
            "institutions_created": result.institutions_created,
            "teams_created": result.teams_created,
        }
        reasons: dict[str, int] = defaultdict(int)
        for r in result.rejections:
            reasons[re.sub(r"第\d+行", "第N行", re.sub(r"“[^”]*”", "“…”", r.reason))] += 1
        out["rejection_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
        out["rows"] = result.read
        out["residents_in_db"] = db.session.scalar(select(func.count()).select_from(Resident))
        out["label_pairs_in_db"] = db.session.scalar(select(func.count()).select_from(resident_labels))
        out["steps"] = dict(timer.totals)
        out["step_calls"] = dict(timer.calls)
        grouped: dict[tuple[str, str], list[float]] = {}
        for step, stmt, sec in timer.sql:
            grouped.setdefault((step, sql_label(stmt)), []).append(sec)
        out["sql"] = [(step, label, sum(secs), len(secs)) for (step, label), secs in grouped.items() if sum(secs) >= 0.05]
        if plans:
            plan_file = Path(args.out).with_suffix(".plans.txt")
            plan_file.write_text("\n\n".join(plans), encoding="utf-8")
            out["plans"] = str(plan_file)
        db.session.remove()
        db.engine.dispose()
    return out


FLOOR_TABLE = "bench_floor_rows"


def _floor_table(session, ncols: int) -> list[str]:
    conn = session.connection()
    cols = [f"c{i}" for i in range(1, ncols + 1)]
    pk = "id BIGSERIAL PRIMARY KEY" if conn.dialect.name == "postgresql" else "id INTEGER PRIMARY KEY"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
    conn.exec_driver_sql(f"CREATE TABLE {FLOOR_TABLE} ({pk}, " + ", ".join(f"{c} TEXT" for c in cols) + ")")
    return cols


def phase_floor_csv(args) -> dict:
    """pandas.read_csv(dtype=str) of the same file in the importer's chunk size, each chunk
    bulk-loaded as it is into a plain table, one transaction, committed."""
    import pandas as pd

    from app.core.bulk import bulk_load
    from app.extensions import db

    app = _make_app(args.url)
    chunk_rows = app.config["IMPORT_CHUNK_ROWS"]
    with app.app_context():
        session = db.session
        _diagnostics(db.engine, args)
        header = pd.read_csv(args.file, dtype=str, nrows=0).columns
        cols = _floor_table(session, len(header))
        session.commit()
        out: dict = {"rss_before_mb": current_rss_mb()}
        read_s = insert_s = 0.0
        rows = 0
        t0 = time.perf_counter()
        reader = pd.read_csv(args.file, dtype=str, keep_default_na=False, chunksize=chunk_rows, engine="c")
        while True:
            t1 = time.perf_counter()
            frame = next(reader, None)
            read_s += time.perf_counter() - t1
            if frame is None:
                break
            t1 = time.perf_counter()
            bulk_load(session, FLOOR_TABLE, cols, zip(*(frame[c].tolist() for c in frame.columns)))
            insert_s += time.perf_counter() - t1
            rows += len(frame)
        t1 = time.perf_counter()
        session.commit()
        commit_s = time.perf_counter() - t1
        out["seconds"] = time.perf_counter() - t0
        out["peak_rss_mb"] = peak_rss_mb()
        out["rows"] = rows
        out["steps"] = {"read (pandas.read_csv)": read_s, "bulk insert (bulk_load)": insert_s, "commit": commit_s}
        out["rows_in_db"] = session.execute(db.text(f"SELECT count(*) FROM {FLOOR_TABLE}")).scalar()
        db.session.remove()
        db.engine.dispose()
    return out


def phase_floor_xlsx(args) -> dict:
    """python_calamine read of the same workbook (the whole sheet, as the importer reads it),
    data rows bulk-loaded as they are into a plain table, one transaction, committed."""
    import python_calamine

    from app.core.bulk import bulk_load
    from app.extensions import db

    app = _make_app(args.url)
    with app.app_context():
        session = db.session
        out: dict = {"rss_before_mb": current_rss_mb()}
        _diagnostics(db.engine, args)
        t0 = time.perf_counter()
        workbook = python_calamine.CalamineWorkbook.from_path(args.file)
        sheet = workbook.get_sheet_by_index(0)
        rows = sheet.to_python(skip_empty_area=False)
        read_s = time.perf_counter() - t0
        header_at = next(i for i, r in enumerate(rows) if r and r[0] == "县区")
        width = len(rows[header_at])
        data = [r for r in rows[header_at + 1 :] if len(r) > 1 and r[1] != ""]
        t1 = time.perf_counter()
        cols = _floor_table(session, width)
        bulk_load(session, FLOOR_TABLE, cols, data)
        insert_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        session.commit()
        commit_s = time.perf_counter() - t1
        out["seconds"] = time.perf_counter() - t0
        out["peak_rss_mb"] = peak_rss_mb()
        out["rows"] = len(data)
        out["steps"] = {"read (calamine to_python)": read_s, "bulk insert (bulk_load)": insert_s, "commit": commit_s}
        out["rows_in_db"] = session.execute(db.text(f"SELECT count(*) FROM {FLOOR_TABLE}")).scalar()
        db.session.remove()
        db.engine.dispose()
    return out


PLAN_KEYS = ("csv-import", "csv-reimport", "xlsx-import", "csv-floor", "xlsx-floor")
PHASES = {"generate": phase_generate, "import": phase_import, "floor-csv": phase_floor_csv, "floor-xlsx": phase_floor_xlsx}


def run_phase_in_child(args) -> None:
    result = PHASES[args.phase](args)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    result["phase"] = args.phase
    result["app_package"] = str(Path(sys.modules["app"].__file__).parent) if "app" in sys.modules else ""
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, default=str), encoding="utf-8")


# ===========================================================================
# Parent: orchestration and the report
# ===========================================================================


class PhaseFailed(RuntimeError):
    pass


def spawn(phase: str, log_dir: Path, tag: str, src: Path | None = None, **kwargs) -> dict:
    out = log_dir / f"{tag}.json"
    log = log_dir / f"{tag}.log"
    script = log_dir / "import_roster.py"  # this script as it was at start (see orchestrate)
    if not script.exists():
        script = Path(__file__).resolve()
    cmd = [sys.executable, str(script), "--phase", phase, "--out", str(out)]
    for key, value in kwargs.items():
        if value is True:
            cmd.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False):
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    with log.open("w") as fh:
        env = dict(os.environ, BENCH_SRC=str(src or ROOT), BENCH_ROOT=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env, preexec_fn=die_with_parent)
    if proc.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise PhaseFailed(f"phase {tag} failed (exit {proc.returncode}); log {log}:\n" + "\n".join(tail))
    return json.loads(out.read_text(encoding="utf-8"))


def snapshot_code(run_dir: Path, which: str) -> tuple[Path, str]:
    """Copy app/ (the working tree, or HEAD's committed version) into the run folder; return
    the folder to import from and a description of the revision measured."""
    import hashlib

    src = run_dir / "src"
    src.mkdir()

    def git(*cmd: str) -> str:
        return git_output(ROOT, *cmd)

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    if which == "head":
        archive = subprocess.run(["git", "archive", "HEAD", "app"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        described = f"HEAD {head} (committed app/ only; uncommitted edits not measured)"
    else:
        shutil.copytree(ROOT / "app", src / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        dirty = [line[3:] for line in git("status", "--porcelain", "--", "app").splitlines()]
        described = f"working tree at start, HEAD {head}"
        if dirty:
            digest = hashlib.sha256()
            for path in sorted((src / "app").rglob("*.py")):
                digest.update(path.read_bytes())
            described += f" + uncommitted changes in {', '.join(dirty)} (snapshot sha256 {digest.hexdigest()[:12]})"
    return src, described


def fmt_rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="CSV roster rows (default 1,500,000)")
    parser.add_argument("--xlsx-rows", type=int, default=DEFAULT_XLSX_ROWS, help="xlsx roster rows (default 200,000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                        help="server to create a fresh survey_bench_* database on (dropped at the end)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--code", choices=("worktree", "head", "live"), default="worktree",
                        help="code to measure: a snapshot of app/ taken at start (default), HEAD's committed app/, "
                             "or the live tree (phases see edits made during the run)")
    parser.add_argument("--keep-files", action="store_true", help="keep the generated roster files and SQLite databases")
    parser.add_argument("--reuse-files", action="store_true", help="reuse roster files of the same size from an earlier --keep-files run")
    parser.add_argument("--phases", default=",".join(PLAN_KEYS),
                        help="comma-separated subset of: " + ", ".join(PLAN_KEYS) + " (csv-reimport needs csv-import)")
    parser.add_argument("--cprofile", action="store_true", help="profile the fresh CSV imports with cProfile (inflates their time)")
    parser.add_argument("--explain", action="store_true",
                        help="PostgreSQL: auto_explain (ANALYZE, trigger times) of import statements over 0.5 s into the run folder (inflates times)")
    parser.add_argument("--sqlite-pragmas", help="extra PRAGMAs for every SQLite connection, e.g. cache_size=-1048576,temp_store=MEMORY (to try fixes)")
    # child mode
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--xlsx", help=argparse.SUPPRESS)
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cprofile-out", dest="cprofile_path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:
        if args.phase == "import":
            args.cprofile = args.cprofile_path
        run_phase_in_child(args)
        return 0
    return orchestrate(args)


def orchestrate(args) -> int:
    from sqlalchemy import create_engine, make_url, text

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, exit_on_signal)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    run_dir = OUTPUT / f"run-{run_id}"
    run_dir.mkdir()
    shutil.copy2(Path(__file__).resolve(), run_dir / "import_roster.py")  # children run this copy
    shutil.copy2(Path(__file__).resolve().parent / "_shared.py", run_dir / "_shared.py")  # ... and its helpers
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    wanted = {p.strip() for p in args.phases.split(",") if p.strip()}
    if wanted - set(PLAN_KEYS) or ("csv-reimport" in wanted and "csv-import" not in wanted):
        print(f"--phases: choose from {', '.join(PLAN_KEYS)}; csv-reimport needs csv-import")
        return 2

    pg_admin = None
    if "postgresql" in kinds:
        try:
            pg_admin = create_engine(make_url(args.pg_url), isolation_level="AUTOCOMMIT")
            with pg_admin.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - report and go on with SQLite
            print(f"PostgreSQL at {args.pg_url} is not reachable ({type(exc).__name__}: {exc}); skipping it.")
            kinds.remove("postgresql")
            pg_admin = None
        if not kinds:
            return 1

    print("Roster import benchmark", run_id)
    for line in machine_info(pg_admin, ("shared_buffers", "work_mem", "maintenance_work_mem", "synchronous_commit", "max_wal_size")):
        print("  " + line)
    load0 = os.getloadavg()
    print(f"  load    : {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} (1/5/15 min) at start; other work on this machine shares its cores")
    src = None
    if args.code != "live":
        src, described = snapshot_code(run_dir, args.code)
    else:
        described = "live tree (not snapshotted: edits during the run are picked up by later phases)"
    print(f"  code    : {described}")
    print(f"  logs    : {run_dir}")
    knobs = [k for k, on in (("--explain (times inflated)", args.explain), ("--cprofile (times inflated)", args.cprofile),
                             (f"--sqlite-pragmas {args.sqlite_pragmas}", args.sqlite_pragmas)) if on]
    if knobs:
        print("  knobs   : " + "; ".join(knobs))
    print()

    csv_path = OUTPUT / f"roster-{args.rows}-s{args.seed}.csv"
    xlsx_path = OUTPUT / f"roster-{args.xlsx_rows}-s{args.seed}.xlsx"
    generated = not (args.reuse_files and csv_path.exists() and xlsx_path.exists())
    if generated:
        print(f"Generating {args.rows:,} CSV rows and {args.xlsx_rows:,} xlsx rows (make_roster + messify) ...", flush=True)
        gen = spawn("generate", run_dir, "generate", src=src, csv=csv_path, xlsx=xlsx_path, rows=args.rows, xlsx_rows=args.xlsx_rows, seed=args.seed)
        print(
            f"  CSV : {gen['csv_rows']:,} rows, {gen['csv_mb']:.0f} MB, {gen['csv_distinct_ids']:,} distinct IDs; "
            f"make {gen['csv_make_s']:.1f} s + to_csv {gen['csv_write_s']:.1f} s"
        )
        print(
            f"  xlsx: {gen['xlsx_rows']:,} rows, {gen['xlsx_mb']:.0f} MB, {gen['xlsx_distinct_ids']:,} distinct IDs; "
            f"make {gen['xlsx_make_s']:.1f} s + xlsxwriter(constant_memory) {gen['xlsx_write_s']:.1f} s; "
            f"generator peak RSS {gen['peak_rss_mb']:.0f} MB  (not part of any measured figure)"
        )
    else:
        print(f"Reusing {csv_path.name} and {xlsx_path.name}")
    print()

    created_pg: list[str] = []
    sqlite_files: list[Path] = []

    def fresh_db(kind: str, label: str) -> str:
        if kind == "sqlite":
            path = run_dir / f"{label}.db"
            sqlite_files.append(path)
            return f"sqlite:///{path}"
        name = f"survey_bench_{uuid.uuid4().hex[:10]}"
        with pg_admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created_pg.append(name)
        return make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)

    results: list[dict] = []
    failures: list[str] = []
    try:
        for kind in kinds:
            plan = [
                ("csv-import", "CSV import (fresh DB)", "import", "csv", "A", True),
                ("csv-reimport", "CSV re-import (all unchanged)", "import", "csv", "A", False),
                ("xlsx-import", "xlsx import (fresh DB)", "import", "xlsx", "B", True),
                ("csv-floor", "floor: read_csv + bulk_load", "floor-csv", "csv", "C", False),
                ("xlsx-floor", "floor: calamine + bulk_load", "floor-xlsx", "xlsx", "C", False),
            ]
            urls: dict[str, str] = {}
            wanted = {p.strip() for p in args.phases.split(",") if p.strip()}
            for key, title, phase, source, dbkey, setup in plan:
                if key not in wanted:
                    continue
                if dbkey not in urls:
                    urls[dbkey] = fresh_db(kind, f"{kind}-{dbkey}")
                file = csv_path if source == "csv" else xlsx_path
                tag = f"{kind}-{key}"
                print(f"[{kind}] {title} ...", end=" ", flush=True)
                extra = {"explain": args.explain, "sqlite_pragmas": args.sqlite_pragmas}
                if args.cprofile and key == "csv-import":
                    extra["cprofile_out"] = run_dir / f"{tag}.prof"
                try:
                    res = spawn(phase, run_dir, tag, src=src, url=urls[dbkey], file=file, setup=setup, **extra)
                except PhaseFailed as exc:
                    print("FAILED")
                    failures.append(str(exc))
                    continue
                res.update(kind=kind, key=key, title=title, source=source, profiled="cprofile_out" in extra)
                results.append(res)
                print(f"{res['seconds']:.1f} s, {fmt_rate(res['rows'], res['seconds'])} rows/s, peak {res['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        for name in created_pg:
            try:
                with pg_admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # noqa: BLE001
                print(f"could not drop database {name}: {exc}")
        if pg_admin is not None:
            pg_admin.dispose()
        if not args.keep_files:
            for path in sqlite_files:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            if generated:
                csv_path.unlink(missing_ok=True)
                xlsx_path.unlink(missing_ok=True)
            shutil.rmtree(OUTPUT / "instance", ignore_errors=True)

    load1 = os.getloadavg()
    print()
    report(results, args)
    print(f"\nload average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if failures:
        print("\nFAILED PHASES:")
        for f in failures:
            print(f)
    return 1 if failures else 0


def report(results: list[dict], args) -> None:
    by = {(r["kind"], r["key"]): r for r in results}
    csv_scale = args.rows / DEFAULT_ROWS
    xlsx_scale = args.xlsx_rows / DEFAULT_XLSX_ROWS
    scaled = " (target scaled to the row count)" if (csv_scale != 1 or xlsx_scale != 1) else ""

    head = ("phase", "db", "rows", "seconds", "rows/s", "floor s", "x floor", "peak RSS MB", "target", "result")
    table = []
    for r in results:
        floor = by.get((r["kind"], f"{r['source']}-floor"))
        is_floor = r["key"].endswith("floor")
        if is_floor:
            target, ok_time = f"<= {TARGET_RSS_MB:.0f} MB", True
        elif r["source"] == "csv":
            limit = TARGET_CSV_S * csv_scale
            target, ok_time = f"<= {limit:.1f} s, {TARGET_RSS_MB:.0f} MB", r["seconds"] <= limit
        else:
            limit = TARGET_XLSX_S * xlsx_scale
            target, ok_time = f"<= {limit:.1f} s, {TARGET_RSS_MB:.0f} MB", r["seconds"] <= limit
        ok_mem = r["peak_rss_mb"] <= TARGET_RSS_MB
        verdict = "PASS" if ok_time and ok_mem else "MISS (" + ", ".join(
            w for w, ok in (("time", ok_time), ("memory", ok_mem)) if not ok
        ) + ")"
        if r.get("profiled"):
            verdict += " [cProfile on]"
        if r.get("plans"):
            verdict += " [explain on]"
        table.append(
            (
                r["title"],
                r["kind"],
                f"{r['rows']:,}",
                f"{r['seconds']:.1f}",
                fmt_rate(r["rows"], r["seconds"]),
                "-" if is_floor or floor is None else f"{floor['seconds']:.1f}",
                "-" if is_floor or floor is None else f"{r['seconds'] / floor['seconds']:.1f}x",
                f"{r['peak_rss_mb']:.0f}",
                target,
                verdict,
            )
        )
    print_table(f"RESULTS: {args.rows:,}-row CSV, {args.xlsx_rows:,}-row xlsx{scaled}", head, table, {2, 3, 4, 5, 6, 7})
    print(
        "rows = rows read from the file; seconds = wall time of import_and_commit (commit included) or of the floor;"
        "\npeak RSS = the phase process's ru_maxrss, or the sampled PSS of it plus any worker processes if larger"
        "\n  (PostgreSQL server memory not included);"
        "\nfloor = same file, same database kind, same run: bare read + bulk_load into a plain TEXT table, no index but the PK."
    )

    for r in results:
        print()
        print(f"[{r['kind']}] {r['title']}: {r['seconds']:.2f} s")
        if "counts" in r:
            c = r["counts"]
            print(
                "  counts: " + " ".join(f"{k}={v:,}" for k, v in c.items())
                + f"; residents in DB {r['residents_in_db']:,}, label pairs {r['label_pairs_in_db']:,}"
            )
            if "tree_pss_peak_mb" in r:
                print(
                    f"  memory: own ru_maxrss {r['own_maxrss_mb']:.0f} MB, process-tree PSS peak {r['tree_pss_peak_mb']:.0f} MB"
                    f" (RSS sum {r.get('tree_rss_sum_peak_mb', 0):.0f} MB) over up to {r['processes']} process(es)"
                )
            if r.get("plans"):
                print(f"  auto_explain plans: {r['plans']}")
            if r.get("rejection_reasons"):
                print("  rejections: " + "; ".join(f"{k} x{v}" for k, v in r["rejection_reasons"].items()))
        steps = r.get("steps", {})
        top = {k: v for k, v in steps.items() if "/" not in k}
        for step, label, ssec, _n in r.get("sql", []):
            if step == "-":  # statements _run issues itself (CREATE INDEX on the stage)
                top[f"SQL {label}"] = top.get(f"SQL {label}", 0.0) + ssec
        accounted = sum(top.values())
        rows = sorted(top.items(), key=lambda kv: -kv[1])
        if "counts" in r:
            rows.append(("(rest: unit resolution loop, team_id map, ORM flush, commit)", r["seconds"] - accounted))
        for name, sec in rows:
            print(f"  {name:<58s} {sec:7.2f} s  {100 * sec / r['seconds']:5.1f}%")
            if name == "validate_frame":
                subs = sorted(((k, v) for k, v in steps.items() if k.startswith("validate_frame/")), key=lambda kv: -kv[1])
                for sub, ssec in subs:
                    print(f"    {sub.split('/', 1)[1]:<56s} {ssec:7.2f} s")
                print(f"    {'(rest of validate_frame: errors, labels, strftime, ...)':<56s} {sec - sum(v for _, v in subs):7.2f} s")
            for step, label, ssec, n in r.get("sql", []):
                if step == name and name in ("merge", "reject_duplicates", "drop_stage"):
                    times = f" ({n} statements)" if n > 1 else ""
                    print(f"    SQL {label + times:<52s} {ssec:7.2f} s")


if __name__ == "__main__":
    sys.exit(main())
