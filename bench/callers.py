"""Caller load benchmark: 30 simulated callers working one county's queue at once against the
application under gunicorn on PostgreSQL, each figure printed beside the same run's *floor*:
the server time of the cheapest request through the same stack (GET of the sign-in page ``/``
while signed out; a static file is shown too), measured while the callers are working.

    .venv/bin/python bench/callers.py                              # 30 callers x 10 cases each
    .venv/bin/python bench/callers.py --seconds 120                # as many cases as fit in 2 min
    .venv/bin/python bench/callers.py --workers 3 --threads 4      # another gunicorn set-up
    .venv/bin/python bench/callers.py --keep                       # keep the database afterwards

Target (2-core machine; reported, not asserted): server time per caller request <= 50 ms at
the 95th percentile with 30 concurrent callers.

Server time is the ``Server-Timing: app;dur=<ms>`` header every response carries (the time
inside Flask for that request: from before_request to after_request, so neither gunicorn's
queue nor the socket); client time is the wall time the simulated caller waited for the whole
response, queueing in gunicorn's backlog included.

Set-up (timed, printed, not a figure): a fresh PostgreSQL database ``survey_bench_callers``
(dropped first if it exists, and at the end unless --keep), ``flask --app wsgi db upgrade``,
one county of --institutions institutions with 4-8 teams each (app.demo.synth.make_units),
--residents residents written by SQL (bench/draw.py's generator: ~90 % eligible, 2/3 with a
key-population label), VACUUM ANALYZE, the draw of the current month (Asia/Shanghai) by
``app.draws.services.draw_month_and_commit`` (10 primaries + 10 backups per institution), and --callers
caller accounts of the county.

The server: ``gunicorn --workers <CPUs + 1> --timeout 300 wsgi:app`` (the README's production command;
sync workers, --workers/--threads to change it) on a free port of 127.0.0.1 with the
environment a deployment would have (APP_ENV=production, secrets, DATABASE_URL) and
CALL_HOURS=00:00-23:59 so the queue is open at any hour. CALL_MIN_GAP_MINUTES keeps its default (120): no retry of
a case comes due during a run, so every claim is an untried primary or a backup activated by
an earlier vacant or suspended number, and the county is sized (10 primaries per institution,
at least one per claim) so the queue never runs dry; running dry is an error.

Each caller is a thread with its own cookie session over ``http.client`` (redirects followed
by hand, so every hop is timed and checked): sign in (GET and POST ``/``, not in the figures),
then per case: POST ``/calls/next`` -> GET the case screen -> either (--no-contact-share of the
cases) POST an attempt outcome (no answer, busy, powered off, vacant, suspended, refusal, callback) ->
GET ``/calls/`` or POST start -> GET the interview redirect -> for each question GET it and
POST the answer -> GET review -> POST finish -> GET ``/calls/``. No think time. Every status
code and redirect target is checked; anything else is an error (with samples printed). The
first --warmup-cases cases of every caller are not in the figures (the requests are made and
checked all the same). A separate floor thread alternates GET ``/`` (signed out) and GET of a
static file every --floor-interval seconds while the callers work; the same two requests are
also timed on the idle server just before the load.

Afterwards the database is checked: attempts = successful attempt + finish requests, none
left open, no case with attempts by two callers, no case claimed by two callers, no lease
left. The script exits non-zero on any request error, failed check or failed set-up.

With no think time the server is saturated, and on a small machine a request's server time is
mostly its CPU time times the number of requests sharing the CPUs: the run therefore also prints
the CPU seconds used by the gunicorn workers, the PostgreSQL backends, the simulated callers and
everything else on the machine (from /proc), and warns when other processes took more than 10 %
of the CPUs (the figures are then inflated by them).
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import math
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# run as `python bench/<name>.py`: this folder is on sys.path
from _shared import BENCH_HASH_KEY, bench_app, die_with_parent, exit_on_signal, git_output, machine_info, print_table  # noqa: E402

OUTPUT = ROOT / "bench" / "output"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DB_NAME = "survey_bench_callers"
TARGET_P95_MS = 50.0
COUNTY = ("基准县", "439901")
PASSWORD = "bench-caller-pw-2026"
USER_AGENT = "bench-callers/1 (python http.client)"
STATIC_PATH = "/static/app.css"
CALL_HOURS = "00:00-23:59"
# the README's production command: gunicorn --workers $(( $(nproc) + 1 )) --timeout 300 wsgi:app
# (sync workers; the requests are CPU-bound, so more workers than CPUs + 1 only queue inside)
DEFAULT_WORKERS = (os.cpu_count() or 1) + 1
GUNICORN_TIMEOUT = 300
DEFAULT_INSTITUTIONS = 40
SECONDS_CLAIM_RATE = 12  # claims per second to size the county for --seconds (2 CPUs manage ~8)
OTHER_CPU_WARN = 0.10  # other processes used more than this share of the CPUs: figures inflated

# request kinds in the caller's loop, in the order a case goes through them
KINDS = ("next", "case", "attempt", "home", "start", "interview", "question GET", "answer POST", "review", "finish")
SIGN_IN_KINDS = ("sign-in GET", "sign-in POST")

# what a case that is not interviewed ends with this time (weights): vacant and suspended are
# final and activate a backup, refusal is final, callback needs a time, the rest are retried
# after the gap
NON_CONTACT = (("no_answer", 40), ("busy", 15), ("powered_off", 15), ("vacant", 10), ("suspended", 5),
               ("refusal", 10), ("callback", 5))

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
NUMBER_RE = re.compile(r'name="number" value="(\d+)"')
FLASH_RE = re.compile(r'class="flash flash-(\w+)"[^>]*>([^<]*)<')
TIMING_RE = re.compile(r"\bapp;dur=([0-9.]+)")
CASE_RE = re.compile(r"^/calls/case/(\d+)$")
RESPONSE_RE = re.compile(r"^/calls/response/(\d+)$")
QUESTION_RE = re.compile(r"^/calls/response/(\d+)/q/(\w+)$")


# ===========================================================================
# HTTP: one connection and one cookie jar per simulated caller
# ===========================================================================


class RequestFailed(Exception):
    """A response that is not what the caller's browser would have got."""


