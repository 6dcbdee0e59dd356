"""A process killed (SIGKILL) in the middle of an import leaves the database as it was.

The child process runs the real import and kills itself right after the merge statements
have written residents inside the transaction, before the commit: no test hook lives in the
product code, the kill is real, and the database (SQLite or PostgreSQL) must roll it back.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sqlalchemy import func, inspect, select

from app.demo.synth import make_roster, make_units
from app.extensions import db
from app.models import ImportBatch, Resident
from app.roster.context import import_context
from app.roster.importer import import_and_commit
from app.roster.batch import ImportOptions
from tests.helpers import TODAY

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import date
    import app.roster.fresh_load as fresh_load
    import app.roster.importer as importer
    from app import create_app
    from app.extensions import db
    from app.roster.context import import_context

    real_merge = importer.merge

    def merge_then_die(session, *args, **kwargs):
        real_merge(session, *args, **kwargs)
        session.flush()
        sys.stdout.write("merged\\n"); sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    real_finish = fresh_load.FreshLoad.finish

    def finish_then_die(self, session):
        real_finish(self, session)
        session.flush()
        sys.stdout.write("loaded\\n"); sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    importer.merge = merge_then_die
    fresh_load.FreshLoad.finish = finish_then_die
    app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "ID_HASH_KEY": sys.argv[3],
                      "IMPORT_REPORTS_DIR": sys.argv[4], "UPLOAD_DIR": sys.argv[4], "SAMPLE_LISTS_DIR": sys.argv[4]})
    with app.app_context():
        ctx = import_context(app, actor="child")
        ctx.today = date(2026, 11, 23)
        importer.import_and_commit(db.session, sys.argv[2], importer.ImportOptions(create_missing=True), ctx)
    print("committed")
    """
)


