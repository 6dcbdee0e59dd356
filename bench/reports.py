"""Reports benchmark: a year of survey results for a city (Yueyang: 12 counties, 167
institutions) and for a province (140 counties, 2,000 institutions) on PostgreSQL, and the time
of the fair rankings over a 12-month window and of the monthly Excel report, each figure printed
beside the same run's *floor*: the single SQL aggregate that counts the completed interviews of
every unit (GROUP BY over responses JOIN cases JOIN rounds, the period's months).

    .venv/bin/python bench/reports.py                       # city, then province (~6-8 min)
    .venv/bin/python bench/reports.py --scale city          # the city only (~1 min)
    .venv/bin/python bench/reports.py --scale province --explain   # + EXPLAIN ANALYZE of the aggregates
    .venv/bin/python bench/reports.py --scale city --keep   # keep survey_bench_reports_city afterwards
    .venv/bin/python bench/reports.py --months 24           # two years: the "previous period" is not empty

Targets (2-core machine; reported, not asserted): the rankings page for a 12-month window in
<= 300 ms server time for the city and <= 2 s for the province; the city's monthly Excel report
in <= 5 s.

The data (generation timed and printed, not a figure): a fresh database
``survey_bench_reports_<scale>`` on --pg-url's server (dropped first if it exists, and at the end
unless --keep), the schema by the Alembic migrations (``flask_migrate.upgrade()``), counties,
institutions and teams (4-8 per institution) from bench/draw.py's ``make_shape``, then --months
months ending at the current month (Asia/Shanghai) built with numpy and loaded with COPY (CSV
made in memory): per county and month a round (all closed but the current month's, with the
summary the month's close freezes), per institution and month a round_institutions row (with
an eligible set packed as the draw packs it) and 10 primaries + 10 backups; 10-12 of the cases
end in a completed interview and ~4 (Poisson) in another disposition (refusal, break-off,
partial, vacant, suspended, wrong person, moved, deceased, incapable, no answer at month end,
never dialled), the unused backups stay in reserve; each case has a minimal resident row, 0-3
attempts by one of the county's 3 callers, and completes/partials/break-offs a response with
answers JSON and the derived columns the reports read. Answers differ by institution (a latent
quality per institution and team): satisfaction mostly 4-5, 1-3 for about one in ten; about
7 % unaware of the contract (the rest of the questionnaire then skipped), flags as the
questionnaire raises them, and one problem-list entry per flagged complete. FK triggers are
off during the load (session_replication_role = replica; the rows are consistent by
construction and counted afterwards), then VACUUM ANALYZE.

The measurements, in this process, after one untimed warm-up each, --repeat times (default 5),
best and median:

- floor: the aggregate counting completed interviews per unit (team, institution, county) over
  the 12 months, city-wide and within the largest county;
- ``build_ranking(session, level, month, window=12)`` for team, institution and county, city-wide
  and within the largest county (one county: team and institution);
- the rankings page ``/reports/rankings?level=&month=&window=12&indicator=satisfaction`` through
  Flask's test client signed in as an admin (city-wide) and as the largest county's supervisor
  (one county), timed by the ``Server-Timing: app;dur=`` header every response carries (the time
  inside Flask: query, ranking and template); measured only when the route exists;
- ``build_monthly_report(session, month, county_id, path)`` for the latest month, city-wide
  (county_id None) and for the largest county; measured only when it exists. Its floor is the
  same aggregate per team over that one month.

Beside each figure: the median time spent in cursor.execute during the call (SQL; psycopg fetches
inside it) and this process's CPU time during the call (the Python side, which other processes
on the machine do not inflate); and for the whole measurement the machine's busy CPU-seconds
split into this process, its PostgreSQL backends and everything else, with a warning when other
processes took more than 10 % of the CPUs (the wall times are then inflated). Then the SQL
statements of one city-wide team and institution ranking with their times.

Every ranking is checked against its floor (the completes of its units add up to the floor's
total) and every page must answer 200; the script exits non-zero otherwise. ``--explain``
prints EXPLAIN (ANALYZE, BUFFERS) of the aggregate statements one city-wide institution
ranking issues, and of the floor.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import signal
import statistics
import sys
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# run as `python bench/<name>.py`: this folder is on sys.path
from _shared import Steps, bench_app, exit_on_signal, git_output, machine_info, peak_rss_mb, print_table, time_statements  # noqa: E402

OUTPUT = ROOT / "bench" / "output"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DB_PREFIX = "survey_bench_reports"
PASSWORD = "bench-reports-pw-2026"
INDICATOR = "satisfaction"
WINDOW = 12

SCALES = {
    # counties, institutions, rankings page target (s), monthly Excel target (s), completes wanted
    "city": dict(counties=12, institutions=167, rank_target=0.3, excel_target=5.0, min_completes=20_000),
    "province": dict(counties=140, institutions=2_000, rank_target=2.0, excel_target=None, min_completes=240_000),
}

SAMPLE, BACKUP = 10, 10  # primaries and backups drawn per institution and month
CALLERS_PER_COUNTY = 3
# dispositions of the cases that do not end in a complete (weights), and how they end
OTHER_OUTCOMES = {
    "refusal": 0.28, "breakoff": 0.07, "partial": 0.04, "vacant": 0.14, "suspended": 0.07, "wrong_person": 0.05,
    "moved": 0.05, "deceased": 0.02, "incapable": 0.03, "no_answer": 0.17, "open_at_close": 0.08,
}
REPLACED = {"vacant", "suspended", "wrong_person", "moved", "deceased", "incapable"}
NOT_FINAL = {"no_answer", "open_at_close"}  # the case was still queued when the month closed
CONNECTED = {"complete", "partial", "breakoff", "refusal", "callback", "not_available", "wrong_person", "incapable",
             "deceased", "moved"}
# key populations of the sampled residents (name, weight, services owed in 3 months)
POPULATIONS = [
    ("一般人群", 0.30, 0), ("65岁及以上老年人", 0.22, 0), ("高血压", 0.18, 1), ("2型糖尿病", 0.09, 1),
    ("0-6岁儿童", 0.08, 0), ("孕产妇", 0.02, 1), ("残疾人", 0.03, 0), ("严重精神障碍", 0.02, 1),
    ("脱贫人口/监测对象", 0.05, 0), ("肺结核", 0.01, 1),
]
SERVICE_CODES = ("follow_up", "checkup", "home_visit", "medication", "consultation", "referral", "other")
SCALE_CODES = {  # answer codes of the 5..1 scales (v1 questionnaire)
    "effect": {5: "very_helpful", 4: "helpful", 3: "neutral", 2: "little", 1: "not_helpful"},
    "satisfaction": {5: "very_satisfied", 4: "satisfied", 3: "neutral", 2: "dissatisfied", 1: "very_dissatisfied"},
}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"
TZ_HOURS = 8  # Asia/Shanghai, no daylight saving: local time - 8 h = the naive UTC the app stores


def make_app(url: str, work: Path):
    return bench_app(url, work)


# ===========================================================================
# The data
# ===========================================================================


def make_org(scale: str, seed: int) -> dict:
    """Counties, institutions and teams by bench/draw.py's generator (no residents: this
    benchmark only needs the sampled ones)."""
    from draw import make_shape

    s = SCALES[scale]
    shape = make_shape(s["counties"], s["institutions"], 0, seed)
    if scale == "province":  # 14 cities x 10 counties
        shape["counties"] = [(f"第{c // 10 + 1:02d}市第{c % 10 + 1:02d}县", code, urban, n)
                             for c, (_name, code, urban, n) in enumerate(shape["counties"])]
        shape["institutions"] = [(i, c, name.replace(name[:6], shape["counties"][c - 1][0], 1), code, t)
                                 for i, c, name, code, t in shape["institutions"]]
    return shape


def _group_rank(groups, keys):
    """0-based rank of every element by ``keys`` within its group (groups sorted ascending)."""
    import numpy as np

    order = np.lexsort((keys, groups))
    starts = np.searchsorted(groups[order], groups[order], side="left")
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - starts
    return rank


def generate(shape: dict, months: list[str], today: date, seed: int, users: dict) -> dict:
    """Every row of the survey year as DataFrames (ids assigned here), numpy-vectorised."""
    import numpy as np
    import pandas as pd

    from app.draws.sampler import pack_eligible

    rng = np.random.default_rng(seed + 1)
    counties, institutions, teams = shape["counties"], shape["institutions"], shape["teams"]
    C, I, M = len(counties), len(institutions), len(months)
    inst_county = np.array([c for _i, c, *_r in institutions], dtype=np.int64)
    inst_name = np.array([n for _i, _c, n, *_r in institutions], dtype=object)
    team_inst = np.array([inst for _t, inst, *_r in teams], dtype=np.int64)
    team_name = np.array([n for _t, _i, n, _l in teams], dtype=object)
    team_leader = np.array([lead for _t, _i, _n, lead in teams], dtype=object)
    team_first = np.searchsorted(team_inst, np.arange(1, I + 1))  # teams are numbered institution by institution
    team_count = np.bincount(team_inst, minlength=I + 1)[1:]
    county_code = np.array([code for _n, code, _u, _c in counties], dtype=object)
    county_insts = np.bincount(inst_county, minlength=C + 1)[1:]

    # months: first day, days with calls (the current month: up to today), local midnight as naive UTC
    starts = [date(int(m[:4]), int(m[5:]), 1) for m in months]
    days = np.array([min(28, today.day) if (d.year, d.month) == (today.year, today.month) else 28 for d in starts])
    month_utc = np.array([np.datetime64(d, "s") - np.timedelta64(TZ_HOURS, "h") for d in starts])
    current = M - 1 if (starts[-1].year, starts[-1].month) == (today.year, today.month) else None

    # latent quality: institutions differ, teams a little within them
    inst_q = rng.normal(0.0, 1.0, I)
    team_q = inst_q[team_inst - 1] + rng.normal(0.0, 0.4, len(teams))

    # --- rounds: one per county and month, id = m * C + county
    r_month = np.repeat(np.arange(M), C)
    r_county = np.tile(np.arange(1, C + 1), M)
    drawn = month_utc[r_month] + np.timedelta64(2, "h")  # the scheduler draws at 02:00 on the 1st
    eligible = np.maximum(60, rng.lognormal(np.log(7000), 0.5, I).astype(np.int64))
    elig_county = np.bincount(inst_county, weights=eligible, minlength=C + 1)[1:].astype(np.int64)
    r_closed = r_month != (current if current is not None else -1)
    month_end = np.array([np.datetime64(s, "s") + np.timedelta64(28, "D") for s in starts])  # closed on the 28th+
    rounds = pd.DataFrame({
        "id": np.arange(1, M * C + 1),
        "county_id": r_county,
        "month": np.array(months, dtype=object)[r_month],
        "status": np.where(r_closed, "closed", "open"),
        "algorithm": "lottery-v1",
        "county_code": county_code[r_county - 1],
        "salt": [hashlib.sha256(f"salt{i}".encode()).hexdigest() for i in range(M * C)],
        "seed": [f"{(i * 0x9E3779B97F4A7C15) % 2**64:016x}" for i in range(M * C)],
        "draw_date": [starts[m] for m in r_month],
        "sample_size": SAMPLE, "backup_size": BACKUP, "exclusion_months": 6,
        "questionnaire_version": "v1",
        "eligible_count": elig_county[r_county - 1],
        "eligible_hash": [hashlib.sha256(f"e{i}".encode()).hexdigest() for i in range(M * C)],
        "institutions": county_insts[r_county - 1],
        "primaries": SAMPLE * county_insts[r_county - 1],
        "backups": BACKUP * county_insts[r_county - 1],
        "shortfall_institutions": 0,
        "triggered_by": "scheduler",
        "drawn_at": drawn,
        "redraws": 0,
        "closed_at": pd.Series(np.where(r_closed, month_end[r_month] + np.timedelta64(16 * 3600, "s"),
                                        np.datetime64("NaT", "s"))),
        "closed_by": np.where(r_closed, "scheduler", None),
    })

    # --- institution-months: k = m * I + (institution - 1)
    K = M * I
    k_inst = np.tile(np.arange(1, I + 1), M)
    k_month = np.repeat(np.arange(M), I)
    k_round = k_month * C + inst_county[k_inst - 1]
    blobs = {}
    for i in range(I):  # one eligible set per institution, the same every month
        n = int(eligible[i])
        ids = np.arange(1, n + 1) + i * 20_000
        tm = team_first[i] + 1 + (np.arange(n) * team_count[i]) // n
        blobs[i] = "\\x" + pack_eligible(ids, tm, rng.random(n) < 0.6).hex()
    units = pd.DataFrame({
        "id": np.arange(1, K + 1),
        "round_id": k_round,
        "institution_id": k_inst,
        "institution_name": inst_name[k_inst - 1],
        "teams": team_count[k_inst - 1],
        "eligible_count": eligible[k_inst - 1],
        "eligible_hash": "0" * 64,
        "eligible_data": [blobs[i - 1] for i in k_inst],
        "primaries": SAMPLE, "backups": BACKUP, "shortfall": 0,
    })
    n_complete = rng.integers(10, 13, K)
    n_used = n_complete + np.minimum(rng.poisson(4.0, K), SAMPLE + BACKUP - n_complete)

    # --- cases: SAMPLE + BACKUP slots per institution-month, id = k * 20 + slot + 1
    S = SAMPLE + BACKUP
    N = K * S
    c_k = np.repeat(np.arange(K), S)
    slot = np.tile(np.arange(S), K)
    used = slot < n_used[c_k]
    key = np.where(used, rng.random(N), 2.0)
    complete = _group_rank(c_k, key) < n_complete[c_k]
    other_codes = np.array(list(OTHER_OUTCOMES), dtype=object)
    w = np.array(list(OTHER_OUTCOMES.values()))
    outcome = np.where(complete, "complete", other_codes[rng.choice(len(w), N, p=w / w.sum())]).astype(object)
    outcome[~used] = None
    c_inst = k_inst[c_k]
    c_month = k_month[c_k]
    c_round = k_round[c_k]
    c_county = inst_county[c_inst - 1]
    c_team = team_first[c_inst - 1] + 1 + (rng.random(N) * team_count[c_inst - 1]).astype(np.int64)
    is_current = c_month == (current if current is not None else -1)
    # attempts per case
    n_att = np.zeros(N, dtype=np.int64)
    n_att[complete] = rng.choice([1, 2, 3], int(complete.sum()), p=[0.7, 0.2, 0.1])
    final_other = used & ~complete & ~np.isin(outcome, list(NOT_FINAL))
    n_att[final_other] = rng.choice([1, 2], int(final_other.sum()), p=[0.7, 0.3])
    n_att[outcome == "no_answer"] = 3
    never = outcome == "open_at_close"
    status = np.where(~used, "reserve", np.where(np.isin(outcome, list(NOT_FINAL)),
                                                   np.where(is_current, "queued", "closed"), "done")).astype(object)
    outcome[never & is_current] = None  # still queued, never dialled: no disposition yet
    caller = users["caller_first"][c_county - 1] + rng.integers(0, CALLERS_PER_COUNTY, N)
    first_day = 1 + (rng.random(N) * np.maximum(1, days[c_month] - 2)).astype(np.int64)
    first_at = (month_utc[c_month] + (first_day - 1) * np.timedelta64(1, "D")
                + rng.integers(9 * 3600, 19 * 3600, N) * np.timedelta64(1, "s"))
    last_at = first_at + (n_att - 1).clip(0) * np.timedelta64(26, "h")
    nat = np.datetime64("NaT", "s")
    ages = rng.integers(1, 92, N)
    birth = (np.datetime64(today, "D") - (ages * 365.25 + rng.integers(0, 365, N)).astype("timedelta64[D]"))
    pop_w = np.array([p[1] for p in POPULATIONS])
    pop = rng.choice(len(POPULATIONS), N, p=pop_w / pop_w.sum())
    pop_names = np.array([p[0] for p in POPULATIONS], dtype=object)
    pop_owed = np.array([p[2] for p in POPULATIONS])
    phone = pd.Series(rng.integers(130_0000_0000, 199_9999_9999, N)).astype(str).to_numpy()
    names = (np.array(list(SURNAMES), dtype=object)[rng.integers(0, 20, N)]
             + np.array(list(GIVEN), dtype=object)[rng.integers(0, 20, N)]
             + np.array(list(GIVEN), dtype=object)[rng.integers(0, 20, N)])
    sex = np.where(rng.random(N) < 0.5, "M", "F")
    contract_start = np.datetime64(today, "D") - rng.integers(30, 700, N).astype("timedelta64[D]")
    contract_end = contract_start + np.timedelta64(364, "D")
    drawn_k = drawn[c_round - 1]
    last_outcome = outcome.copy()
    last_outcome[n_att == 0] = None
    cases = pd.DataFrame({
        "id": np.arange(1, N + 1),
        "round_id": c_round,
        "institution_id": c_inst,
        "team_id": c_team,
        "resident_id": np.arange(1, N + 1),
        "kind": np.where(slot < SAMPLE, "primary", "backup"),
        "position": slot % SAMPLE + 1,
        "status": status,
        "outcome": outcome,
        "attempt_count": n_att,
        "activated_at": pd.Series(np.where(used, drawn_k, nat)),
        "closed_at": pd.Series(np.where(status == "closed", month_end[c_month] + np.timedelta64(16 * 3600, "s"), nat)),
        "first_attempt_at": pd.Series(np.where(n_att > 0, first_at, nat)),
        "last_attempt_at": pd.Series(np.where(n_att > 0, last_at, nat)),
        "last_outcome": last_outcome,
        "replacement_state": np.where(np.isin(outcome, list(REPLACED)), "replaced", None),
        "name": names, "sex": sex, "age": ages, "phone": phone,
        "institution_name": inst_name[c_inst - 1],
        "team_name": team_name[c_team - 1],
        "doctor_name": team_leader[c_team - 1],
        "population_labels": pop_names[pop],
        "key_population": pop != 0,
        "contract_start": contract_start, "contract_end": contract_end,
    })
    residents = pd.DataFrame({
        "id": np.arange(1, N + 1),
        "id_hash": [f"{i:032x}" for i in range(1, N + 1)],
        "id_masked": "*" * 14 + pd.Series(np.arange(1, N + 1) % 10000).astype(str).str.zfill(4).to_numpy(),
        "name": names, "sex": sex, "birth_date": birth, "phone": phone, "team_id": c_team,
        "contract_start": contract_start, "contract_end": contract_end,
        "active": True, "do_not_call": False,
        "created_at": np.datetime64(today, "s") - np.timedelta64(400, "D"),
        "updated_at": np.datetime64(today, "s") - np.timedelta64(400, "D"),
    })

    # --- attempts: ids in case order, so a case's last attempt id is the running total
    A = int(n_att.sum())
    a_case = np.repeat(np.arange(N), n_att)
    last_id = np.cumsum(n_att)  # 1-based id of each case's last attempt (valid where n_att > 0)
    number = np.arange(A) - np.repeat(last_id - n_att, n_att) + 1
    is_last = number == n_att[a_case]
    earlier = np.array(["no_answer", "busy", "powered_off", "callback", "not_available"], dtype=object)
    a_outcome = np.where(is_last, outcome[a_case], earlier[rng.integers(0, len(earlier), A)]).astype(object)
    a_outcome[(outcome[a_case] == "no_answer")] = np.array(["no_answer", "busy", "powered_off"],
                                                           dtype=object)[rng.integers(0, 3, int((outcome[a_case] == "no_answer").sum()))]
    a_outcome[is_last & (outcome[a_case] == "no_answer")] = "no_answer"
    a_connected = np.isin(a_outcome, list(CONNECTED))
    a_start = first_at[a_case] + (number - 1) * np.timedelta64(26, "h")
    dur = np.where(a_outcome == "complete", rng.integers(150, 420, A),
                   np.where(a_connected, rng.integers(30, 150, A), rng.integers(20, 45, A)))
    attempts = pd.DataFrame({
        "id": np.arange(1, A + 1),
        "case_id": a_case + 1,
        "round_id": c_round[a_case],
        "number": number,
        "caller_id": caller[a_case],
        "started_at": a_start,
        "ended_at": a_start + dur * np.timedelta64(1, "s"),
        "outcome": a_outcome,
        "connected": a_connected,
    })

    # --- responses: completes, partials, break-offs (answers as the v1 questionnaire records them)
    interviewed = np.isin(outcome, ["complete", "partial", "breakoff"])
    rc = np.flatnonzero(interviewed)  # case indexes
    R = len(rc)
    r_status = outcome[rc]
    q = team_q[c_team[rc] - 1]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    proxy = rng.random(R) < np.where(ages[rc] <= 6, 0.95, np.where(ages[rc] >= 80, 0.35, 0.05))
    aware = rng.random(R) < sig(2.7 + 0.5 * q)
    knows = rng.random(R) < sig(1.2 + 0.6 * q)
    none = rng.random(R) < sig(-2.6 - 0.5 * q)  # "没有接受过服务"
    count = np.where(none, 0, np.minimum(30, 1 + rng.poisson(np.clip(1.6 + 0.5 * q, 0.2, None), R)))
    expected = pop_owed[pop[rc]]

    def scale(cuts, sd):
        latent = sd * q + rng.logistic(0.0, 1.0, R)
        return 1 + sum((latent > c).astype(np.int64) for c in cuts)

    effect = scale((-4.2, -3.2, -1.6, 0.4), 0.6)
    satisfaction = scale((-4.8, -3.8, -2.3, 0.1), 0.7)
    unsure = rng.random(R) < 0.05
    renew_draw = rng.random(R)
    renew_no = renew_draw < sig(-3.0 - 0.5 * q)
    renew_undecided = (~renew_no) & (renew_draw < sig(-3.0 - 0.5 * q) + 0.09)
    wants = rng.random(R) < np.where(satisfaction <= 2, 0.5, 0.04)
    k_sets = rng.integers(1, 4, R)
    picks = rng.random((R, len(SERVICE_CODES))).argsort(axis=1)
    # stage reached: complete = all; partial = through satisfaction; breakoff = through knows_doctor
    stage = np.where(r_status == "complete", 3, np.where(r_status == "partial", 2, 1))
    reached_rest = aware & (stage >= 2)  # unaware residents skip to the suggestion
    answers_json = []
    flags_out = []
    cols = {k: [] for k in ("aware", "knows_doctor", "services", "service_count", "effect", "satisfaction", "renew",
                            "renew_answered", "wants_contact")}
    for j in range(R):
        a = {"identity": "proxy_unable" if proxy[j] else "self", "aware": "yes" if aware[j] else "no"}
        v = dict.fromkeys(cols)
        v["aware"] = bool(aware[j])
        v["renew_answered"] = False
        if aware[j]:
            a["knows_doctor"] = "yes" if knows[j] else "no"
            v["knows_doctor"] = bool(knows[j])
        if reached_rest[j]:
            if none[j]:
                a["services"] = ["none"]
                v["services"], v["service_count"] = "none", 0
            else:
                chosen = [SERVICE_CODES[p] for p in sorted(picks[j, : k_sets[j]])]
                a["services"] = chosen
                a["service_count"] = int(count[j])
                v["services"], v["service_count"] = ",".join(chosen), int(count[j])
                a["effect"] = "unsure" if unsure[j] else SCALE_CODES["effect"][int(effect[j])]
                v["effect"] = None if unsure[j] else int(effect[j])
            a["satisfaction"] = SCALE_CODES["satisfaction"][int(satisfaction[j])]
            v["satisfaction"] = int(satisfaction[j])
            if stage[j] == 3:
                a["renew"] = "no" if renew_no[j] else "undecided" if renew_undecided[j] else "yes"
                v["renew"] = None if renew_undecided[j] else not renew_no[j]
                v["renew_answered"] = True
        if stage[j] == 3:
            a["suggestion"] = "希望医生多来随访" if wants[j] else ""
            a["wants_contact"] = "yes" if wants[j] else "no"
            v["wants_contact"] = bool(wants[j])
        raised = []
        if not aware[j]:
            raised.append("unaware")
        if v["service_count"] == 0:
            raised.append("no_service")
        if expected[j] >= 1 and v["service_count"] is not None and v["service_count"] < expected[j]:
            raised.append("below_standard")
        if v["satisfaction"] is not None and v["satisfaction"] <= 2:
            raised.append("dissatisfied")
        if v["wants_contact"]:
            raised.append("wants_contact")
        flags_out.append(",".join(raised) or None)
        answers_json.append(json.dumps(a, ensure_ascii=False))
        for k in cols:
            cols[k].append(v[k])
    completed_at = attempts["ended_at"].to_numpy()[last_id[rc] - 1]
    responses = pd.DataFrame({
        "id": np.arange(1, R + 1),
        "attempt_id": last_id[rc],
        "case_id": rc + 1,
        "round_id": c_round[rc],
        "caller_id": caller[rc],
        "questionnaire_version": "v1",
        "status": r_status,
        "answers": answers_json,
        "started_at": attempts["started_at"].to_numpy()[last_id[rc] - 1],
        "updated_at": completed_at,
        "completed_at": pd.Series(np.where(r_status == "complete", completed_at, nat)),
        "proxy": proxy,
        "aware": pd.array(cols["aware"], dtype="boolean"),
        "knows_doctor": pd.array(cols["knows_doctor"], dtype="boolean"),
        "services": cols["services"],
        "service_count": pd.array(cols["service_count"], dtype="Int64"),
        "effect": pd.array(cols["effect"], dtype="Int64"),
        "satisfaction": pd.array(cols["satisfaction"], dtype="Int64"),
        "renew": pd.array(cols["renew"], dtype="boolean"),
        "wants_contact": pd.array(cols["wants_contact"], dtype="boolean"),
        "flags": flags_out,
        "expected_services": expected,
        "renew_answered": cols["renew_answered"],
    })

    # --- the problem list: one entry per flagged complete
    flagged = np.flatnonzero((r_status == "complete") & np.array([f is not None for f in flags_out]))
    P = len(flagged)
    p_case = rc[flagged]
    p_month = c_month[p_case]
    age_months = (M - 1) - p_month
    u = rng.random(P)
    p_status = np.where(age_months >= 2, np.where(u < 0.85, "closed", np.where(u < 0.93, "assigned", "open")),
                        np.where(u < 0.2, "closed", np.where(u < 0.5, "assigned", "open"))).astype(object)
    supervisor = users["supervisor_first"] + c_county[p_case] - 1
    created = completed_at[flagged]
    problems = pd.DataFrame({
        "id": np.arange(1, P + 1),
        "response_id": flagged + 1,
        "round_id": c_round[p_case],
        "county_id": c_county[p_case],
        "institution_id": c_inst[p_case],
        "team_id": c_team[p_case],
        "month": np.array(months, dtype=object)[p_month],
        "flags": np.array(flags_out, dtype=object)[flagged],
        "status": p_status,
        "created_at": created,
        "assigned_at": pd.Series(np.where(p_status != "open", created + np.timedelta64(1, "D"), nat)),
        "assigned_by_id": pd.array(np.where(p_status != "open", supervisor, -1), dtype="Int64"),
        "note": np.where(p_status == "closed", "已电话回访居民，说明情况并整改", None),
        "closed_at": pd.Series(np.where(p_status == "closed", created + np.timedelta64(7, "D"), nat)),
        "closed_by_id": pd.array(np.where(p_status == "closed", supervisor, -1), dtype="Int64"),
    })
    problems.loc[problems["assigned_by_id"] < 0, "assigned_by_id"] = pd.NA
    problems.loc[problems["closed_by_id"] < 0, "closed_by_id"] = pd.NA
    return {"rounds": rounds, "round_institutions": units, "residents": residents, "cases": cases,
            "attempts": attempts, "responses": responses, "problems": problems}


def copy_frame(cursor, table: str, frame, chunk: int = 100_000) -> None:
    """COPY the frame's rows (CSV made in memory, chunk by chunk; empty = NULL)."""
    cols = ", ".join(frame.columns)
    with cursor.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as copy:
        for lo in range(0, len(frame), chunk):
            buf = io.StringIO()
            frame.iloc[lo:lo + chunk].to_csv(buf, index=False, header=False, na_rep="", date_format="%Y-%m-%d %H:%M:%S")
            copy.write(buf.getvalue())


