"""Caller load benchmark: simulated callers working one county's queue at once (30, then 100)
against the application under gunicorn on PostgreSQL, each figure printed beside the same
run's *floor*: the server time of the cheapest request through the same stack (GET of the
sign-in page ``/`` while signed out; a static file is shown too), measured while the callers
are working.

    .venv/bin/python bench/callers.py                              # 30, then 100 callers x 10 cases each
    .venv/bin/python bench/callers.py --callers 5 --cases-per-caller 3   # a quick check
    .venv/bin/python bench/callers.py --seconds 60                 # each phase: as many cases as fit in 60 s
    .venv/bin/python bench/callers.py --workers 3 --threads 4      # another gunicorn set-up
    .venv/bin/python bench/callers.py --keep                       # keep the database afterwards

Target (2-core machine; reported, not asserted): server time per caller request <= 50 ms at
the 95th percentile, with 30 and with 100 concurrent callers; 0 request errors; 0 cases held
by two callers at once.

Server time is the ``Server-Timing: app;dur=<ms>`` header every response carries (the time
inside Flask for that request: from before_request to after_request, so neither gunicorn's
queue nor the socket); client time is the wall time the simulated caller waited for the whole
response, queueing in gunicorn's backlog included (with 100 callers on 3 sync workers most of
the client time is that queue).

Set-up (timed, printed, not a figure): a fresh PostgreSQL database ``survey_bench_callers``
(dropped first if it exists, and at the end unless --keep), ``flask --app wsgi db upgrade``,
one county of --institutions institutions with 4-8 teams each (app.demo.synth.make_units),
--residents residents written by SQL (bench/draw.py's generator: ~90 % eligible, 2/3 with a
key-population label), VACUUM ANALYZE, the draw of the current month (Asia/Shanghai) by
``app.draws.services.draw_month_and_commit`` (10 primaries + 10 backups per institution), and
as many caller accounts of the county as the largest phase needs. The phases (``--callers
30,100``) run one after the other on that one database and one server: the second phase
works the queue the first left (a mid-month database), with fresh figures, floor and CPU
accounting; the database checks are made after each phase, over everything done so far.

The server: ``gunicorn --workers <CPUs + 1> --timeout 300 wsgi:app`` (the README's production
command; sync workers, --workers/--threads to change it) on a free port of 127.0.0.1 with the
environment a deployment would have (APP_ENV=production, secrets, DATABASE_URL) and
CALL_HOURS=00:00-23:59 so the queue is open at any hour. CALL_MIN_GAP_MINUTES keeps its
default (120): no retry of a case comes due during a run, so every claim is an untried
primary, a backup activated by a final outcome that replaces, a case released by a caller of
an earlier phase, or the caller's own case given back by an undo. The county is sized (10
primaries per institution, one for every claim expected over all phases plus 15 %) so the
queue never runs dry; running dry is an error.

Each caller is a thread with its own cookie session over ``http.client`` (redirects followed
by hand, so every hop is timed and checked). It signs in (GET and POST ``/``, GET ``/calls/``;
not in the figures), then works the "record-and-next" flow:

* POST ``/calls/next`` -> redirect to ``/calls/case/<id>`` -> GET it: the dialling panel
  (``<form id="panel" data-case="<id>">``, the hidden attempt ``number``, the start button).
  Only the first case of a phase (and a case given back by an undo) is opened this way.
* a non-contact outcome (--no-contact-share of the cases; see NON_CONTACT; the outcomes that
  need one send a note, a callback sends a date and time this month): ONE POST
  ``/calls/case/<id>/attempt`` whose 200 answer is the NEXT case's panel with the confirmation
  ``id="recorded"``. Of those, --undo-share are undone at once (POST the confirmation's
  ``/calls/attempt/<aid>/undo`` -> redirect to ``/calls/case/<id>`` -> GET it) and recorded
  again with another outcome.
* an interview: POST ``/calls/case/<id>/start`` -> redirect straight to the first
  ``/calls/response/<rid>/q/<code>`` (an intermediate ``/calls/response/<rid>`` hop is
  followed too), then per question GET it and POST the answer -> redirect to the next
  question or the review. On a question page that offers ``finish`` the last answer is sent
  with ``finish=1`` (the "answer + finish" kind) and the 200 answer is the next panel;
  --review-share of the interviews take the review path instead (GET review, POST
  ``/calls/response/<rid>/finish`` -> next panel). --interrupt-share of the interviews are
  interrupted after 3-4 answers (POST ``/calls/response/<rid>/interrupt`` with a callback ->
  next panel; a start on such a case later resumes the same response) and --breakoff-share
  break off after 2-5 answers (POST finish with ``breakoff=1`` -> next panel).
* every ~--day-every cases (randomised), GET ``/calls/day.json`` (the home page's poll). If the
  server answers 404 (not there yet) the kind is dropped for the rest of the run, not an error.
* after its last case the caller releases the case the last record handed it (POST
  ``/calls/case/<id>/release`` -> ``/calls/``, GET ``/calls/``).

No think time. Every status code and redirect target is checked (302 and 303 are both taken
as a redirect); a record whose answer is a redirect to ``/calls/`` (nothing more to claim) is
the queue running dry, an error. The first --warmup-cases cases of every caller are not in the
figures (the requests are made and checked all the same). A separate floor thread alternates
GET ``/`` (signed out) and GET of a static file every --floor-interval seconds while the
callers work; the same two requests are also timed on the idle server just before each phase.

Afterwards the database is checked: live attempts = successful attempt, finish (complete or
break-off), answer + finish and interrupt requests minus undone ones, and = sum of
cases.attempt_count; none left open (outcome NULL); responses by status as the callers left
them; no case with attempts by two callers; no lease left; backups activated = cases marked
replaced. From the callers' own log: no case held by two callers at once (a claim by one
caller that falls wholly inside another caller's hold of the same case). The script exits
non-zero on any request error, failed check or failed set-up.

With no think time the server is saturated, and on a small machine a request's server time is
mostly its CPU time times the number of requests sharing the CPUs: each phase therefore also
prints the CPU seconds used by the gunicorn workers, the PostgreSQL backends, the simulated
callers and everything else on the machine (from /proc), and warns when other processes took
more than 10 % of the CPUs (the figures are then inflated by them).
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
USER_AGENT = "bench-callers/2 (python http.client)"
STATIC_PATH = "/static/app.css"
CALL_HOURS = "00:00-23:59"
# the README's production command: gunicorn --workers $(( $(nproc) + 1 )) --timeout 300 wsgi:app
# (sync workers; the requests are CPU-bound, so more workers than CPUs + 1 only queue inside)
DEFAULT_WORKERS = (os.cpu_count() or 1) + 1
GUNICORN_TIMEOUT = 300
DEFAULT_CALLERS = "30,100"
DEFAULT_INSTITUTIONS = 40
SIZE_MARGIN = 1.15  # primaries per expected claim
SECONDS_CLAIM_RATE = 20  # claims per second to size the county for --seconds (one POST per non-contact case)
OTHER_CPU_WARN = 0.10  # other processes used more than this share of the CPUs: figures inflated
REDIRECT = (302, 303)

# request kinds, roughly in the order a case goes through them
KINDS = ("next", "case", "attempt", "undo", "start", "interview", "question GET", "answer POST", "answer + finish",
         "review", "finish", "breakoff", "interrupt", "day.json", "release", "home")
SIGN_IN_KINDS = ("sign-in GET", "sign-in POST", "sign-in home")

# what a case that is not interviewed ends with this time (weights): vacant, suspended,
# wrong_person, incapable, deceased and moved are final and activate a backup, refusal is
# final, callback needs a time, the rest are retried after the gap
NON_CONTACT = (("no_answer", 34), ("busy", 12), ("powered_off", 12), ("not_available", 6), ("vacant", 8),
               ("suspended", 4), ("refusal", 9), ("callback", 6), ("wrong_person", 4), ("incapable", 2),
               ("deceased", 1), ("moved", 2))
NOTE_NEEDED = {"wrong_person": "对方说打错了，不认识此人。", "incapable": "老人听力不好，无法交流。",
               "deceased": "家属告知本人已去世。", "moved": "家属说已搬到外地居住。"}

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PANEL_RE = re.compile(r'<form\b[^>]*\bid="panel"[^>]*>')
DATA_CASE_RE = re.compile(r'\bdata-case="(\d+)"')
NUMBER_INPUT_RE = re.compile(r'<input\b[^>]*\bname="number"[^>]*>')
VALUE_RE = re.compile(r'\bvalue="(\d+)"')
UNDO_RE = re.compile(r'action="(/calls/attempt/(\d+)/undo)"')
RECORDED_RE = re.compile(r'<div\b[^>]*\bid="recorded"[^>]*>([^<]*)<')
FINISH_FIELD_RE = re.compile(r'\bname="finish"')
FLASH_RE = re.compile(r'class="flash flash-(\w+)"[^>]*>([^<]*)<')
TIMING_RE = re.compile(r"\bapp;dur=([0-9.]+)")
CASE_RE = re.compile(r"^/calls/case/(\d+)$")
START_TO_RE = re.compile(r"^/calls/response/(\d+)(/q/\w+)?$")
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
    sent: float  # time.monotonic() before the request was sent
    received: float  # time.monotonic() once the whole response was read


class Client:
    def __init__(self, host: str, port: int, timeout: float = 120.0) -> None:
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
        sent = time.monotonic()
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        client_ms = (time.perf_counter() - t0) * 1000.0
        received = time.monotonic()
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
        return Reply(resp.status, location, text, float(timing.group(1)) if timing else None, client_ms,
                     sent, received)


def flashes(body: str) -> str:
    return "; ".join(f"{cat}: {msg.strip()}" for cat, msg in FLASH_RE.findall(body)) or "-"


@dataclass
class Panel:
    """The dialling panel of the case the caller holds."""

    case_id: int
    number: str
    body: str


def parse_panel(body: str) -> Panel | None:
    """The panel of a case the caller holds: ``<form id="panel" data-case=..>``, the hidden
    attempt number after it and the start button; None when the page is not one."""
    tag = PANEL_RE.search(body)
    if tag is None:
        return None
    case = DATA_CASE_RE.search(tag.group(0))
    number_input = NUMBER_INPUT_RE.search(body, tag.start())
    number = VALUE_RE.search(number_input.group(0)) if number_input else None
    if case is None or number is None or 'id="start"' not in body:
        return None
    return Panel(int(case.group(1)), number.group(1), body)


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
    claims: int = 0
    # (case id, caller, claim sent, claim received, release sent, release received): one hold
    holds: list[tuple[int, str, float, float, float, float]] = field(default_factory=list)
    attempt_ok: int = 0  # POST attempt answered with the next panel (or /calls/)
    undone: int = 0
    start_ok: int = 0
    resumed: int = 0  # starts that continued a response interrupted earlier
    complete_ok: int = 0  # interviews finished (answer + finish, or review + finish)
    by_answer_finish: int = 0
    finish_early: int = 0  # question pages offering finish=1 that were not the interview's last
    breakoff_ok: int = 0
    interrupt_ok: int = 0
    responses: dict[int, str] = field(default_factory=dict)  # response id -> what the caller left it as
    outcomes: dict[str, int] = field(default_factory=dict)
    cases_done: int = 0
    day_json: int = 0
    dry: bool = False

    def add(self, kind: str, reply: Reply, record: bool) -> None:
        self.requests += 1
        if reply.server_ms is None:
            self.missing_timing += 1
            return
        if record:
            self.samples.setdefault(kind, []).append((reply.server_ms, reply.client_ms))

    @property
    def closes(self) -> int:
        """Successful requests that each ended one attempt."""
        return self.attempt_ok + self.complete_ok + self.breakoff_ok + self.interrupt_ok


class Caller:
    day_json_missing = threading.Event()  # GET /calls/day.json answered 404: the kind is dropped

    def __init__(self, index: int, username: str, host: str, port: int, args, stop: threading.Event) -> None:
        self.index = index
        self.username = username
        self.client = Client(host, port)
        self.args = args
        self.stop = stop
        self.rng = random.Random(args.seed * 1000 + index + 7919 * args.phase)
        self.tally = Tally()
        self.recording = False
        self.panel: Panel | None = None
        self.hold: tuple[int, float, float] | None = None  # case id, claim sent, claim received
        self.day_due = self.rng.randint(1, max(1, args.day_every))

    # -- one request, checked -------------------------------------------------------------------

    def call(self, kind: str, method: str, path: str, form: dict | None = None, *, expect,
             to: re.Pattern | str | None = None, relabel=None) -> Reply:
        """One request, timed under ``kind`` (or under ``relabel(reply)`` when the kind depends
        on the answer), and checked: status in ``expect``, a redirect's target matching ``to``."""
        if form is not None:
            form = {**form, "csrf_token": self.client.csrf}
        reply = self.client.request(method, path, form)
        self.tally.add(relabel(reply) if relabel else kind, reply, self.recording)
        expected = (expect,) if isinstance(expect, int) else tuple(expect)
        ok = reply.status in expected
        if ok and to is not None and reply.status in REDIRECT:
            ok = reply.location is not None and (
                reply.location == to if isinstance(to, str) else to.match(reply.location) is not None
            )
        if not ok:
            raise RequestFailed(self.describe(kind, method, path, reply, expected, to))
        return reply

    def describe(self, kind, method, path, reply: Reply, expected=(), to=None) -> str:
        detail = flashes(reply.body)
        if reply.status in REDIRECT and reply.location:
            try:  # the message the browser would show, from the page redirected to (not timed)
                detail = flashes(self.client.request("GET", reply.location).body)
            except (OSError, http.client.HTTPException):
                pass
        want = "/".join(map(str, expected))
        if to is not None:
            want += " " + (to if isinstance(to, str) else to.pattern)
        return (f"{self.username} {kind}: {method} {path} -> {reply.status}"
                f"{' ' + reply.location if reply.location else ''} (expected {want}); {detail}")

    # -- holds: which case this caller holds, from when to when (the client's view) --------------

    def claimed(self, case_id: int, reply: Reply) -> None:
        if self.hold is not None and self.hold[0] != case_id:
            self.released(reply)
        if self.hold is None:
            self.hold = (case_id, reply.sent, reply.received)
            self.tally.claims += 1

    def released(self, reply: Reply) -> None:
        if self.hold is not None:
            case_id, sent, received = self.hold
            self.tally.holds.append((case_id, self.username, sent, received, reply.sent, reply.received))
            self.hold = None

    def next_panel(self, kind: str, path: str, reply: Reply, *, recorded: bool = False) -> Panel:
        """After a request that ended the held case: the 200 answer is the next case's panel; a
        redirect to /calls/ means nothing more could be claimed (the queue ran dry)."""
        self.released(reply)
        self.panel = None
        if reply.status in REDIRECT:
            self.tally.dry = True
            raise RequestFailed(f"{self.username} {kind}: POST {path} -> {reply.status} {reply.location}: "
                                f"nothing more to claim, the queue ran dry? {self.describe(kind, 'GET', path, reply)}")
        panel = parse_panel(reply.body)
        if panel is None:
            raise RequestFailed(f"{self.username} {kind}: POST {path} -> 200 without the next case's panel "
                                f"(form id=panel data-case, number, start button); {flashes(reply.body)}")
        if recorded and RECORDED_RE.search(reply.body) is None:
            raise RequestFailed(f"{self.username} {kind}: POST {path} -> 200: the next panel has no "
                                f"confirmation id=\"recorded\"")
        self.claimed(panel.case_id, reply)
        self.panel = panel
        return panel

    # -- the work -------------------------------------------------------------------------------

    def sign_in(self) -> None:
        self.recording = True
        self.call("sign-in GET", "GET", "/", expect=200)
        self.call("sign-in POST", "POST", "/", {"username": self.username, "password": PASSWORD},
                  expect=REDIRECT, to="/calls/")
        self.call("sign-in home", "GET", "/calls/", expect=200)
        self.recording = False

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
                if self.panel is None:
                    self.open_next()
                self.one_case()
                n += 1
                self.maybe_day_json()
            self.end_of_shift()
        except RequestFailed as exc:
            self.tally.errors.append(str(exc))
        except (OSError, http.client.HTTPException) as exc:
            self.tally.errors.append(f"{self.username}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001  (a bug here must not pass as a clean run)
            self.tally.errors.append(f"{self.username}: unexpected {type(exc).__name__}: {exc}")
        finally:
            self.client.close()

    def open_next(self) -> None:
        """下一个 from the home page: POST /calls/next, then the case's panel."""
        reply = self.call("next", "POST", "/calls/next", {}, expect=REDIRECT)
        match = CASE_RE.match(reply.location or "")
        if match is None:
            self.tally.dry = True
            raise RequestFailed(f"{self.username} next: POST /calls/next -> {reply.status} {reply.location} "
                                f"(expected /calls/case/<id>): the queue ran dry? "
                                f"{self.describe('next', 'POST', '/calls/next', reply)}")
        self.open_case(int(match.group(1)), reply)

    def open_case(self, case_id: int, claim: Reply) -> None:
        page = self.call("case", "GET", f"/calls/case/{case_id}", expect=200)
        panel = parse_panel(page.body)
        if panel is None or panel.case_id != case_id:
            raise RequestFailed(f"{self.username} case: GET /calls/case/{case_id}: no panel of this case "
                                f"(form id=panel data-case, number, start button: not holding it?); "
                                f"{flashes(page.body)}")
        self.claimed(case_id, claim)
        self.panel = panel

    def one_case(self) -> None:
        panel = self.panel
        if self.rng.random() < self.args.no_contact_share:
            outcome = self.pick_outcome()
            reply = self.record(panel, outcome)
            if self.rng.random() < self.args.undo_share:
                self.undo(panel, reply)
                outcome = self.pick_outcome(other_than=outcome)
                self.record(self.panel, outcome)
        else:
            outcome = self.interview(panel)
        self.tally.outcomes[outcome] = self.tally.outcomes.get(outcome, 0) + 1
        self.tally.cases_done += 1

    def pick_outcome(self, other_than: str | None = None) -> str:
        while True:
            outcome = self.rng.choices([o for o, _ in NON_CONTACT], [w for _, w in NON_CONTACT])[0]
            if outcome == "callback" and callback_time() is None:
                outcome = "no_answer"  # no callback time left this month
            if outcome != other_than:
                return outcome

    def record(self, panel: Panel, outcome: str) -> Reply:
        """Record-and-next: one POST ends this case and answers with the next case's panel."""
        form = {"outcome": outcome, "number": panel.number, "note": NOTE_NEEDED.get(outcome, ""),
                "callback_date": "", "callback_time": ""}
        if outcome == "callback":
            when = callback_time()
            form.update(callback_date=when.strftime("%Y-%m-%d"), callback_time=when.strftime("%H:%M"))
        path = f"/calls/case/{panel.case_id}/attempt"
        reply = self.call("attempt", "POST", path, form, expect=(200, *REDIRECT), to="/calls/")
        self.tally.attempt_ok += 1
        self.next_panel("attempt", path, reply, recorded=True)
        return reply

    def undo(self, undone: Panel, reply: Reply) -> None:
        """Undo the outcome just recorded (the confirmation's form), then the undone case's panel."""
        match = UNDO_RE.search(reply.body)
        if match is None:
            raise RequestFailed(f"{self.username} undo: the confirmation after recording case {undone.case_id} "
                                f"offers no /calls/attempt/<id>/undo form")
        back = self.call("undo", "POST", match.group(1), {}, expect=REDIRECT, to=f"/calls/case/{undone.case_id}")
        self.tally.undone += 1
        self.released(back)  # the next case the record handed out goes back
        self.panel = None
        self.open_case(undone.case_id, back)
        if self.panel.number != undone.number:
            raise RequestFailed(f"{self.username} undo: case {undone.case_id} shows attempt number "
                                f"{self.panel.number} after the undo, {undone.number} before the record")

    def interview(self, panel: Panel) -> str:
        """Start, answer, and end the interview; returns the case's outcome this time."""
        path = f"/calls/case/{panel.case_id}/start"
        reply = self.call("start", "POST", path, {"number": panel.number}, expect=REDIRECT, to=START_TO_RE)
        self.tally.start_ok += 1
        rid = int(START_TO_RE.match(reply.location).group(1))
        if rid in self.tally.responses:
            self.tally.resumed += 1
        self.tally.responses[rid] = "in_progress"
        if QUESTION_RE.match(reply.location) is None:  # the former intermediate hop
            reply = self.call("interview", "GET", reply.location, expect=REDIRECT, to=QUESTION_RE)
        plan = self.answers()
        roll = self.rng.random()
        fate, stop_after = "complete", None
        if roll < self.args.interrupt_share:
            fate, stop_after = "interrupt", self.rng.randint(3, 4)
        elif roll < self.args.interrupt_share + self.args.breakoff_share:
            fate, stop_after = "breakoff", self.rng.randint(2, 5)
        use_finish = self.rng.random() >= self.args.review_share
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
            page = self.call("question GET", "GET", location, expect=200)
            if stop_after is not None and asked >= stop_after:
                return self.stop_interview(rid, fate)
            form = dict(plan[code])
            offered = FINISH_FIELD_RE.search(page.body) is not None
            if use_finish and offered:  # the browser sends the hidden finish=1 of the last question
                form["finish"] = "1"
            # "answer + finish" = the answer that finished the interview (200 next panel, or /calls/)
            reply = self.call("answer POST", "POST", location, form, expect=(200, *REDIRECT),
                              to=re.compile(rf"^/calls/response/{rid}/(q/\w+|review)$|^/calls/$"),
                              relabel=lambda r: ("answer + finish" if r.status == 200 or r.location == "/calls/"
                                                 else "answer POST"))
            asked += 1
            kind = "answer + finish" if "finish" in form else "answer POST"
            if offered and reply.status in REDIRECT and QUESTION_RE.match(reply.location or ""):
                self.tally.finish_early += 1  # finish offered on a question that was not the last
            if reply.status == 200 or reply.location == "/calls/":
                if "finish" not in form:
                    raise RequestFailed(f"{self.username} {kind}: POST {location} -> {reply.status} "
                                        f"{reply.location or ''} without finish=1; {flashes(reply.body)}")
                self.finished(rid, "complete")
                self.tally.by_answer_finish += 1
                self.next_panel(kind, location, reply)
                return "complete"
            location = reply.location
            if asked > 20:
                raise RequestFailed(f"{self.username}: more than 20 questions in one interview")
        if stop_after is not None:  # the path ended before the planned interruption
            fate = "complete"
        review = self.call("review", "GET", location, expect=200)
        if 'id="submit"' not in review.body:
            raise RequestFailed(f"{self.username} review: {location} shows no submit button "
                                f"(questionnaire incomplete?); {flashes(review.body)}")
        path = f"/calls/response/{rid}/finish"
        reply = self.call("finish", "POST", path, {}, expect=(200, *REDIRECT), to="/calls/")
        self.finished(rid, "complete")
        self.next_panel("finish", path, reply)
        return "complete"

    def stop_interview(self, rid: int, fate: str) -> str:
        if fate == "interrupt":
            when = callback_time()
            if when is not None:
                path = f"/calls/response/{rid}/interrupt"
                form = {"callback_date": when.strftime("%Y-%m-%d"), "callback_time": when.strftime("%H:%M"),
                        "note": self.rng.choice(["", "对方有事，晚点再聊。"])}
                reply = self.call("interrupt", "POST", path, form, expect=(200, *REDIRECT), to="/calls/")
                self.tally.interrupt_ok += 1
                self.tally.responses[rid] = "interrupted"
                self.next_panel("interrupt", path, reply)
                return "interrupted"
        path = f"/calls/response/{rid}/finish"  # break-off (or an interruption with no callback time left)
        reply = self.call("breakoff", "POST", path, {"breakoff": "1"}, expect=(200, *REDIRECT), to="/calls/")
        self.tally.breakoff_ok += 1
        self.tally.responses[rid] = "breakoff"
        self.next_panel("breakoff", path, reply)
        return "breakoff"

    def finished(self, rid: int, state: str) -> None:
        self.tally.complete_ok += 1
        self.tally.responses[rid] = state

    def maybe_day_json(self) -> None:
        self.day_due -= 1
        if self.day_due > 0 or Caller.day_json_missing.is_set():
            return
        self.day_due = self.rng.randint(max(1, self.args.day_every // 2), max(1, self.args.day_every * 3 // 2))
        reply = self.client.request("GET", "/calls/day.json")
        if reply.status == 404:
            Caller.day_json_missing.set()  # not in this version of the app: dropped, not an error
            self.tally.requests += 1
            return
        self.tally.add("day.json", reply, self.recording)
        if reply.status != 200:
            raise RequestFailed(self.describe("day.json", "GET", "/calls/day.json", reply, (200,)))
        self.tally.day_json += 1

    def end_of_shift(self) -> None:
        """Put back the case the last record handed out, and look at the home page."""
        if self.panel is not None:
            path = f"/calls/case/{self.panel.case_id}/release"
            reply = self.call("release", "POST", path, {}, expect=REDIRECT, to="/calls/")
            self.released(reply)
            self.panel = None
        self.call("home", "GET", "/calls/", expect=200)

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
            names = [f"bench_caller_{k + 1:03d}" for k in range(max(args.callers))]
            for k, name in enumerate(names, start=1):
                # simulated callers sign in and work at once: no forced password change
                create_user(db.session, name, "caller", PASSWORD, COUNTY[0], real_name=f"压测调查员{k:03d}",
                            must_change_password=False)
            db.session.commit()
            return names

        info["users"] = step(f"{max(args.callers)} caller accounts", users)

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
        out.holds += t.holds
        out.responses.update(t.responses)
        out.dry = out.dry or t.dry
        for name in ("missing_timing", "requests", "claims", "attempt_ok", "undone", "start_ok", "resumed",
                     "complete_ok", "by_answer_finish", "finish_early", "breakoff_ok", "interrupt_ok", "cases_done", "day_json"):
            setattr(out, name, getattr(out, name) + getattr(t, name))
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


def held_at_once(holds: list[tuple[int, str, float, float, float, float]]) -> tuple[int, int, list[str]]:
    """From the callers' log: (cases held by two callers at once, cases held by two or more
    callers one after the other, samples). Two holds overlap for sure when one caller's claim
    (sent .. received) lies wholly inside another's hold (claim received .. release sent)."""
    by_case: dict[int, list] = {}
    for h in holds:
        by_case.setdefault(h[0], []).append(h)
    at_once: set[int] = set()
    samples: list[str] = []
    several = 0
    for case_id, rows in by_case.items():
        if len({r[1] for r in rows}) > 1:
            several += 1
        for a in rows:
            for b in rows:
                if a[1] != b[1] and b[2] > a[3] and b[3] < a[4]:
                    if case_id not in at_once and len(samples) < 5:
                        samples.append(f"case {case_id}: {b[1]} claimed it while {a[1]} held it")
                    at_once.add(case_id)
    return len(at_once), several, samples


def db_checks(url: str, total: Tally) -> list[tuple[str, bool]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            q = lambda sql: conn.execute(text(sql)).scalar()  # noqa: E731
            columns = set(conn.execute(text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'attempts'")).scalars())
            undo_columns = sorted(c for c in columns if "undo" in c or "undone" in c)
            # an undone attempt is either deleted or marked (a NULL/false column is a live one)
            live = " AND ".join(f"({c} IS NULL OR {c}::text IN ('false', 'f', '0'))" for c in undo_columns) or "true"
            rows = q("SELECT count(*) FROM attempts")
            attempts = q(f"SELECT count(*) FROM attempts WHERE {live}")
            open_attempts = q(f"SELECT count(*) FROM attempts WHERE {live} AND outcome IS NULL")
            statuses = dict(conn.execute(text("SELECT status, count(*) FROM responses GROUP BY status")).all())
            two_callers = q(f"SELECT count(*) FROM (SELECT case_id FROM attempts WHERE {live} GROUP BY case_id "
                            "HAVING count(DISTINCT caller_id) > 1) x")
            leased = q("SELECT count(*) FROM cases WHERE leased_by_id IS NOT NULL")
            count_sum = q("SELECT coalesce(sum(attempt_count), 0) FROM cases")
            activated = q("SELECT count(*) FROM cases WHERE kind = 'backup' AND status <> 'reserve'")
            replaced = q("SELECT count(*) FROM cases WHERE replacement_state = 'replaced'")
    finally:
        engine.dispose()
    want = total.closes - total.undone
    left = {}
    for state in total.responses.values():
        left[state] = left.get(state, 0) + 1
    completes = statuses.get("complete", 0)
    stopped = statuses.get("partial", 0) + statuses.get("breakoff", 0)
    others = sum(v for k, v in statuses.items() if k not in ("complete", "partial", "breakoff"))
    at_once, several, samples = held_at_once(total.holds)
    undo_how = (f"marked in attempts.{', '.join(undo_columns)}; {rows:,} rows in all" if undo_columns
                else "deleted")
    return [
        (f"live attempts in the database {attempts:,} = attempt {total.attempt_ok:,} + completed interviews "
         f"{total.complete_ok:,} + break-offs {total.breakoff_ok:,} + interrupts {total.interrupt_ok:,} "
         f"- undone {total.undone:,} ({want:,}; undone attempts {undo_how})", attempts == want),
        (f"attempts left open (outcome NULL): {open_attempts}", open_attempts == 0),
        (f"sum(cases.attempt_count) {count_sum:,} = live attempts {attempts:,}", count_sum == attempts),
        (f"responses: complete {completes:,} = interviews completed {left.get('complete', 0):,}; partial + "
         f"breakoff {stopped:,} = break-offs {left.get('breakoff', 0):,}; other {others:,} = left interrupted "
         f"{left.get('interrupted', 0):,} (by status: "
         + ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items())) + f"; {total.resumed} resumed)",
         completes == left.get("complete", 0) and stopped == left.get("breakoff", 0)
         and others == left.get("interrupted", 0) and left.get("in_progress", 0) == 0),
        (f"cases with attempts by two callers: {two_callers}", two_callers == 0),
        (f"cases held by two callers at once (callers' log, {len(total.holds):,} holds of "
         f"{len({h[0] for h in total.holds}):,} cases; {several} cases held by two callers one after the other): "
         f"{at_once}" + (f" ({'; '.join(samples)})" if samples else ""), at_once == 0),
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
        start.wait(timeout=600)
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


def expected_claims(args, callers: int) -> int:
    """Cases one phase takes from the queue: every case worked, and the one each caller puts
    back at the end (it stays untried, but sizing does not count on it)."""
    per = args.warmup_cases + 1 + (args.cases_per_caller if args.seconds is None else 0)
    claims = callers * per
    if args.seconds is not None:
        claims += math.ceil(args.seconds * SECONDS_CLAIM_RATE)
    return claims


FLOOR_KIND = "floor GET / (signed out)"


def run_phase(args, port: int, server, pg_admin, url: str, users: list[str], work: str, log_path: Path,
              cumulative: list[Tally]) -> dict:
    """One phase (one number of callers): idle floor, load, its report and the database checks."""
    idle = FloorProbe("127.0.0.1", port)
    idle.run_n(args.idle_floor)
    print(f"\n[load] phase {args.phase + 1}: {len(users)} callers, {work}, no think time", flush=True)
    meter = CpuMeter(server.pid, pg_admin, args.db_name)
    total, floor, elapsed = run_load(args, "127.0.0.1", port, users, meter)
    cumulative.append(total)
    errors = total.errors + floor.errors + idle.tally.errors
    n = len(users)

    print()
    print(f"PHASE {args.phase + 1}: {n} CALLERS")
    others = ", ".join(f"{k} {v}" for k, v in sorted(total.outcomes.items(), key=lambda kv: -kv[1])
                       if k not in ("complete", "interrupted", "breakoff"))
    print(f"  run     : {elapsed:.1f} s, {total.requests:,} caller requests "
          f"({total.requests / max(elapsed, 1e-9):.0f}/s) incl. warm-up, {total.cases_done:,} cases: "
          f"{total.complete_ok:,} interviews completed ({total.by_answer_finish:,} by answer + finish, the rest by "
          f"review + submit), {total.breakoff_ok:,} break-offs, {total.interrupt_ok:,} interrupted, "
          f"{total.attempt_ok:,} non-contact records ({total.undone:,} undone and recorded again: {others}); "
          f"{total.claims:,} claims, {total.day_json:,} day.json polls"
          + (f"; NOTE: {total.finish_early:,} question pages that were not the last offered finish=1 (the "
             "server moved on to the next question)" if total.finish_early else "")
          + (" (day.json answered 404: dropped)" if Caller.day_json_missing.is_set() else ""))
    cpu = meter.result
    cpu_line = "-"
    if cpu and total.requests:
        per = 1000.0 / (total.requests + floor.requests)
        cpu_line = (f"{cpu['busy']:.0f} of {cpu['available']:.0f} CPU-s busy during the load "
                    f"({cpu['busy'] / cpu['available']:.0%}): gunicorn workers {cpu['workers']:.1f} s "
                    f"({cpu['workers'] * per:.1f} ms per request), PostgreSQL backends {cpu['pg']:.1f} s "
                    f"({cpu['pg'] * per:.1f} ms per request), simulated callers {cpu['self']:.1f} s, "
                    f"other processes on the machine {cpu['other']:.1f} s")
        print(f"  CPU     : {cpu_line}")
        if cpu["other"] > OTHER_CPU_WARN * cpu["available"]:
            print(f"  WARNING : other processes took {cpu['other'] / cpu['available']:.0%} of the CPUs during the "
                  "load: the server times below are inflated by them; run again on a quiet machine")
    print()

    floor_rows = floor.samples.get(FLOOR_KIND, [])
    floor_p95 = pct([s for s, _ in floor_rows], 95) if floor_rows else None
    rows = []
    overall: list[tuple[float, float]] = []
    for kind in KINDS:
        samples = total.samples.get(kind, [])
        overall += samples
        if samples:
            rows.append(stat_row(kind, samples, floor_p95))
    rows.append(stat_row("overall (caller requests)", overall, floor_p95))
    for kind in (FLOOR_KIND, f"floor GET {STATIC_PATH}"):
        if floor.samples.get(kind):
            rows.append(stat_row(kind + ", under load", floor.samples[kind], floor_p95))
    for kind in (FLOOR_KIND, f"floor GET {STATIC_PATH}"):
        if idle.tally.samples.get(kind):
            rows.append(stat_row(kind + ", idle", idle.tally.samples[kind], floor_p95))
    for kind in SIGN_IN_KINDS:
        if total.samples.get(kind):
            rows.append(stat_row(kind + " (before the load)", total.samples[kind], floor_p95))
    print_table(f"RESULTS (ms; {n} concurrent callers, warm-up excluded)", HEAD, rows, set(range(1, len(HEAD))))
    overall_p95 = pct([s for s, _ in overall], 95)
    met = overall_p95 <= TARGET_P95_MS
    over = [kind for kind in KINDS if total.samples.get(kind)
            and pct([s for s, _ in total.samples[kind]], 95) > TARGET_P95_MS]
    print(f"\n目标 p95 ≤ {TARGET_P95_MS:.0f} ms（{n} 名调查员）：{'达到' if met else '未达到'}  "
          f"(overall server p95 {overall_p95:.1f} ms over {len(overall):,} caller requests"
          + (f"; kinds over {TARGET_P95_MS:.0f} ms at p95: {', '.join(over)}" if over else "") + ")")

    print(f"\nDATABASE CHECKS (after phase {args.phase + 1}, everything done so far)")
    failed_checks = 0
    try:
        for label, ok in db_checks(url, merge(cumulative)):
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
    gunicorn_log = log_path.read_text(errors="replace").strip()
    if gunicorn_log:
        lines = gunicorn_log.splitlines()
        print(f"gunicorn log ({log_path}, {len(lines)} lines, last 10):")
        for line in lines[-10:]:
            print("  " + line[:200])
    return {"callers": n, "total": total, "floor_p95": floor_p95, "overall": overall, "overall_p95": overall_p95,
            "met": met, "errors": len(errors) + total.missing_timing, "failed_checks": failed_checks,
            "cpu": cpu_line, "elapsed": elapsed}


def print_summary(phases: list[dict]) -> None:
    """One table: each kind's figures side by side for every phase."""
    head = ["request"]
    for p in phases:
        c = p["callers"]
        head += [f"{c}: count", f"{c}: p50", f"{c}: p95", f"{c}: max", f"{c}: cli p95"]

    def cells(rows):
        server = [s for s, _ in rows]
        if not server:
            return ["-"] * 5
        return [f"{len(rows):,}", f"{pct(server, 50):.1f}", f"{pct(server, 95):.1f}", f"{max(server):.1f}",
                f"{pct([c for _, c in rows], 95):.1f}"]

    rows = []
    for kind in KINDS:
        if any(p["total"].samples.get(kind) for p in phases):
            rows.append([kind] + [x for p in phases for x in cells(p["total"].samples.get(kind, []))])
    rows.append(["overall"] + [x for p in phases for x in cells(p["overall"])])
    rows.append(["floor p95 (same load)"] + [x for p in phases for x in
                                             ["", "", f"{p['floor_p95']:.1f}" if p["floor_p95"] else "-", "", ""]])
    print()
    print_table("SUMMARY (server time in ms unless marked cli; warm-up excluded)", head, rows,
                set(range(1, len(head))))
    for p in phases:
        print(f"  {p['callers']} callers: target p95 ≤ {TARGET_P95_MS:.0f} ms {'met' if p['met'] else 'NOT met'} "
              f"(overall p95 {p['overall_p95']:.1f} ms, floor p95 "
              f"{p['floor_p95'] if p['floor_p95'] is None else round(p['floor_p95'], 1)} ms); "
              f"{p['errors']} errors, {p['failed_checks']} failed checks; {p['elapsed']:.0f} s; CPU {p['cpu']}")


def parse_callers(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("every number of callers must be at least 1")
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=parse_callers, default=parse_callers(DEFAULT_CALLERS),
                        help=f"concurrent callers of each phase, run one after the other (default {DEFAULT_CALLERS})")
    parser.add_argument("--cases-per-caller", type=int, default=10, help="measured cases per caller (default 10)")
    parser.add_argument("--seconds", type=float, help="each phase works for this long instead of a fixed number of cases")
    parser.add_argument("--warmup-cases", type=int, default=1, help="cases per caller before the figures (default 1)")
    parser.add_argument("--no-contact-share", type=float, default=0.4,
                        help="share of cases ending without an interview (default 0.4)")
    parser.add_argument("--undo-share", type=float, default=0.03,
                        help="share of non-contact records undone and recorded again (default 0.03)")
    parser.add_argument("--interrupt-share", type=float, default=0.05,
                        help="share of interviews interrupted with a callback after 3-4 answers (default 0.05)")
    parser.add_argument("--breakoff-share", type=float, default=0.03,
                        help="share of interviews broken off after 2-5 answers (default 0.03)")
    parser.add_argument("--review-share", type=float, default=0.1,
                        help="share of completed interviews submitted from the review page rather than by "
                        "answer + finish (default 0.1)")
    parser.add_argument("--day-every", type=int, default=20, help="cases between GET /calls/day.json (default ~20)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"gunicorn workers (default {DEFAULT_WORKERS}: README's production command)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (>1: gthread worker class)")
    parser.add_argument("--institutions", type=int,
                        help=f"institutions of the county (default {DEFAULT_INSTITUTIONS}, or more: one primary per "
                        f"expected claim over all phases + {SIZE_MARGIN - 1:.0%}%, {SECONDS_CLAIM_RATE} claims/s "
                        "with --seconds)")
    parser.add_argument("--residents", type=int, default=60_000,
                        help="residents of the county (default 60,000; at least 150 per institution)")
    parser.add_argument("--min-gap-minutes", type=int,
                        help="CALL_MIN_GAP_MINUTES for the server (default: the app's, 120)")
    parser.add_argument("--floor-interval", type=float, default=0.05, help="seconds between floor probes")
    parser.add_argument("--idle-floor", type=int, default=100, help="floor probes on the idle server before each phase")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                        help="server (and maintenance database) on which the bench database is created")
    parser.add_argument("--db-name", default=DB_NAME)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.threads < 1:
        parser.error("--workers and --threads must be at least 1")
    args.phase = 0

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, exit_on_signal)
    claims = sum(expected_claims(args, n) for n in args.callers)
    needed = math.ceil(claims * SIZE_MARGIN / 10)  # 10 primaries per institution
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
        FloorProbe("127.0.0.1", port).run_n(10)  # every worker imports and compiles its templates first

        work = (f"{args.seconds:.0f} s" if args.seconds is not None
                else f"{args.cases_per_caller} cases each") + f" after {args.warmup_cases} warm-up case(s)"
        gap = args.min_gap_minutes if args.min_gap_minutes is not None else 120
        worker_kind = "sync" if args.threads == 1 else f"gthread x {args.threads} threads"
        print()
        print("CONFIGURATION")
        print(f"  callers : phases of {', then '.join(map(str, args.callers))} threads (one cookie session and one "
              f"http.client connection each), no think time; {work}; non-contact share {args.no_contact_share:.0%} "
              f"({', '.join(f'{o} {w}' for o, w in NON_CONTACT)} by weight), {args.undo_share:.0%} of them undone "
              f"and recorded again; interviews: {args.interrupt_share:.0%} interrupted with a callback, "
              f"{args.breakoff_share:.0%} broken off, {args.review_share:.0%} of the completed submitted from the "
              f"review page; day.json every ~{args.day_every} cases")
        print(f"  server  : gunicorn {args.workers} {worker_kind} worker(s) on {os.cpu_count()} CPUs"
              + (" (the README's production command, --workers CPUs+1 --timeout 300)"
                 if (args.workers, args.threads) == (DEFAULT_WORKERS, 1) else "")
              + "; a sync worker runs one request at a time: Server-Timing is the request's own time (shared CPUs "
              "included), the callers waiting in gunicorn's backlog is in the client time; "
              f"APP_ENV=production, CALL_HOURS={CALL_HOURS}, CALL_MIN_GAP_MINUTES={gap}"
              + (" (default)" if args.min_gap_minutes is None else ""))
        print(f"  data    : county {COUNTY[0]}: {info['institutions']} institutions, {info['teams']} teams, "
              f"{info['residents']:,} residents; round {info['month']}: {info['primaries']:,} primaries, "
              f"{info['backups']:,} backups; {max(args.callers)} caller accounts"
              + (f" (institutions raised from {DEFAULT_INSTITUTIONS} to {args.institutions}: one primary for each of "
                 f"the ~{claims} claims expected over all phases + {SIZE_MARGIN - 1:.0%})" if sized_up else ""))
        print(f"  queue   : with a {gap}-min gap no retry comes due during the run: every claim is an untried "
              f"primary, a backup activated by a final outcome that replaces, a case put back by a caller of an "
              f"earlier phase, or a case given back by an undo")
        print(f"  set-up  : {setup_s:.1f} s (" + ", ".join(f"{l.split(' ...')[0][:40]} {s:.1f} s" for l, s in info['steps'])
              + ")")
        print("  columns : srv = Server-Timing app;dur (inside Flask); cli = wall time at the simulated caller "
              "(gunicorn's queue included); floor = GET / signed out (sign-in page: session, CSRF token, template; "
              f"no database), probed every {args.floor_interval} s by one more client while the callers work "
              f"(under load) and {args.idle_floor} times on the idle server just before (idle); p95/floor = srv "
              "p95 / floor p95 under load")

        phases: list[dict] = []
        cumulative: list[Tally] = []
        for index, n in enumerate(args.callers):
            args.phase = index
            phases.append(run_phase(args, port, server, pg_admin, url, info["users"][:n], work, log_path,
                                    cumulative))
        stop_server(server)
        server = None
        if len(phases) > 1:
            print_summary(phases)
        load = os.getloadavg()
        print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        errors = sum(p["errors"] for p in phases)
        failed_checks = sum(p["failed_checks"] for p in phases)
        if errors:
            print(f"FAILED: {errors} request error(s)")
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