def _import_and_die(app, path: Path, tmp_path: Path, said: str) -> None:
    """Run the import of ``path`` in a child process that kills itself before the commit."""
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    child = subprocess.run(
        [sys.executable, str(script), app.config["SQLALCHEMY_DATABASE_URI"], str(path), app.config["ID_HASH_KEY"],
         str(tmp_path)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert said in child.stdout.split() and "committed" not in child.stdout


def test_sigkill_mid_import_changes_nothing(app, make_county, tmp_path):
    make_county("岳阳县", "430621")
    units = [u for u in make_units(3) if u.county == "岳阳县"][:8]
    first = tmp_path / "first.csv"
    make_roster(300, seed=1, today=TODAY, units=units).to_csv(first, index=False)
    ctx = import_context(app, actor="test")
    ctx.today = TODAY
    import_and_commit(db.session, first, ImportOptions(create_missing=True), ctx)
    before_residents = db.session.scalar(select(func.count()).select_from(Resident))
    before_batches = db.session.scalar(select(func.count()).select_from(ImportBatch))
    db.session.commit()
    db.session.remove()

    second = tmp_path / "second.csv"
    make_roster(2000, seed=2, today=TODAY, units=units).to_csv(second, index=False)
    _import_and_die(app, second, tmp_path, "merged")  # the staged path: residents existed

    assert db.session.scalar(select(func.count()).select_from(Resident)) == before_residents == 300
    assert db.session.scalar(select(func.count()).select_from(ImportBatch)) == before_batches == 1
    # and the database is usable: the same file imports normally afterwards
    result = import_and_commit(db.session, second, ImportOptions(create_missing=True), ctx)
    assert result.imported == 2000 - result.rejected
    assert db.session.scalar(select(func.count()).select_from(Resident)) == 300 + result.imported


def test_sigkill_at_the_end_of_a_first_import_leaves_the_tables_empty(app, make_county, tmp_path):
    """The first import into an empty residents table writes its rows as it goes (FreshLoad):
    killed after the last of them, before the commit, it leaves nothing."""
    make_county("岳阳县", "430621")
    units = [u for u in make_units(3) if u.county == "岳阳县"][:8]
    first = tmp_path / "first.csv"
    make_roster(2000, seed=2, today=TODAY, units=units).to_csv(first, index=False)
    db.session.commit()
    db.session.remove()
    _import_and_die(app, first, tmp_path, "loaded")  # the first import's direct path
    assert db.session.scalar(select(func.count()).select_from(Resident)) == 0
    assert db.session.scalar(select(func.count()).select_from(ImportBatch)) == 0
    # the indexes the load drops and builds again at its end are there
    indexes = {i["name"] for i in inspect(db.engine).get_indexes("residents")}
    assert {"ix_residents_team_id_active", "uq_residents_id_hash"} <= indexes
    # the keys are still there (PostgreSQL) and the same file imports normally afterwards
    ctx = import_context(app, actor="test")
    ctx.today = TODAY
    result = import_and_commit(db.session, first, ImportOptions(create_missing=True), ctx)
    assert result.imported == 2000 - result.rejected and result.imported > 1900


ORG_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import app.org.importer as importer
    from app import create_app
    from app.extensions import db
    from app.org.maintenance import Actor

    real_report = importer.write_error_report

    def report_then_die(*args, **kwargs):
        # every row has been applied inside the transaction: die before anyone commits
        db.session.flush()
        sys.stdout.write("applied\\n"); sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    importer.write_error_report = report_then_die
    app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "IMPORT_REPORTS_DIR": sys.argv[3],
                      "UPLOAD_DIR": sys.argv[3], "SAMPLE_LISTS_DIR": sys.argv[3]})
    with app.app_context():
        importer.import_organisation(db.session, sys.argv[2], actor=Actor("child"), reports_dir=Path(sys.argv[3]))
        db.session.commit()
    print("committed")
    """
)


def test_sigkill_mid_organisation_import_changes_nothing(app, tmp_path):
    import pandas as pd

    from app.models import County, Institution, OrgChange, Team

    rows = [["岳阳县", "430621", f"第{i // 6}镇卫生院", "", "", f"{i % 6}组", "", ""] for i in range(600)]
    sheet = tmp_path / "org.csv"
    pd.DataFrame(rows, columns=["县区", "县区代码", "机构", "机构代码", "机构类型", "团队", "团队长", "联系电话"]).to_csv(
        sheet, index=False)
    db.session.remove()
    script = tmp_path / "org_child.py"
    script.write_text(ORG_CHILD, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    child = subprocess.run(
        [sys.executable, str(script), app.config["SQLALCHEMY_DATABASE_URI"], str(sheet), str(tmp_path)],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert "applied" in child.stdout.split() and "committed" not in child.stdout
    for model in (County, Institution, Team, OrgChange):
        assert db.session.scalar(select(func.count()).select_from(model)) == 0, model


WORKERS_CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import date
    import app.roster.importer as importer
    from app import create_app
    from app.extensions import db
    from app.roster.context import import_context

    real_chunks = importer.validated_chunks

    def chunks_then_hang(*args, **kwargs):
        for number, item in enumerate(real_chunks(*args, **kwargs)):
            yield item
            if number == 1:  # the workers are busy with the next chunks: wait to be killed
                sys.stdout.write("validating\\n"); sys.stdout.flush()
                time.sleep(600)

    importer.validated_chunks = chunks_then_hang
    app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "ID_HASH_KEY": sys.argv[3],
                      "IMPORT_REPORTS_DIR": sys.argv[4], "UPLOAD_DIR": sys.argv[4], "SAMPLE_LISTS_DIR": sys.argv[4],
                      "IMPORT_CHUNK_ROWS": 200, "IMPORT_WORKERS": 2})
    with app.app_context():
        ctx = import_context(app, actor="child")
        ctx.today = date(2026, 11, 23)
        importer.import_and_commit(db.session, sys.argv[2], importer.ImportOptions(create_missing=True), ctx)
    print("committed")
    """
)


def _descendants(pid: int) -> set[int]:
    """The live (not zombie) processes below ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state, ppid = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if state != "Z":
            parents.setdefault(int(ppid), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_sigkill_of_an_import_ends_its_worker_processes(app, make_county, tmp_path, suffix):
    """Killed outright, the importing process takes its validation workers (and the reader of
    a workbook) with it: none is left blocked on a pipe."""
    make_county("岳阳县", "430621")
    units = [u for u in make_units(3) if u.county == "岳阳县"][:8]
    frame = make_roster(3000, seed=3, today=TODAY, units=units)
    path = tmp_path / f"roster{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_excel(path, index=False)
    db.session.commit()
    db.session.remove()
    script = tmp_path / "workers_child.py"
    script.write_text(WORKERS_CHILD, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, str(script), app.config["SQLALCHEMY_DATABASE_URI"], str(path), app.config["ID_HASH_KEY"],
         str(tmp_path)],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "validating", child.stderr.read()[-2000:]
        workers = _descendants(child.pid)
        assert len(workers) >= 2  # the pool's workers (and a workbook's reader)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
        deadline = time.monotonic() + 60  # generous: how fast is not the point, that they go is
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(workers) == set()
    finally:
        for pid in _alive(_descendants(child.pid)) | {child.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.stdout.close()
        child.stderr.close()