def build(url: str, work: Path, scale: str, months: list[str], today: date, seed: int) -> dict:
    """Migrate, organisation and users by the ORM, the survey year by COPY, VACUUM ANALYZE."""
    import numpy as np
    from flask_migrate import upgrade
    from sqlalchemy import insert, text
    from werkzeug.security import generate_password_hash

    from app.extensions import db
    from app.models import County, Institution, Team, User, username_key

    steps = Steps()
    shape = steps.run("organisation (bench/draw.py make_shape)", make_org, scale, seed)
    app = make_app(url, work)
    with app.app_context():
        engine = db.engine
        alembic_log = io.StringIO()  # Alembic's own logging (migrations/env.py) is not this script's output

        def migrate():
            with contextlib.redirect_stderr(alembic_log):
                upgrade()

        steps.run("flask_migrate.upgrade()", migrate)
        C = len(shape["counties"])
        users = {"admin": 1, "supervisor_first": 2, "caller_first": 2 + C + CALLERS_PER_COUNTY * np.arange(C)}

        def org():
            hashed = generate_password_hash(PASSWORD)
            with engine.begin() as conn:
                conn.execute(insert(County), [{"id": i, "name": n, "code": c}
                                              for i, (n, c, _u, _n) in enumerate(shape["counties"], start=1)])
                conn.execute(insert(Institution), [{"id": i, "county_id": c, "name": n, "code": code, "type": t}
                                                   for i, c, n, code, t in shape["institutions"]])
                conn.execute(insert(Team), [{"id": i, "institution_id": inst, "name": n, "leader_doctor": lead}
                                            for i, inst, n, lead in shape["teams"]])
                rows = [{"id": 1, "username": "bench_admin", "role": "admin", "county_id": None}]
                rows += [{"id": 1 + c, "username": f"bench_sup_{c:03d}", "role": "supervisor", "county_id": c}
                         for c in range(1, C + 1)]
                rows += [{"id": int(users["caller_first"][c - 1]) + k, "username": f"bench_caller_{c:03d}_{k + 1}",
                          "role": "caller", "county_id": c} for c in range(1, C + 1) for k in range(CALLERS_PER_COUNTY)]
                conn.execute(insert(User), [{**r, "password_hash": hashed, "username_key": username_key(r["username"]),
                                             "real_name": r["username"]} for r in rows])

        steps.run(f"{C} counties, {len(shape['institutions']):,} institutions, {len(shape['teams']):,} teams, "
                  f"{1 + C * (1 + CALLERS_PER_COUNTY)} users", org)
        frames = steps.run(f"generate {len(months)} months (numpy)", generate, shape, months, today, seed, users)

        def load():
            raw = engine.raw_connection()
            try:
                con = raw.driver_connection
                with con.cursor() as cur:
                    cur.execute("SET LOCAL synchronous_commit = off")
                    cur.execute("SET LOCAL session_replication_role = replica")  # no FK triggers
                    for table in ("rounds", "round_institutions", "residents", "cases", "attempts", "responses",
                                  "problems"):
                        copy_frame(cur, table, frames[table])
                    for table in ("counties", "institutions", "teams", "users", "rounds", "round_institutions",
                                  "residents", "cases", "attempts", "responses", "problems"):
                        cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")
                    # the figures the month's close freezes into every closed round
                    cur.execute("""
                        UPDATE rounds r SET summary = s.figures FROM (
                          SELECT round_id, CAST(jsonb_object_agg(institution_name, f) AS text) AS figures FROM (
                            SELECT round_id, institution_name, jsonb_object_agg(k, n) AS f FROM (
                              SELECT round_id, institution_name,
                                     kind || ':' || status || ':' || coalesce(outcome, '-') AS k, count(*) AS n
                              FROM cases GROUP BY 1, 2, 3) a GROUP BY 1, 2) b GROUP BY 1) s
                        WHERE r.id = s.round_id AND r.status = 'closed'""")
                raw.commit()
            finally:
                raw.close()

        rows = sum(len(f) for f in frames.values())
        steps.run(f"COPY {rows:,} rows into 7 tables, round summaries", load)

        def vacuum():
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")

        steps.run("VACUUM ANALYZE", vacuum)
        with engine.connect() as conn:
            q = lambda sql: conn.execute(text(sql)).scalar()  # noqa: E731
            info = {
                "counties": q("SELECT count(*) FROM counties"),
                "institutions": q("SELECT count(*) FROM institutions"),
                "teams": q("SELECT count(*) FROM teams"),
                "rounds": q("SELECT count(*) FROM rounds"),
                "cases": q("SELECT count(*) FROM cases"),
                "attempts": q("SELECT count(*) FROM attempts"),
                "responses": q("SELECT count(*) FROM responses"),
                "completes": q("SELECT count(*) FROM responses WHERE status = 'complete'"),
                "problems": q("SELECT count(*) FROM problems"),
                "db_mb": q("SELECT pg_database_size(current_database())") / 2**20,
                # the load skipped the FK triggers: the rows must join up all the same
                "orphans": q("SELECT (SELECT count(*) FROM responses r LEFT JOIN cases c ON c.id = r.case_id "
                             "  LEFT JOIN attempts a ON a.id = r.attempt_id WHERE c.id IS NULL OR a.id IS NULL "
                             "  OR a.case_id <> r.case_id OR c.round_id <> r.round_id)"
                             " + (SELECT count(*) FROM cases c LEFT JOIN rounds r ON r.id = c.round_id "
                             "  LEFT JOIN teams t ON t.id = c.team_id WHERE r.id IS NULL OR t.institution_id <> c.institution_id)"),
            }
        db.session.remove()
        engine.dispose()
    info["build_s"] = steps.total
    info["steps"] = steps.times
    return info