@dataclass
class Reply:
    status: int
    location: str | None  # path of the Location header, if any
    body: str
    server_ms: float | None
    client_ms: float


class Client:
    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.cookies: dict[str, str] = {}
        self.csrf: str | None = None

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path: str, form: dict | None = None) -> Reply:
        headers = {"User-Agent": USER_AGENT, "Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        client_ms = (time.perf_counter() - t0) * 1000.0
        for raw in resp.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or "1970" in (morsel["expires"] or ""):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        timing = TIMING_RE.search(resp.headers.get("Server-Timing") or "")
        location = resp.headers.get("Location")
        if location:
            location = urlsplit(location).path
        text = data.decode("utf-8", "replace") if resp.headers.get_content_type().startswith("text/") else ""
        if text:
            token = CSRF_RE.search(text)
            if token:
                self.csrf = token.group(1)
        return Reply(resp.status, location, text, float(timing.group(1)) if timing else None, client_ms)


def flashes(body: str) -> str:
    return "; ".join(f"{cat}: {msg.strip()}" for cat, msg in FLASH_RE.findall(body)) or "-"


# ===========================================================================
# One simulated caller
# ===========================================================================


@dataclass
class Tally:
    """What one thread measured and did; merged at the end (no locks while running)."""

    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # kind -> [(server, client)]
    errors: list[str] = field(default_factory=list)
    missing_timing: int = 0
    requests: int = 0
    claims: list[int] = field(default_factory=list)  # case ids handed out by POST /calls/next
    attempt_ok: int = 0
    start_ok: int = 0
    finish_ok: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    cases_done: int = 0
    dry: bool = False

    def add(self, kind: str, reply: Reply, record: bool) -> None:
        self.requests += 1
        if reply.server_ms is None:
            self.missing_timing += 1
            return
        if record:
            self.samples.setdefault(kind, []).append((reply.server_ms, reply.client_ms))


class Caller:
    def __init__(self, index: int, username: str, host: str, port: int, args, stop: threading.Event) -> None:
        self.index = index
        self.username = username
        self.client = Client(host, port)
        self.args = args
        self.stop = stop
        self.rng = random.Random(args.seed * 1000 + index)
        self.tally = Tally()
        self.recording = False

    # -- one request, checked -------------------------------------------------------------------

    def call(self, kind: str, method: str, path: str, form: dict | None = None, *, expect: int,
             to: re.Pattern | str | None = None) -> Reply:
        if form is not None:
            form = {**form, "csrf_token": self.client.csrf}
        reply = self.client.request(method, path, form)
        self.tally.add(kind, reply, self.recording)
        ok = reply.status == expect
        if ok and to is not None:
            ok = reply.location is not None and (
                reply.location == to if isinstance(to, str) else to.match(reply.location) is not None
            )
        if not ok:
            detail = flashes(reply.body)
            if reply.status in (301, 302, 303) and reply.location:
                try:  # the message the browser would show, from the page redirected to (not timed)
                    detail = flashes(self.client.request("GET", reply.location).body)
                except (OSError, http.client.HTTPException):
                    pass
            raise RequestFailed(f"{self.username} {kind}: {method} {path} -> {reply.status}"
                                f"{' ' + reply.location if reply.location else ''} (expected {expect}"
                                f"{' ' + (to if isinstance(to, str) else to.pattern) if to else ''}); {detail}")
        return reply

    # -- the work -------------------------------------------------------------------------------

    def sign_in(self) -> None:
        self.recording = True
        self.call("sign-in GET", "GET", "/", expect=200)
        self.call("sign-in POST", "POST", "/", {"username": self.username, "password": PASSWORD},
                  expect=302, to="/calls/")
        self.recording = False
        self.call("home", "GET", "/calls/", expect=200)

    def run(self, start: threading.Barrier, deadline_box: list) -> None:
        try:
            self.sign_in()
        except Exception as exc:  # noqa: BLE001
            self.tally.errors.append(f"{self.username} sign-in: {type(exc).__name__}: {exc}")
            start.abort()
            return
        try:
            start.wait()
        except threading.BrokenBarrierError:
            return
        n = 0
        try:
            while not self.stop.is_set():
                deadline = deadline_box[0]
                if self.args.seconds is not None:
                    if n >= self.args.warmup_cases and time.monotonic() >= deadline:
                        break
                elif n >= self.args.warmup_cases + self.args.cases_per_caller:
                    break
                self.recording = n >= self.args.warmup_cases
                if not self.one_case():
                    break
                n += 1
        except RequestFailed as exc:
            self.tally.errors.append(str(exc))
        except (OSError, http.client.HTTPException) as exc:
            self.tally.errors.append(f"{self.username}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001  (a bug here must not pass as a clean run)
            self.tally.errors.append(f"{self.username}: unexpected {type(exc).__name__}: {exc}")
        finally:
            self.client.close()

    def one_case(self) -> bool:
        reply = self.call("next", "POST", "/calls/next", {}, expect=302)
        match = CASE_RE.match(reply.location or "")
        if match is None:
            detail = flashes(self.client.request("GET", reply.location or "/calls/").body)
            self.tally.dry = True
            raise RequestFailed(f"{self.username} next: POST /calls/next -> {reply.status} {reply.location} "
                                f"(expected /calls/case/<id>): the queue ran dry? {detail}")
        case_id = int(match.group(1))
        self.tally.claims.append(case_id)
        page = self.call("case", "GET", f"/calls/case/{case_id}", expect=200)
        number = NUMBER_RE.search(page.body)
        if number is None or 'id="start"' not in page.body:
            raise RequestFailed(f"{self.username} case: GET /calls/case/{case_id}: the screen shows no start "
                                f"button / attempt number (not holding the case?); {flashes(page.body)}")
        number = number.group(1)
        if self.rng.random() < self.args.no_contact_share:
            outcome = self.rng.choices([o for o, _ in NON_CONTACT], [w for _, w in NON_CONTACT])[0]
            form = {"outcome": outcome, "number": number}
            if outcome == "callback":
                when = callback_time()
                if when is None:
                    outcome = form["outcome"] = "no_answer"
                else:
                    form.update(callback_date=when.strftime("%Y-%m-%d"), callback_time=when.strftime("%H:%M"))
            self.call("attempt", "POST", f"/calls/case/{case_id}/attempt", form, expect=302, to="/calls/")
            self.tally.attempt_ok += 1
        else:
            outcome = "complete"
            self.interview(case_id, number)
            self.tally.finish_ok += 1
        self.tally.outcomes[outcome] = self.tally.outcomes.get(outcome, 0) + 1
        self.tally.cases_done += 1
        self.call("home", "GET", "/calls/", expect=200)
        return True

    def interview(self, case_id: int, number: str) -> None:
        reply = self.call("start", "POST", f"/calls/case/{case_id}/start", {"number": number}, expect=302,
                          to=RESPONSE_RE)
        self.tally.start_ok += 1
        rid = RESPONSE_RE.match(reply.location).group(1)
        reply = self.call("interview", "GET", reply.location, expect=302, to=QUESTION_RE)
        plan = self.answers()
        asked = 0
        location = reply.location
        while True:
            match = QUESTION_RE.match(location)
            if match is None:
                break
            code = match.group(2)
            if code not in plan:
                raise RequestFailed(f"{self.username}: the questionnaire asked {code!r}, which the bench "
                                    f"has no answer for (path so far {asked} items)")
            self.call("question GET", "GET", location, expect=200)
            reply = self.call("answer POST", "POST", location, plan[code], expect=302,
                              to=re.compile(rf"^/calls/response/{rid}/(q/\w+|review)$"))
            location = reply.location
            asked += 1
            if asked > 20:
                raise RequestFailed(f"{self.username}: more than 20 questions in one interview")
        page = self.call("review", "GET", location, expect=200)
        if 'id="submit"' not in page.body:
            raise RequestFailed(f"{self.username} review: {location} shows no submit button "
                                f"(questionnaire incomplete?); {flashes(page.body)}")
        self.call("finish", "POST", f"/calls/response/{rid}/finish", {}, expect=302, to="/calls/")

    def answers(self) -> dict[str, dict]:
        """One resident's answers to v1, a realistic mix of paths (services or none)."""
        r = self.rng
        services = r.choice([["follow_up"], ["follow_up", "checkup"], ["medication", "consultation"], ["none"]])
        return {
            "identity": {"value": "self"},
            "aware": {"value": "yes"},
            "knows_doctor": {"value": r.choice(["yes", "yes", "no"])},
            "services": {"value": services},
            "service_count": {"value": str(r.randint(1, 8))},
            "effect": {"value": r.choice(["very_helpful", "helpful", "neutral", "little", "not_helpful", "unsure"])},
            "satisfaction": {"value": r.choice(["very_satisfied", "satisfied", "satisfied", "neutral", "dissatisfied"])},
            "renew": {"value": r.choice(["yes", "yes", "no", "undecided"])},
            "suggestion": {"value": r.choice(["", "", "希望医生多上门随访。", "开药方便一些就好了。"])},
            "wants_contact": {"value": r.choice(["no", "no", "yes"])},
        }


def callback_time() -> datetime | None:
    """A callback the rules accept: later than now, inside 00:00-23:59, in this month; None if
    none is left this month (the bench then records a no-answer instead)."""
    from app.core.clock import TZ

    now = datetime.now(TZ)
    for when in (now + timedelta(hours=3), (now + timedelta(days=1)).replace(hour=10, minute=0)):
        when = when.replace(second=0, microsecond=0)
        if when.month == now.month and when.strftime("%H:%M") < "23:55":
            return when
    return None


class FloorProbe:
    """The cheapest requests through the same stack: the sign-in page signed out, a static file."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.tally = Tally()

    def once(self, client: Client) -> None:
        for kind, path in (("floor GET / (signed out)", "/"), (f"floor GET {STATIC_PATH}", STATIC_PATH)):
            reply = client.request("GET", path)
            self.tally.add(kind, reply, True)
            if reply.status != 200:
                self.tally.errors.append(f"floor: GET {path} -> {reply.status}")

    def run_n(self, n: int) -> None:
        client = Client(self.host, self.port)
        try:
            for _ in range(n):
                self.once(client)
        finally:
            client.close()

    def run_until(self, stop: threading.Event, interval: float) -> None:
        client = Client(self.host, self.port)
        try:
            while not stop.wait(interval):
                self.once(client)
        except (OSError, http.client.HTTPException) as exc:
            self.tally.errors.append(f"floor: {type(exc).__name__}: {exc}")
        finally:
            client.close()


# ===========================================================================
# Set-up: database, data, draw, users
# ===========================================================================


def server_env(url: str, work: Path, args) -> dict:
    env = dict(os.environ)
    env.update(
        APP_ENV="production",
        SECRET_KEY=secrets.token_hex(32),
        ID_HASH_KEY=BENCH_HASH_KEY,
        DATABASE_URL=url,
        SAMPLE_LISTS_DIR=str(work / "sample_lists"),
        IMPORT_REPORTS_DIR=str(work / "reports"),
        UPLOAD_DIR=str(work / "uploads"),
        CALL_HOURS=CALL_HOURS,
        SESSION_COOKIE_SECURE="0",  # plain http on 127.0.0.1
        SCHEDULER_IN_WEB="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if args.min_gap_minutes is not None:
        env["CALL_MIN_GAP_MINUTES"] = str(args.min_gap_minutes)
    for key in ("FLASK_DEBUG", "FLASK_APP"):
        env.pop(key, None)
    return env


def flask_bin() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "flask"
    return [str(exe) if exe.exists() else "flask", "--app", "wsgi"]


def build(url: str, work: Path, env: dict, args, now: datetime) -> dict:
    """Migrate, then one county by SQL, the draw of the current month, the callers."""
    from sqlalchemy import func, insert, select, text

    from app.auth.services import create_user
    from app.demo.synth import make_units
    from app.draws.context import draw_settings
    from app.draws.services import draw_month_and_commit
    from app.core.clock import local_date, month_of
    from app.extensions import db
    from app.models import Case, County, Institution, Resident, Team
    from app.roster.labels import sync_labels
    from app.org.maintenance import infer_institution_type
    from draw import RESIDENT_COLUMNS, label_inserts, resident_select

    info: dict = {"steps": []}

    def step(label, fn):
        print(f"    {label} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        out = fn()
        sec = time.perf_counter() - t0
        info["steps"].append((label, sec))
        print(f"{sec:.1f} s", flush=True)
        return out

    def upgrade():
        proc = subprocess.run([*flask_bin(), "db", "upgrade"], cwd=str(ROOT), env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"flask db upgrade failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")

    step("flask --app wsgi db upgrade", upgrade)
    app = bench_app(url, work, CALL_HOURS=CALL_HOURS)
    with app.app_context():
        engine = db.engine
        units = make_units(args.seed, counties=[(COUNTY[0], COUNTY[1], False, args.institutions)])
        institutions: dict[str, int] = {}
        teams: list[tuple[int, int, str, str]] = []
        for u in units:
            inst_id = institutions.setdefault(u.institution, len(institutions) + 1)
            teams.append((len(teams) + 1, inst_id, u.team, u.doctor))
        per_team = max(1, args.residents // len(teams))
        ranges = [(t[0], 1 + k * per_team, 1 + (k + 1) * per_team) for k, t in enumerate(teams)]

        def org():
            with engine.begin() as conn:
                conn.execute(insert(County), [{"id": 1, "name": COUNTY[0], "code": COUNTY[1]}])
                conn.execute(insert(Institution), [{"id": i, "county_id": 1, "name": name, "code": f"{COUNTY[1]}{i:04d}",
                                                    "type": infer_institution_type(name)}
                                                   for name, i in institutions.items()])
                conn.execute(insert(Team), [{"id": i, "institution_id": inst, "name": name, "leader_doctor": doc}
                                            for i, inst, name, doc in teams])
            labels = sync_labels(db.session, app.extensions["vocabulary"])
            db.session.commit()
            return labels

        labels = step(f"county {COUNTY[0]}: {len(institutions)} institutions, {len(teams)} teams, labels", org)
        general = app.extensions["vocabulary"].default_code
        key_ids = sorted(v for k, v in labels.items() if k != general)
        sql, params = resident_select("postgresql", local_date(now), now.replace(tzinfo=None, microsecond=0))

        def residents():
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TEMPORARY TABLE bench_team_ranges (team_id integer, lo integer, hi integer)")
                conn.execute(text("INSERT INTO bench_team_ranges VALUES (:t, :lo, :hi)"),
                             [{"t": t, "lo": lo, "hi": hi} for t, lo, hi in ranges])
                conn.execute(text(
                    f"INSERT INTO residents ({RESIDENT_COLUMNS}) {sql} "
                    "FROM (SELECT s.i, r.team_id FROM bench_team_ranges r "
                    "      CROSS JOIN LATERAL generate_series(r.lo, r.hi - 1) AS s(i)) AS g ORDER BY g.i"
                ).bindparams(**params))
                for stmt in label_inserts(key_ids, labels[general]):
                    conn.execute(text(stmt))
                for table in ("counties", "institutions", "teams", "residents"):
                    conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                         f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")

        step(f"{per_team * len(teams):,} residents and their labels by SQL", residents)

        month = month_of(local_date(now))

        def draw():
            outcomes = draw_month_and_commit(db.session, month, now=now, settings=draw_settings(app), actor="bench",
                                  after_draw=None)
            bad = [f"{o.county}: {o.status} {o.message}" for o in outcomes if o.status != "drawn"]
            if bad:
                raise SystemExit("the draw failed: " + "; ".join(bad))

        step(f"draw_month_and_commit {month}", draw)

        def users():
            names = [f"bench_caller_{k + 1:02d}" for k in range(args.callers)]
            for k, name in enumerate(names, start=1):
                # simulated callers sign in and work at once: no forced password change
                create_user(db.session, name, "caller", PASSWORD, COUNTY[0], real_name=f"压测调查员{k:02d}",
                            must_change_password=False)
            db.session.commit()
            return names

        info["users"] = step(f"{args.callers} caller accounts", users)

        def vacuum():
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")

        step("VACUUM ANALYZE", vacuum)
        info["month"] = month
        info["institutions"] = len(institutions)
        info["teams"] = len(teams)
        info["residents"] = db.session.scalar(select(func.count()).select_from(Resident))
        info["primaries"] = db.session.scalar(select(func.count()).select_from(Case).where(Case.kind == "primary"))
        info["backups"] = db.session.scalar(select(func.count()).select_from(Case).where(Case.kind == "backup"))
        db.session.remove()
        engine.dispose()
    return info


# ===========================================================================
# The server
# ===========================================================================


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, env: dict, port: int, log_path: Path) -> subprocess.Popen:
    exe = ROOT / ".venv" / "bin" / "gunicorn"
    cmd = [str(exe) if exe.exists() else "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers)]
    if args.threads > 1:
        cmd += ["--worker-class", "gthread", "--threads", str(args.threads)]
    cmd += ["--timeout", str(GUNICORN_TIMEOUT), "--log-level", "warning", "wsgi:app"]
    log = open(log_path, "wb")

    def child():
        die_with_parent()

    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=child)
    log.close()
    proc.bench_cmd = " ".join([os.path.relpath(cmd[0], ROOT) if os.path.isabs(cmd[0]) else cmd[0], *cmd[1:]])
    return proc


def wait_until_up(proc: subprocess.Popen, port: int, log_path: Path, timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode} before answering; its log:\n"
                             + log_path.read_text(errors="replace")[-3000:])
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", STATIC_PATH)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within {timeout:.0f} s; its log:\n"
                     + log_path.read_text(errors="replace")[-3000:])


def stop_server(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()  # gunicorn master: graceful shutdown of its workers
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session, started above
        proc.wait(5)


# ===========================================================================
# CPU accounting: who used the machine's CPUs during the load
# ===========================================================================

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()  # from field 3 (state) on
    except (OSError, IndexError):
        return None


def process_cpu(pid: int) -> float | None:
    """user + system CPU seconds of one process (all its threads)."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK if f else None


def children_of(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat_fields(int(entry))
            if f and int(f[1]) == ppid:
                out.append(int(entry))
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


class CpuMeter:
    """CPU seconds of the gunicorn workers, of the PostgreSQL backends serving the bench
    database, of this process (the simulated callers) and of the whole machine, between
    ``start()`` and ``stop()``; a process that appears in between counts from zero."""

    def __init__(self, master_pid: int, pg_admin, db_name: str) -> None:
        self.master_pid, self.pg_admin, self.db_name = master_pid, pg_admin, db_name
        self.begin: dict | None = None
        self.result: dict | None = None

    def _pg_pids(self) -> list[int]:
        from sqlalchemy import text

        with self.pg_admin.connect() as conn:
            return list(conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": self.db_name})
                        .scalars())

    def _snapshot(self) -> dict:
        workers = {pid: process_cpu(pid) for pid in children_of(self.master_pid)}
        pg = {pid: process_cpu(pid) for pid in self._pg_pids()}
        return {"workers": {k: v for k, v in workers.items() if v is not None},
                "pg": {k: v for k, v in pg.items() if v is not None},
                "self": sum(os.times()[:2]), "machine": machine_cpu(), "at": time.monotonic()}

    def start(self) -> None:
        try:
            self.begin = self._snapshot()
        except Exception:  # noqa: BLE001  (accounting is a side figure: never fail the run for it)
            self.begin = None

    def stop(self) -> None:
        if self.begin is None:
            return
        try:
            end = self._snapshot()
        except Exception:  # noqa: BLE001
            return
        b = self.begin

        def delta(group):
            return sum(max(0.0, v - b[group].get(pid, 0.0)) for pid, v in end[group].items())

        busy = end["machine"][0] - b["machine"][0]
        wall = end["at"] - b["at"]
        self.result = {"workers": delta("workers"), "pg": delta("pg"), "self": end["self"] - b["self"],
                       "busy": busy, "available": wall * (os.cpu_count() or 1), "wall": wall,
                       "n_workers": len(end["workers"]), "n_pg": len(end["pg"])}
        self.result["other"] = max(0.0, busy - self.result["workers"] - self.result["pg"] - self.result["self"])


# ===========================================================================
# The run and the report
# ===========================================================================


def pct(values: list[float], q: float) -> float:
    import numpy

    return float(numpy.percentile(values, q)) if values else float("nan")


def merge(tallies: list[Tally]) -> Tally:
    out = Tally()
    for t in tallies:
        for kind, rows in t.samples.items():
            out.samples.setdefault(kind, []).extend(rows)
        out.errors += t.errors
        out.missing_timing += t.missing_timing
        out.requests += t.requests
        out.claims += t.claims
        out.attempt_ok += t.attempt_ok
        out.start_ok += t.start_ok
        out.finish_ok += t.finish_ok
        out.cases_done += t.cases_done
        out.dry = out.dry or t.dry
        for k, v in t.outcomes.items():
            out.outcomes[k] = out.outcomes.get(k, 0) + v
    return out


def stat_row(label: str, rows: list[tuple[float, float]], floor_p95: float | None) -> list[str]:
    server = [s for s, _ in rows]
    client = [c for _, c in rows]
    p95 = pct(server, 95)
    return [label, f"{len(rows):,}", f"{pct(server, 50):.1f}", f"{p95:.1f}", f"{pct(server, 99):.1f}",
            f"{max(server) if server else float('nan'):.1f}", f"{pct(client, 50):.1f}", f"{pct(client, 95):.1f}",
            f"{p95 / floor_p95:.1f}x" if floor_p95 else "-"]


HEAD = ["request", "count", "srv p50", "srv p95", "srv p99", "srv max", "cli p50", "cli p95", "p95/floor"]


def code_info() -> str:
    head = git_output(ROOT, "rev-parse", "--short", "HEAD").strip() or "unknown"
    files = [ROOT / "app" / "calls" / n for n in ("routes.py", "services.py")]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files if f.exists())).hexdigest()[:12]
    dirty = [line[3:] for line in git_output(ROOT, "status", "--porcelain", "--", "app").splitlines()]
    text = f"HEAD {head}, app/calls/{{routes,services}}.py sha256 {digest}"
    if dirty:
        text += f"; uncommitted in app/: {', '.join(dirty[:8])}" + (" ..." if len(dirty) > 8 else "")
    return text


def db_checks(url: str, total: Tally) -> list[tuple[str, bool]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            q = lambda sql: conn.execute(text(sql)).scalar()  # noqa: E731
            attempts = q("SELECT count(*) FROM attempts")
            open_attempts = q("SELECT count(*) FROM attempts WHERE outcome IS NULL")
            completes = q("SELECT count(*) FROM responses WHERE status = 'complete'")
            other_responses = q("SELECT count(*) FROM responses WHERE status <> 'complete'")
            two_callers = q("SELECT count(*) FROM (SELECT case_id FROM attempts GROUP BY case_id "
                            "HAVING count(DISTINCT caller_id) > 1) x")
            leased = q("SELECT count(*) FROM cases WHERE leased_by_id IS NOT NULL")
            count_sum = q("SELECT coalesce(sum(attempt_count), 0) FROM cases")
            activated = q("SELECT count(*) FROM cases WHERE kind = 'backup' AND status <> 'reserve'")
            replaced = q("SELECT count(*) FROM cases WHERE replacement_state = 'replaced'")
    finally:
        engine.dispose()
    claimed: dict[int, int] = {}
    for case_id in total.claims:
        claimed[case_id] = claimed.get(case_id, 0) + 1
    twice = sum(1 for n in claimed.values() if n > 1)
    want = total.attempt_ok + total.finish_ok
    return [
        (f"attempts in the database {attempts:,} = successful attempt requests {total.attempt_ok:,} "
         f"+ finish requests {total.finish_ok:,} ({want:,})", attempts == want),
        (f"attempts left open (outcome NULL): {open_attempts}", open_attempts == 0),
        (f"complete responses {completes:,} = finish requests {total.finish_ok:,}; other responses {other_responses}",
         completes == total.finish_ok and other_responses == 0),
        (f"sum(cases.attempt_count) {count_sum:,} = attempts {attempts:,}", count_sum == attempts),
        (f"cases with attempts by two callers: {two_callers}", two_callers == 0),
        (f"cases claimed by two callers (client log, {len(claimed):,} cases claimed): {twice}", twice == 0),
        (f"cases still leased after the run: {leased}", leased == 0),
        (f"backups activated {activated:,} = cases marked replaced {replaced:,}", activated == replaced),
    ]


def run_load(args, host: str, port: int, users: list[str], meter: CpuMeter) -> tuple[Tally, Tally, float]:
    stop = threading.Event()
    start = threading.Barrier(len(users) + 1)
    deadline_box = [float("inf")]
    callers = [Caller(i, name, host, port, args, stop) for i, name in enumerate(users)]
    threads = [threading.Thread(target=c.run, args=(start, deadline_box), name=c.username, daemon=True)
               for c in callers]
    for t in threads:
        t.start()
    floor = FloorProbe(host, port)
    floor_stop = threading.Event()
    floor_thread = threading.Thread(target=floor.run_until, args=(floor_stop, args.floor_interval), daemon=True)
    try:
        start.wait(timeout=300)
    except threading.BrokenBarrierError:
        stop.set()
        for t in threads:
            t.join(5)
        return merge([c.tally for c in callers]), floor.tally, 0.0
    meter.start()
    t0 = time.monotonic()
    if args.seconds is not None:
        deadline_box[0] = t0 + args.seconds
    floor_thread.start()
    last = t0
    try:
        while True:
            alive = [t for t in threads if t.is_alive()]
            if not alive:
                break
            alive[0].join(0.5)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                done = sum(c.tally.cases_done for c in callers)
                reqs = sum(c.tally.requests for c in callers)
                errs = sum(len(c.tally.errors) for c in callers)
                alive = sum(t.is_alive() for t in threads)
                print(f"    {last - t0:5.0f} s: {reqs:,} requests, {done:,} cases, {errs} errors, "
                      f"{alive} callers working", flush=True)
    finally:
        elapsed = time.monotonic() - t0
        meter.stop()
        stop.set()
        floor_stop.set()
        floor_thread.join(10)
    return merge([c.tally for c in callers]), floor.tally, elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=30)
    parser.add_argument("--cases-per-caller", type=int, default=10, help="measured cases per caller (default 10)")
    parser.add_argument("--seconds", type=float, help="work for this long instead of a fixed number of cases")
    parser.add_argument("--warmup-cases", type=int, default=1, help="cases per caller before the figures (default 1)")
    parser.add_argument("--no-contact-share", type=float, default=0.4,
                        help="share of cases ending without an interview (default 0.4)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"gunicorn workers (default {DEFAULT_WORKERS}: README's production command)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (>1: gthread worker class)")
    parser.add_argument("--institutions", type=int,
                        help=f"institutions of the county (default {DEFAULT_INSTITUTIONS}, or more: one primary "
                        f"per expected claim, {SECONDS_CLAIM_RATE} claims/s with --seconds)")
    parser.add_argument("--residents", type=int, default=60_000,
                        help="residents of the county (default 60,000; at least 150 per institution)")
    parser.add_argument("--min-gap-minutes", type=int,
                        help="CALL_MIN_GAP_MINUTES for the server (default: the app's, 120)")
    parser.add_argument("--floor-interval", type=float, default=0.05, help="seconds between floor probes")
    parser.add_argument("--idle-floor", type=int, default=100, help="floor probes on the idle server before the load")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                        help="server (and maintenance database) on which the bench database is created")
    parser.add_argument("--db-name", default=DB_NAME)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.callers < 1 or args.workers < 1 or args.threads < 1:
        parser.error("--callers, --workers and --threads must be at least 1")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, exit_on_signal)
    claims = args.callers * (args.warmup_cases + (args.cases_per_caller if args.seconds is None else 0))
    if args.seconds is not None:
        claims += math.ceil(args.seconds * SECONDS_CLAIM_RATE)
    needed = math.ceil(claims / 10)  # 10 primaries per institution
    sized_up = args.institutions is None and needed > DEFAULT_INSTITUTIONS
    if args.institutions is None:
        args.institutions = max(DEFAULT_INSTITUTIONS, needed)
    elif needed > args.institutions:
        print(f"note: --institutions {args.institutions} gives {args.institutions * 10} primaries for about "
              f"{claims} claims: the queue may run dry (an error)")
    args.residents = max(args.residents, 150 * args.institutions)

    from sqlalchemy import create_engine, make_url, text

    OUTPUT.mkdir(parents=True, exist_ok=True)
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    run_dir = OUTPUT / f"callers-{run_id}"
    run_dir.mkdir()
    try:
        pg_admin = create_engine(make_url(args.pg_url), isolation_level="AUTOCOMMIT")
        with pg_admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        print(f"SETUP FAILED: PostgreSQL at {args.pg_url} is not reachable ({type(exc).__name__}: {exc})")
        return 2
    url = make_url(args.pg_url).set(database=args.db_name).render_as_string(hide_password=False)

    print("Caller load benchmark", run_id)
    for line in machine_info(pg_admin, ("shared_buffers", "max_connections", "synchronous_commit", "work_mem")):
        print("  " + line)
    load = os.getloadavg()
    print(f"  load    : {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) at start")
    print(f"  code    : {code_info()}")
    print(f"  output  : {run_dir}")
    print(flush=True)

    server = None
    created = False
    exit_code = 0
    try:
        with pg_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{args.db_name}" TEMPLATE template0 ENCODING \'UTF8\''))
        created = True
        env = server_env(url, run_dir, args)
        now = datetime.now(timezone.utc)
        print(f"[setup] {url}", flush=True)
        try:
            info = build(url, run_dir, env, args, now)
        except SystemExit as exc:
            print(f"SETUP FAILED: {exc}")
            return 2
        setup_s = sum(s for _l, s in info["steps"])

        port = free_port()
        log_path = run_dir / "gunicorn.log"
        server = start_server(args, env, port, log_path)
        try:
            up_s = wait_until_up(server, port, log_path)
        except SystemExit as exc:
            print(f"SETUP FAILED: {exc}")
            return 2
        print(f"[server] {server.bench_cmd}  (pid {server.pid}, answering after {up_s:.1f} s)", flush=True)

        idle = FloorProbe("127.0.0.1", port)
        idle.run_n(10)  # every worker imports and compiles its templates before the idle floor
        idle = FloorProbe("127.0.0.1", port)
        idle.run_n(args.idle_floor)

        work = (f"{args.seconds:.0f} s" if args.seconds is not None
                else f"{args.cases_per_caller} cases each") + f" after {args.warmup_cases} warm-up case(s)"
        print(f"[load] {args.callers} callers, {work}, no think time", flush=True)
        meter = CpuMeter(server.pid, pg_admin, args.db_name)
        total, floor, elapsed = run_load(args, "127.0.0.1", port, info["users"], meter)
        stop_server(server)
        server = None
        errors = total.errors + floor.errors + idle.tally.errors
        gunicorn_log = log_path.read_text(errors="replace").strip()

        # ---- the report ------------------------------------------------------------------------
        print()
        gap = args.min_gap_minutes if args.min_gap_minutes is not None else 120
        worker_kind = "sync" if args.threads == 1 else f"gthread x {args.threads} threads"
        print("CONFIGURATION")
        print(f"  callers : {args.callers} threads (one cookie session and one http.client connection each), "
              f"no think time; {work}; non-contact share {args.no_contact_share:.0%} "
              f"({', '.join(f'{o} {w}' for o, w in NON_CONTACT)} by weight)")
        print(f"  server  : gunicorn {args.workers} {worker_kind} worker(s) on {os.cpu_count()} CPUs"
              + (" (the README's production command, --workers CPUs+1 --timeout 300)"
                 if (args.workers, args.threads) == (DEFAULT_WORKERS, 1) else "")
              + "; a sync worker runs one request at a time: Server-Timing is the request's own time (shared CPUs "
              "included), the callers waiting in gunicorn's backlog is in the client time; "
              f"APP_ENV=production, CALL_HOURS={CALL_HOURS}, CALL_MIN_GAP_MINUTES={gap}"
              + (" (default)" if args.min_gap_minutes is None else ""))
        print(f"  data    : county {COUNTY[0]}: {info['institutions']} institutions, {info['teams']} teams, "
              f"{info['residents']:,} residents; round {info['month']}: {info['primaries']:,} primaries, "
              f"{info['backups']:,} backups; {args.callers} callers"
              + (f" (institutions raised from {DEFAULT_INSTITUTIONS} to {args.institutions}: one primary for each of "
                 f"the ~{claims} claims expected)" if sized_up else ""))
        print(f"  queue   : with a {gap}-min gap no retry comes due during the run: every claim is an untried "
              f"primary or a backup activated by a vacant or suspended number")
        print(f"  set-up  : {setup_s:.1f} s (" + ", ".join(f"{l.split(' ...')[0][:40]} {s:.1f} s" for l, s in info['steps'])
              + ")")
        print(f"  run     : {elapsed:.1f} s, {total.requests:,} caller requests ({total.requests / elapsed:.0f}/s) "
              f"incl. warm-up, {total.cases_done:,} cases ({total.finish_ok:,} interviews completed, "
              f"{total.attempt_ok:,} other outcomes: "
              f"{', '.join(f'{k} {v}' for k, v in sorted(total.outcomes.items(), key=lambda kv: -kv[1]) if k != 'complete')})")
        cpu = meter.result
        if cpu and total.requests:
            per = 1000.0 / (total.requests + floor.requests)
            print(f"  CPU     : {cpu['busy']:.0f} of {cpu['available']:.0f} CPU-s busy during the load "
                  f"({cpu['busy'] / cpu['available']:.0%}): gunicorn workers {cpu['workers']:.1f} s "
                  f"({cpu['workers'] * per:.1f} ms per request), PostgreSQL backends {cpu['pg']:.1f} s "
                  f"({cpu['pg'] * per:.1f} ms per request), simulated callers {cpu['self']:.1f} s, "
                  f"other processes on the machine {cpu['other']:.1f} s")
            if cpu["other"] > OTHER_CPU_WARN * cpu["available"]:
                print(f"  WARNING : other processes took {cpu['other'] / cpu['available']:.0%} of the CPUs during the "
                      "load: the server times below are inflated by them; run again on a quiet machine")
        print()

        floor_rows = floor.samples.get("floor GET / (signed out)", [])
        floor_p95 = pct([s for s, _ in floor_rows], 95) if floor_rows else None
        rows = []
        overall: list[tuple[float, float]] = []
        for kind in KINDS:
            samples = total.samples.get(kind, [])
            overall += samples
            if samples:
                rows.append(stat_row(kind, samples, floor_p95))
        rows.append(stat_row("overall (caller requests)", overall, floor_p95))
        for kind in ("floor GET / (signed out)", f"floor GET {STATIC_PATH}"):
            if floor.samples.get(kind):
                rows.append(stat_row(kind + ", under load", floor.samples[kind], floor_p95))
        for kind in ("floor GET / (signed out)", f"floor GET {STATIC_PATH}"):
            if idle.tally.samples.get(kind):
                rows.append(stat_row(kind + ", idle", idle.tally.samples[kind], floor_p95))
        for kind in SIGN_IN_KINDS:
            if total.samples.get(kind):
                rows.append(stat_row(kind + " (before the load)", total.samples[kind], floor_p95))
        print_table(f"RESULTS (ms; {args.callers} concurrent callers, warm-up excluded)", HEAD, rows,
                    set(range(1, len(HEAD))))
        print("srv = Server-Timing app;dur (inside Flask); cli = wall time at the simulated caller (gunicorn's "
              "queue included);\nfloor = GET / signed out (sign-in page: session, CSRF token, template; no "
              f"database), probed every {args.floor_interval} s by one more client\nwhile the callers work "
              f"(under load) and {args.idle_floor} times on the idle server just before (idle); p95/floor = srv p95 "
              "/ floor p95 under load.\nhome = GET /calls/ after each attempt or finish; interview = GET "
              "/calls/response/<id>, the redirect after start to the first question.")
        overall_p95 = pct([s for s, _ in overall], 95)
        met = overall_p95 <= TARGET_P95_MS
        over = [kind for kind in KINDS if total.samples.get(kind)
                and pct([s for s, _ in total.samples[kind]], 95) > TARGET_P95_MS]
        print(f"\n目标 p95 ≤ {TARGET_P95_MS:.0f} ms：{'达到' if met else '未达到'}  "
              f"(overall server p95 {overall_p95:.1f} ms over {len(overall):,} caller requests"
              + (f"; kinds over {TARGET_P95_MS:.0f} ms at p95: {', '.join(over)}" if over else "") + ")")

        print("\nDATABASE CHECKS")
        failed_checks = 0
        try:
            for label, ok in db_checks(url, total):
                print(f"  {'ok  ' if ok else 'FAIL'} {label}")
                failed_checks += not ok
        except Exception as exc:  # noqa: BLE001
            print(f"  FAIL could not check the database: {type(exc).__name__}: {exc}")
            failed_checks += 1

        print(f"\nERRORS: {len(errors)}" + (f" (requests without Server-Timing: {total.missing_timing})"
                                            if total.missing_timing else ""))
        for e in errors[:8]:
            print("  " + e)
        if total.dry:
            print("  the queue ran dry: raise --institutions (10 primaries each) or lower the cases per caller")
        if gunicorn_log:
            lines = gunicorn_log.splitlines()
            print(f"gunicorn log ({log_path}, {len(lines)} lines, last 10):")
            for line in lines[-10:]:
                print("  " + line[:200])
        load = os.getloadavg()
        print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        if errors or total.missing_timing:
            print(f"FAILED: {len(errors)} request error(s)")
            exit_code = 1
        if failed_checks:
            print(f"FAILED: {failed_checks} database check(s)")
            exit_code = 1
        return exit_code
    finally:
        stop_server(server)
        if created and not args.keep:
            try:
                with pg_admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)'))
            except Exception as exc:  # noqa: BLE001
                print(f"could not drop database {args.db_name}: {exc}")
        elif created:
            print(f"kept database: {url}")
        pg_admin.dispose()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the finally blocks have stopped gunicorn and dropped the database
        print("\ninterrupted")
        sys.exit(130)