# ===========================================================================
# The measurement
# ===========================================================================


FLOOR_UNIT = {"team": "c.team_id", "institution": "c.institution_id", "county": "ro.county_id"}


def floor_sql(level: str, county: bool) -> str:
    """The single aggregate: completed interviews per unit over the months' rounds."""
    join = "JOIN cases c ON c.id = r.case_id " if level != "county" else ""
    return (f"SELECT {FLOOR_UNIT[level]} AS unit, count(*) FROM responses r {join}"
            "JOIN rounds ro ON ro.id = r.round_id "
            "WHERE r.status = 'complete' AND ro.month = ANY(:months)"
            + (" AND ro.county_id = :county" if county else "") + f" GROUP BY {FLOOR_UNIT[level]}")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """user + system CPU seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK_TCK
    except (OSError, IndexError):
        return 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as fh:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fh.readline().split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


class Meter:
    """SQL execute time (cursor.execute, fetch included with psycopg) on the engines watched,
    and this process's CPU time, around each timed call."""

    def __init__(self) -> None:
        self.sql = 0.0

    def watch(self, engine) -> None:
        time_statements(engine, self._add)

    def _add(self, _statement, seconds, _many) -> None:
        self.sql += seconds

    def timed(self, fn, repeat: int, warm_up: bool = True) -> tuple[list[dict], object]:
        """One untimed warm-up, then ``repeat`` timed calls. ``fn`` returns (seconds or None, result):
        its own figure (a page's Server-Timing) or None for the wall time of the call."""
        if warm_up:
            fn()
        samples, result = [], None
        for _ in range(repeat):
            sql0, cpu0 = self.sql, time.process_time()
            t0 = time.perf_counter()
            own, result = fn()
            wall = time.perf_counter() - t0
            samples.append({"s": own if own is not None else wall, "sql": self.sql - sql0,
                            "cpu": time.process_time() - cpu0})
        return samples, result


def sign_in(app, username: str):
    client = app.test_client()
    page = client.get("/")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
    if token is None:
        raise SystemExit(f"sign-in page (GET / {page.status_code}) has no CSRF token")
    resp = client.post("/", data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)})
    if resp.status_code != 302:
        raise SystemExit(f"sign-in as {username} failed: {resp.status_code}")
    return client


def server_seconds(resp) -> float | None:
    m = re.search(r"app;dur=([0-9.]+)", resp.headers.get("Server-Timing") or "")
    return float(m.group(1)) / 1000.0 if m else None


def measure(url: str, work: Path, scale: str, args) -> dict:
    import inspect

    from sqlalchemy import event, func, select, text

    from app.core.clock import local_date, month_of
    from app.extensions import db
    from app.models import County, Institution, User
    from app.reports import excel as report_excel
    from app.core.clock import months_of
    from app.reports.rankings import build_ranking

    app = make_app(url, work)
    # the pages through an app of their own: a request under an app context already pushed (the
    # one the functions are timed in) would share its ``g``, and with it the signed-in user
    web = make_app(url, work)
    meter = Meter()
    out: dict = {"rows": [], "problems": [], "notes": [], "sql": {}, "explain": []}
    repeat = args.repeat
    busy0, total0 = machine_cpu()
    self0 = sum(os.times()[:2])
    with web.app_context():
        meter.watch(db.engine)
    with app.app_context():
        session = db.session
        meter.watch(db.engine)
        month = month_of(local_date(datetime.now(timezone.utc)))
        months = months_of(month, WINDOW)
        big_county, big_name, n_inst = session.execute(
            select(County.id, County.name, func.count(Institution.id)).join(Institution)
            .group_by(County.id, County.name).order_by(func.count(Institution.id).desc(), County.id).limit(1)
        ).one()
        supervisor = session.scalar(select(User.username).where(User.role == "supervisor", User.county_id == big_county))
        session.remove()
        out.update(month=month, county=big_name, county_institutions=n_inst)
        scopes = [("全市" if scale == "city" else "全省", None), (f"{big_name}（{n_inst}个机构）", big_county)]

        def run_floor(level, county_id, months_):
            sql = text(floor_sql(level, county_id is not None))
            params = {"months": months_, "county": county_id}

            def fn():
                rows = session.execute(sql, params).all()
                session.rollback()
                return None, rows
            samples, rows = meter.timed(fn, repeat)
            return [x["s"] for x in samples], {u: n for u, n in rows}

        # --- rankings: floor, build_ranking, page
        has_page = any(r.rule == "/reports/rankings" for r in web.url_map.iter_rules())
        clients = {}
        if has_page:
            clients[None] = sign_in(web, "bench_admin")
            clients[big_county] = sign_in(web, supervisor)
        else:
            out["notes"].append("/reports/rankings 尚未实现：只测 build_ranking（不含模板）")
        for scope, county_id in scopes:
            for level in ("team", "institution", "county"):
                if level == "county" and county_id is not None:
                    continue
                floor, counts = run_floor(level, county_id, months)
                floor_total = sum(counts.values())

                def rank():
                    r = build_ranking(session, level, month, window=WINDOW, indicator=INDICATOR, county_id=county_id)
                    session.remove()
                    return None, r
                samples, ranking = meter.timed(rank, repeat)
                got = sum(row.completes for row in ranking.ranked + ranking.insufficient)
                units = len(ranking.ranked) + len(ranking.insufficient)
                if got != floor_total:
                    out["problems"].append(f"{scope} {level}: build_ranking completes {got:,} != floor {floor_total:,}")
                base = dict(scope=scope, level=level, units=units, ranked=len(ranking.ranked), completes=floor_total,
                            floor=floor)
                out["rows"].append({**base, "what": "build_ranking", "samples": samples})
                if has_page:
                    client = clients[county_id]
                    path = (f"/reports/rankings?level={level}&month={month}&window={WINDOW}&indicator={INDICATOR}")
                    sizes = []

                    def page():
                        resp = client.get(path)
                        if resp.status_code != 200:
                            raise SystemExit(f"GET {path} as {'admin' if county_id is None else supervisor}: "
                                             f"{resp.status_code}")
                        sizes.append(len(resp.get_data()))
                        return server_seconds(resp), resp
                    try:
                        psamples, _ = meter.timed(page, repeat)
                        out["rows"].append({**base, "what": "rankings page", "samples": psamples, "bytes": sizes[-1],
                                            "target": SCALES[scale]["rank_target"]})
                    except SystemExit as exc:
                        out["problems"].append(str(exc))

        # --- what one ranking spends in SQL (city-wide)
        spent: dict[str, list] = {}
        captured: list[tuple[str, object]] = []
        active = [False]

        def record(statement, seconds, _many):
            if active[0]:
                label = " ".join(statement.split())
                entry = spent.setdefault(label, [0.0, 0])
                entry[0] += seconds
                entry[1] += 1

        time_statements(db.engine, record)

        @event.listens_for(db.engine, "before_cursor_execute")
        def _capture(conn, cursor, statement, parameters, context, executemany):
            if active[0]:
                captured.append((statement, parameters))

        for level in ("team", "institution"):
            spent.clear()
            captured.clear()
            active[0] = True
            t0 = time.perf_counter()
            build_ranking(session, level, month, window=WINDOW, indicator=INDICATOR)
            total = time.perf_counter() - t0
            active[0] = False
            session.remove()
            out["sql"][level] = (total, sorted(((sec, n, label) for label, (sec, n) in spent.items()), reverse=True))
            if args.explain and level == "institution":
                raw = db.engine.raw_connection()
                try:
                    with raw.driver_connection.cursor() as cur:
                        todo = [(st, p) for st, p in captured if "count(" in st or "DISTINCT" in st]
                        todo.append((floor_sql("institution", False).replace(":months", "%(months)s"),
                                     {"months": months}))
                        seen = set()
                        for statement, params in todo:
                            key = (statement, repr(params))
                            if key in seen:
                                continue
                            seen.add(key)
                            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                            out["explain"].append((" ".join(statement.split()),
                                                   "\n".join(r[0] for r in cur.fetchall())))
                    raw.rollback()
                finally:
                    raw.close()

        # --- the monthly Excel report
        builder = getattr(report_excel, "build_monthly_report", None)
        if builder is None:
            out["notes"].append("app.reports.excel.build_monthly_report 尚未实现：月报未测")
        else:
            accepted = inspect.signature(builder).parameters
            # as GET /reports/monthly.xlsx calls it: the app's config, settings and questionnaires
            kw = {k: v for k, v in (("config", app.config), ("settings", app.extensions["report_settings"]),
                                    ("questionnaires", app.extensions["questionnaires"])) if k in accepted}
            for scope, county_id in scopes:
                floor, counts = run_floor("team", county_id, [month])
                path = work / f"report-{scale}-{county_id or 'all'}.xlsx"

                def excel():
                    builder(session, month, county_id, path, **kw)
                    session.remove()
                    return None, None
                t0 = time.perf_counter()
                excel()  # the warm-up, which also tells how long one takes
                slow = time.perf_counter() - t0 > 30  # (the province-wide workbook, no target): fewer runs
                samples, _ = meter.timed(excel, min(repeat, 2) if slow else repeat, warm_up=False)
                target = SCALES[scale]["excel_target"] if county_id is None else None
                out["rows"].append(dict(scope=scope, level="月报 " + month, what="build_monthly_report",
                                        samples=samples, units=len(counts), ranked=None, completes=sum(counts.values()),
                                        floor=floor, target=target, bytes=path.stat().st_size if path.exists() else 0))
        out["peak_rss_mb"] = peak_rss_mb()
        # the PostgreSQL backends of both apps' pools (all opened during the measurement)
        pg_pids = list(session.scalars(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'")))
        session.remove()
        db.engine.dispose()
    with web.app_context():
        db.engine.dispose()
    busy1, total1 = machine_cpu()
    out["cpu"] = {"busy": busy1 - busy0, "available": total1 - total0, "self": sum(os.times()[:2]) - self0,
                  "pg": sum(process_cpu(pid) for pid in pg_pids)}
    return out


# ===========================================================================
# Orchestration and the report
# ===========================================================================


def code_info() -> str:
    head = git_output(ROOT, "rev-parse", "--short", "HEAD").strip() or "unknown"
    files = [ROOT / "app" / "reports" / n for n in ("indicators.py", "rankings.py", "routes.py", "excel.py")]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files if f.exists())).hexdigest()[:12]
    dirty = [line[3:] for line in git_output(ROOT, "status", "--porcelain", "--", "app").splitlines()]
    text = f"HEAD {head}, app/reports/{{indicators,rankings,routes,excel}}.py sha256 {digest}"
    if dirty:
        text += f"; uncommitted in app/: {', '.join(dirty[:8])}" + (" ..." if len(dirty) > 8 else "")
    return text


def ms(sec: float) -> str:
    return f"{sec * 1000:,.0f}" if sec >= 0.1 else f"{sec * 1000:.1f}"


OTHER_CPU_WARN = 0.10  # other processes used more than this share of the CPUs: figures inflated


def report(scale: str, res: dict, repeat: int) -> list[tuple[str, str]]:
    head = ["scope", "level", "measured", "units (ranked)", "completes", "floor best ms", "best ms", "median ms",
            "x floor", "SQL ms", "py CPU ms", "target", "met (best/median)"]
    rows, verdicts = [], []
    med = lambda r, k="s": statistics.median(x[k] for x in r["samples"])  # noqa: E731
    for r in res["rows"]:
        times = [x["s"] for x in r["samples"]]
        best, median, floor = min(times), statistics.median(times), min(r["floor"])
        target = r.get("target")
        met = "-" if target is None else "/".join("yes" if s <= target else "NO" for s in (best, median))
        rows.append([r["scope"], r["level"], r["what"] + (f" ({len(times)}x)" if len(times) != repeat else ""),
                     f"{r['units']:,}" + (f" ({r['ranked']:,})" if r.get("ranked") is not None else ""),
                     f"{r['completes']:,}", ms(floor), ms(best), ms(median), f"{best / floor:.1f}x",
                     ms(med(r, "sql")), ms(med(r, "cpu")), f"<= {ms(target)} ms" if target else "-", met])
    print_table(f"RESULTS {scale} (month {res['month']}, {WINDOW}-month window, indicator {INDICATOR}; "
                f"{repeat} timed runs each after a warm-up)", head, rows, {3, 4, 5, 6, 7, 8, 9, 10})
    print("floor = the single aggregate counting completed interviews per unit (responses JOIN cases JOIN rounds,"
          "\n  GROUP BY team / institution / county; rounds only for counties) over the same months and scope; the"
          "\n  monthly report's floor is the per-team count of that month; x floor = best / floor best."
          "\nrankings page = Server-Timing app;dur of GET /reports/rankings?level=&month=&window=12&indicator="
          "satisfaction\n  (admin city-wide; the county's supervisor for one county); build_ranking = the function"
          " alone;\n  build_monthly_report = the workbook written to a file, as GET /reports/monthly.xlsx calls it."
          "\nSQL ms = median time in cursor.execute (fetch included) during the call; py CPU ms = median CPU time of"
          "\n  this process during the call (the Python side: not inflated by other processes, unlike the wall time).")
    for note in res["notes"]:
        print("note: " + note)
    cpu = res["cpu"]
    other = cpu["busy"] - cpu["self"] - cpu["pg"]
    print(f"CPU during the measurement: {cpu['busy']:.0f} of {cpu['available']:.0f} CPU-s busy "
          f"({cpu['busy'] / cpu['available']:.0%}): this process {cpu['self']:.1f} s, its PostgreSQL backends "
          f"{cpu['pg']:.1f} s, other processes (and PostgreSQL parallel workers) {other:.1f} s")
    if other > OTHER_CPU_WARN * cpu["available"]:
        print(f"WARNING: other processes took {other / cpu['available']:.0%} of the CPUs during the measurement: the "
              "wall times (and Server-Timing) are inflated by them; the py CPU column is not. Run again on a quiet "
              "machine for the README.")
    for r in res["rows"]:
        extra = f"; {r['bytes']:,} bytes" if r.get("bytes") else ""
        print(f"  {r['scope']} {r['level']} {r['what']}: {', '.join(ms(x['s']) for x in r['samples'])} ms; floor "
              f"{', '.join(ms(s) for s in r['floor'])} ms{extra}")
    for level, (total, stmts) in res["sql"].items():
        print(f"\n  one city-wide build_ranking({level}, window={WINDOW}): {ms(total)} ms, of which SQL execute:")
        for sec, n, label in stmts[:6]:
            print(f"    {ms(sec):>7} ms  x{n:<3d} {label[:150]}")
    for statement, plan in res["explain"]:
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) {statement[:300]}{' ...' if len(statement) > 300 else ''}")
        print(plan)

    label = "城市" if scale == "city" else "省级"
    pages = [r for r in res["rows"] if r["what"] == "rankings page"]
    rank_rows = pages or [r for r in res["rows"] if r["what"] == "build_ranking"]
    target = SCALES[scale]["rank_target"]
    worst = max(rank_rows, key=med)
    ok = all(med(r) <= target for r in rank_rows)
    what = "页面服务器时间" if pages else "build_ranking（页面尚未实现）"
    verdicts.append((f"{label}排名 ≤ {ms(target)} ms", f"{'达到' if ok else '未达到'}（{what}中位数，最慢："
                     f"{worst['scope']} {worst['level']} {ms(med(worst))} ms）"))
    excel = [r for r in res["rows"] if r["what"] == "build_monthly_report" and r.get("target")]
    if SCALES[scale]["excel_target"]:
        label_x = f"{label}月报 ≤ {SCALES[scale]['excel_target']:.0f} s"
        if excel:
            r = excel[0]
            verdicts.append((label_x, f"{'达到' if med(r) <= r['target'] else '未达到'}（中位数 {med(r):.2f} s）"))
        else:
            verdicts.append((label_x, "未测（build_monthly_report 尚未实现）"))
    return verdicts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("city", "province", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each measurement (default 5)")
    parser.add_argument("--months", type=int, default=12, help="months of results ending at the current month (default 12)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of one ranking's statements")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                        help=f"server to (re)create {DB_PREFIX}_<scale> on (dropped at the end unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the database(s) afterwards")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.months < 1:
        parser.error("--repeat and --months must be at least 1")

    from sqlalchemy import create_engine, make_url, text

    from app.core.clock import local_date, month_of
    from app.core.clock import months_of

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, exit_on_signal)
    scales = ["city", "province"] if args.scale == "both" else [args.scale]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    run_dir = OUTPUT / f"reports-{run_id}"
    run_dir.mkdir()
    try:
        pg_admin = create_engine(make_url(args.pg_url), isolation_level="AUTOCOMMIT")
        with pg_admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        print(f"PostgreSQL at {args.pg_url} is not reachable ({type(exc).__name__}: {exc})")
        return 2

    now = datetime.now(timezone.utc)
    today = local_date(now)
    months = months_of(month_of(today), args.months)
    print("Reports benchmark", run_id)
    for line in machine_info(pg_admin, ("shared_buffers", "work_mem", "effective_cache_size", "jit",
                                        "max_parallel_workers_per_gather")):
        print("  " + line)
    load = os.getloadavg()
    print(f"  load    : {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) at start")
    print(f"  code    : {code_info()}")
    print(f"  output  : {run_dir}")
    print(f"  months  : {months[0]} .. {months[-1]} ({len(months)}; today {today} Asia/Shanghai)")
    print(flush=True)

    verdicts: list[tuple[str, str]] = []
    failures: list[str] = []
    for scale in scales:
        name = f"{DB_PREFIX}_{scale}"
        url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
        created = False
        try:
            with pg_admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\''))
            created = True
            print(f"[{scale}] building {url}", flush=True)
            info = build(url, run_dir, scale, months, today, args.seed)
            print(f"    data: {info['counties']} counties, {info['institutions']:,} institutions, {info['teams']:,} teams, "
                  f"{info['rounds']:,} rounds, {info['cases']:,} cases, {info['attempts']:,} attempts, "
                  f"{info['responses']:,} responses ({info['completes']:,} completes), {info['problems']:,} problems; "
                  f"database {info['db_mb']:,.0f} MB; built in {info['build_s']:.1f} s (not a measured figure)", flush=True)
            want = SCALES[scale]["min_completes"] * len(months) // 12
            if info["completes"] < want:
                failures.append(f"{scale}: {info['completes']:,} completes, fewer than {want:,}")
            if info["orphans"]:
                failures.append(f"{scale}: {info['orphans']} rows that do not join up")
            print(f"[{scale}] measuring", flush=True)
            t0 = time.perf_counter()
            res = measure(url, run_dir, scale, args)
            print(f"    measured in {time.perf_counter() - t0:.1f} s; peak RSS {res['peak_rss_mb']:.0f} MB\n", flush=True)
            verdicts += report(scale, res, args.repeat)
            failures += [f"{scale}: {p}" for p in res["problems"]]
        finally:
            if created and not args.keep:
                try:
                    with pg_admin.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                except Exception as exc:  # noqa: BLE001
                    print(f"could not drop database {name}: {exc}")
            elif created:
                print(f"[{scale}] kept: {url}")
        print(flush=True)
    pg_admin.dispose()

    for label, verdict in verdicts:
        print(f"目标：{label}：{verdict}")
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for f in failures:
        print("FAILED: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
