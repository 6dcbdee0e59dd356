"""Supervisors' rankings, drill-down and exports.

- ``/reports/rankings``: the ranking of teams, institutions or counties on one indicator over a
  month or a rolling window, with the funnel plot and the 12-month trend;
- ``/reports/unit/<level>/<id>``: one county, institution or team: its indicators, its place in
  its ranking, the ranking of its children (county → institutions, institution → teams) and, for
  a team, the interviews themselves;
- ``/reports/api/rankings``: the same table as JSON for the city's platform (audit-logged);
- ``/reports/monthly.xlsx``: the monthly workbook (app/reports/excel.py), audit-logged;
- ``/calls/board`` (调查进度, the supervisors' landing page): the month's progress per
  institution and county, per caller, and the problems (app/reports/board.py).

The rectification list's views are in app/reports/problem_routes.py.

Scope as everywhere (app/auth/scope.py): a supervisor sees only their own county, and another
county's unit answers 404; the city administrator sees all. Callers have no reports (403).
The figures all come from app/reports/rankings.py and app/reports/indicators.py; the table is
turned into dicts in one place, app/reports/tables.py.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from flask import abort, current_app, flash, jsonify, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select
from werkzeug.exceptions import NotFound

from app.core.ids import as_id
from app.core.transactions import transaction
from app.auth.scope import county_filter, require_county, roles_required
from app.core.clock import clock_now, current_month, months_of, to_local
from app.draws.services import DrawError, parse_month
from app.extensions import db
from app.models import audit, Case, County, Institution, Response, Round, Team, User
from app.questionnaires import FLAGS
from app.reports import bp
from app.reports.board import board_rows, caller_stats
from app.reports.excel import CITY, audit_export, build_monthly_report, report_filename, reports_dir
from app.reports.indicators import LEVEL_LABELS, RATES, Counts, Unit, aggregate, unit_indicators
from app.reports.problems import EMPTY_COUNTS, problem_counts
from app.reports.rankings import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    MONTH_PATTERN,
    POSITION_LABELS,
    RANK_LEVELS,
    RECOMMENDED_WINDOW,
    Ranking,
    RankRow,
    build_ranking,
)
from app.reports.settings import ReportSettings
from app.reports.tables import INDICATORS, indicators_dict, ranking_dict

STAFF = ("admin", "supervisor")
TREND_MONTHS = 12
TREND_MAX_SERIES = 50  # more units than this: the best and the worst 25
TREND_SHOWN = 5  # lines shown at first at each end of the ranking; the legend shows the rest
CHILD_LEVEL = {"county": "institution", "institution": "team"}
SATISFACTION_LABELS = {5: "非常满意", 4: "满意", 3: "一般", 2: "不满意", 1: "非常不满意"}
EFFECT_LABELS = {5: "很有帮助", 4: "有帮助", 3: "一般", 2: "帮助不大", 1: "没有帮助"}


def _settings() -> ReportSettings:
    return current_app.extensions["report_settings"]


# ---------------------------------------------------------------------------
# Filters from the query string
# ---------------------------------------------------------------------------


@dataclass
class RankingFilters:
    level: str
    month: str
    window: int
    window_given: bool  # chosen by the user (else the level's default)
    indicator: str
    county: County | None  # None: every county (administrators only)

    def args(self, **overrides) -> dict:
        """The query-string arguments that reproduce these filters (for links: the window is
        always given, so a drill-down keeps the period it came from)."""
        return {"month": self.month, "window": self.window, "indicator": self.indicator, **overrides}


@dataclass(frozen=True)
class BadInput:
    problem: str  # what was wrong (the API's whole answer)
    fallback: str  # what the page shows instead

    def __str__(self) -> str:
        return f"{self.problem}，{self.fallback}"


def _shown(value: str) -> str:
    return value[:20] + ("…" if len(value) > 20 else "")


def default_month() -> str:
    """The month a page opens on: the latest month with a closed round in the user's scope
    (its figures are final; the month in progress has only its first interviews), else this
    month."""
    stmt = select(func.max(Round.month)).where(Round.status == "closed", Round.month <= current_month(clock_now()))
    if not current_user.is_admin:
        stmt = stmt.where(Round.county_id == current_user.county_id)
    return db.session.scalar(stmt) or current_month(clock_now())


def _read_month(args, errors: list[BadInput]) -> str:
    value = (args.get("month") or "").strip()
    if not value:
        return default_month()
    if MONTH_PATTERN.match(value):
        return value
    errors.append(BadInput(f"月份格式应为 YYYY-MM（例如 2026-11），收到“{_shown(value)}”", "已改为本月"))
    return current_month(clock_now())


def _read_window(args, level: str, errors: list[BadInput]) -> tuple[int, bool]:
    value = (args.get("window") or "").strip()
    if not value:
        return DEFAULT_WINDOW[level], False
    if value.isdigit() and 1 <= int(value) <= MAX_WINDOW:
        return int(value), True
    errors.append(BadInput(f"统计窗口应为1到{MAX_WINDOW}之间的整数（月数），收到“{_shown(value)}”",
                           f"已改为{DEFAULT_WINDOW[level]}个月"))
    return DEFAULT_WINDOW[level], False


def _read_indicator(args, errors: list[BadInput]) -> str:
    value = (args.get("indicator") or "").strip()
    if not value:
        return "satisfaction"
    if value in RATES:
        return value
    errors.append(BadInput(f"未知的排名指标“{_shown(value)}”（可选：" + "、".join(f"{k} {v}" for k, v in RATES.items())
                           + "）", "已改为满意率"))
    return "satisfaction"


def _read_level(args, errors: list[BadInput]) -> str:
    value = (args.get("level") or "").strip()
    if not value:
        return "institution"
    if value not in RANK_LEVELS:
        errors.append(BadInput(f"未知的排名层级“{_shown(value)}”（可选：team 团队、institution 机构、county 县市区）",
                               "已改为按机构排名"))
        return "institution"
    if value == "county" and not current_user.is_admin:
        errors.append(BadInput("县市区之间的排名只有市级管理员可以查看", "已改为按机构排名"))
        return "institution"
    return value


def _read_county(args, errors: list[BadInput]) -> County | None:
    """A supervisor's own county, whatever was asked (another county: 404); an
    administrator's choice (id or name), or None for all counties."""
    value = (args.get("county") or "").strip()
    county = None
    if value:
        county = db.session.get(County, as_id(value)) if as_id(value) else None if value.isdigit() else db.session.scalar(
            select(County).where(County.name == value))
    if not current_user.is_admin:
        if value and (county is None or county.id != current_user.county_id):
            abort(404)
        return db.session.get(County, current_user.county_id)
    if value and county is None:
        errors.append(BadInput(f"找不到县市区“{_shown(value)}”", "已显示全部县市区"))
    return county


def read_filters(args) -> tuple[RankingFilters, list[BadInput]]:
    """The rankings' filters, each bad one replaced by its default with a Chinese message."""
    errors: list[BadInput] = []
    level = _read_level(args, errors)
    month = _read_month(args, errors)
    window, given = _read_window(args, level, errors)
    indicator = _read_indicator(args, errors)
    county = _read_county(args, errors)
    if level == "county" and county is not None:
        county = None  # counties are ranked against each other, never within one county
    return RankingFilters(level, month, window, given, indicator, county), errors


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def _ranking(level: str, f: RankingFilters, county_id: int | None) -> Ranking:
    settings = _settings()
    return build_ranking(db.session, level, f.month, window=f.window, indicator=f.indicator, county_id=county_id,
                         min_n=settings.min_n.get(level), scores=settings.scores, weights=settings.weights)


def _county_dict(county: County | None) -> dict | None:
    return None if county is None else {"id": county.id, "name": county.name}


FUNNEL_FIELDS = ("name", "parent", "n", "successes", "rate", "adjusted", "rank", "position")


def _funnel_data(ranking: Ranking) -> dict:
    """What reports.js draws on the funnel plot: the limit lines and every unit with answers as
    a point (all of them, not only the table's page). A province has 12,000 teams, so each
    point is a list in the order of ``fields`` and its parent an index into ``parents``
    (reports.js turns them back into objects); rates keep 6 decimals."""
    parents: dict[str, int] = {}
    points = []
    for r in ranking.ranked + ranking.insufficient:
        if r.n:
            parent = parents.setdefault(r.unit.parent, len(parents))
            points.append([r.unit.name, parent, r.n, r.successes, round(r.observed, 6),
                           None if r.adjusted is None else round(r.adjusted, 6), r.rank, r.position])
    return {
        "indicator": RATES[ranking.indicator],
        "overall": ranking.overall,
        "limits": ranking.funnel,
        "positions": POSITION_LABELS,
        "fields": FUNNEL_FIELDS,
        "parents": list(parents),
        "points": points,
    }


def _trend_pool(ranking: Ranking) -> tuple[list[RankRow], set[int] | None]:
    """The units to draw on the trend chart and those whose lines show at first: the ranked
    ones (the best and the worst when there are many), then those with too few interviews while
    there is room; at first the best and worst few are shown, the legend shows the others."""
    ranked, insufficient = ranking.ranked, ranking.insufficient
    half = TREND_MAX_SERIES // 2
    pool = ranked if len(ranked) <= TREND_MAX_SERIES else ranked[:half] + ranked[-half:]
    pool = pool + insufficient[:max(0, TREND_MAX_SERIES - len(pool))]
    base = ranked or pool
    if len(base) <= 2 * TREND_SHOWN:
        shown = {r.unit.key for r in base}
    else:
        shown = {r.unit.key for r in base[:TREND_SHOWN] + base[-TREND_SHOWN:]}
    return pool, shown


def _trend_data(level: str, month: str, indicator: str, units: list[tuple[int, str]], *,
                county_id: int | None = None, institution_id: int | None = None, total_label: str = "总体",
                shown: set[int] | None = None) -> dict:
    """Each unit's observed rate per month over the 12 months ending at ``month``, and the rate of
    all units of the level in the scope (``total_label``), from one aggregate query."""
    months = months_of(month, TREND_MONTHS)
    counts = aggregate(db.session, level, months, county_id=county_id, institution_id=institution_id,
                       scores=_settings().scores, by_month=True, only_units=[key for key, _ in units])
    totals = {m: Counts() for m in months}
    for (_key, m), c in counts.items():
        if m in totals:
            totals[m].add(c)

    def points(get) -> tuple[list, list]:
        values, ns = [], []
        for m in months:
            c = get(m)
            rate = Unit(level, None, "", counts=c).rate(indicator) if c is not None else None
            values.append(rate.value if rate is not None and rate.n else None)
            ns.append(rate.n if rate is not None else 0)
        return values, ns

    series = []
    for key, name in units:
        values, ns = points(lambda m, key=key: counts.get((key, m)))
        series.append({"name": name, "values": values, "n": ns, "shown": shown is None or key in shown})
    total_values, total_ns = points(lambda m: totals[m])
    return {"indicator": RATES[indicator], "months": months, "series": series,
            "total": {"name": total_label, "values": total_values, "n": total_ns}}


def _ranking_trend(level: str, f: RankingFilters, ranking: Ranking, county_id: int | None, *,
                   institution_id: int | None = None, total_label: str = "总体") -> dict:
    pool, shown = _trend_pool(ranking)
    # the same unit name can occur in two institutions ("张伟家庭医生团队"): keep the legend apart
    names = [r.unit.name for r in pool]
    units = [(r.unit.key, r.unit.name if names.count(r.unit.name) == 1 else f"{r.unit.name}（{r.unit.parent}）")
             for r in pool]
    data = _trend_data(level, f.month, f.indicator, units, county_id=county_id, institution_id=institution_id,
                       total_label=total_label, shown=shown)
    data["limited"] = len(pool) < len(ranking.ranked) + len(ranking.insufficient)
    return data


ROWS_PER_PAGE = 100


@dataclass
class TablePage:
    """The rows of one page of a ranking, as dicts (a province has thousands of teams; the page
    shows 100 at a time and turns only those into dicts, the exports carry them all)."""

    ranked: list[dict]
    insufficient: list[dict]
    page: int
    pages: int
    per_page: int
    first: int
    last: int
    ranked_total: int
    insufficient_total: int


def _paged_table(ranking: Ranking, county: dict | None) -> tuple[dict, TablePage]:
    """The ranking's table with only the asked-for page of ranked rows (``?page=``) and the
    first page of the rows with too few interviews, and that page's place in the whole."""
    ranked = ranking.ranked
    pages = max(1, -(-len(ranked) // ROWS_PER_PAGE))
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)
    start = (page - 1) * ROWS_PER_PAGE
    table = ranking_dict(ranking, county=county, ranked=ranked[start:start + ROWS_PER_PAGE],
                         insufficient=ranking.insufficient[:ROWS_PER_PAGE])
    shown = table["ranked"]
    return table, TablePage(shown, table["insufficient"], page, pages, ROWS_PER_PAGE, start + 1, start + len(shown),
                            len(ranked), len(ranking.insufficient))


def _counties() -> list[County]:
    return db.session.scalars(select(County).order_by(County.code)).all() if current_user.is_admin else []


# ---------------------------------------------------------------------------
# The rankings page
# ---------------------------------------------------------------------------


@bp.route("/reports/rankings")
@login_required
@roles_required(*STAFF)
def rankings():
    f, errors = read_filters(request.args)
    for error in errors:
        flash(f"{error}。", "error")
    county_id = f.county.id if f.county else None
    ranking = _ranking(f.level, f, county_id)
    table, rows = _paged_table(ranking, _county_dict(f.county))
    trend = _ranking_trend(f.level, f, ranking, county_id,
                           total_label=f.county.name if f.county else ("全市" if current_user.is_admin else "总体"))
    return render_template(
        "reports/rankings.html", f=f, table=table, rows=rows, funnel=_funnel_data(ranking), trend=trend,
        counties=_counties(),
        levels={k: LEVEL_LABELS[k] for k in RANK_LEVELS if k != "county" or current_user.is_admin},
        rates=RATES, indicators=INDICATORS, default_window=DEFAULT_WINDOW, recommended=RECOMMENDED_WINDOW,
        max_window=MAX_WINDOW, min_n=_settings().min_n,
    )


# ---------------------------------------------------------------------------
# Drill-down: county → institution → team → the interviews
# ---------------------------------------------------------------------------


def _unit_or_404(level: str, unit_id: int):
    """The county, institution or team, and its county (checked against the user's scope)."""
    if level == "county":
        obj = db.get_or_404(County, unit_id)
        county = obj
    elif level == "institution":
        obj = db.get_or_404(Institution, unit_id)
        county = obj.county
    elif level == "team":
        obj = db.get_or_404(Team, unit_id)
        county = obj.institution.county
    else:
        abort(404)
    require_county(current_user, county)
    return obj, county


def _find(table: dict | None, key: int) -> dict | None:
    if table is None:
        return None
    return next((r for r in table["ranked"] + table["insufficient"] if r["id"] == key), None)


def _responses(team: Team, months: list[str]) -> list:
    """The completed interviews of a team in the period, newest month first."""
    stmt = (
        select(Response, Case, Round.month, func.coalesce(func.nullif(User.real_name, ""), User.username))
        .join(Case, Case.id == Response.case_id)
        .join(Round, Round.id == Response.round_id)
        .join(User, User.id == Response.caller_id)
        .where(Response.status == "complete", Case.team_id == team.id, Round.month.in_(months))
        .order_by(Round.month.desc(), Response.completed_at.desc(), Response.id.desc())
        .limit(1000)
    )
    return db.session.execute(stmt).all()


def _service_labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    for q in current_app.extensions["questionnaires"].values():
        item = q.role_item("services")
        if item is not None:
            for option in item.options:
                labels.setdefault(option.value, option.label)
    return labels


@bp.route("/reports/unit/<level>/<int:unit_id>")
@login_required
@roles_required(*STAFF)
def unit(level: str, unit_id: int):
    obj, county = _unit_or_404(level, unit_id)
    errors: list[BadInput] = []
    month = _read_month(request.args, errors)
    window, given = _read_window(request.args, level, errors)
    indicator = _read_indicator(request.args, errors)
    for error in errors:
        flash(f"{error}。", "error")
    f = RankingFilters(level, month, window, given, indicator, county)
    institution_id = obj.id if level == "institution" else (obj.institution_id if level == "team" else None)

    # the unit's place among its peers (a county among counties: administrators only)
    peers = None
    if level != "county" or current_user.is_admin:
        peers = ranking_dict(_ranking(level, f, None if level == "county" else county.id))
    me = _find(peers, obj.id)
    if me is not None:
        indicators = me["indicators"]
        composite = me["composite"]
    else:
        settings = _settings()
        found = [u for u in unit_indicators(db.session, level, months_of(month, window), county_id=county.id,
                                            institution_id=institution_id, scores=settings.scores, only_active=False)
                 if u.key == obj.id]
        unit_ = found[0] if found else Unit(level, obj.id, obj.name)
        indicators = indicators_dict(unit_)
        composite = unit_.composite(settings.weights)

    children = funnel = trend = None
    responses = []
    child_level = CHILD_LEVEL.get(level)
    if child_level is not None:
        ranking = _ranking(child_level, f, county.id)
        if level == "institution":  # the county's teams ranked together; this institution's shown
            ranking = replace(ranking, ranked=[r for r in ranking.ranked if r.unit.institution_id == obj.id],
                              insufficient=[r for r in ranking.insufficient if r.unit.institution_id == obj.id])
        children = ranking_dict(ranking)
        funnel = _funnel_data(ranking)
        trend = _ranking_trend(child_level, f, ranking, county.id,
                               institution_id=obj.id if level == "institution" else None,
                               total_label="全县" if level == "county" else "本机构")
    else:
        name = obj.name
        trend = _trend_data("team", month, indicator, [(obj.id, name)], county_id=county.id,
                            institution_id=obj.institution_id, total_label="本机构")
        responses = _responses(obj, months_of(month, window))

    crumbs = [("county", county.id, county.name)]
    if level in ("institution", "team"):
        institution = obj if level == "institution" else obj.institution
        crumbs.append(("institution", institution.id, institution.name))
    if level == "team":
        crumbs.append(("team", obj.id, obj.name))
    return render_template(
        "reports/unit.html", f=f, level=level, obj=obj, county=county, crumbs=crumbs, peers=peers, me=me,
        indicators=indicators, composite=composite, children=children, child_level=child_level, funnel=funnel,
        trend=trend, responses=responses, months=months_of(month, window), rates=RATES, all_indicators=INDICATORS,
        level_labels=LEVEL_LABELS, default_window=DEFAULT_WINDOW, recommended=RECOMMENDED_WINDOW,
        max_window=MAX_WINDOW, satisfaction_labels=SATISFACTION_LABELS, effect_labels=EFFECT_LABELS,
        flag_labels=FLAGS, service_labels=_service_labels(), min_n=_settings().min_n,
    )


# ---------------------------------------------------------------------------
# JSON for the city's platform
# ---------------------------------------------------------------------------


def _api_error(status: int, message: str):
    return jsonify({"error": message}), status


@bp.route("/reports/api/rankings")
def api_rankings():
    """The rankings table as JSON (same filters and scope as the page). Bad input is a 400 with a
    Chinese message instead of a silent default: a program should not get another table than
    it asked for. Every answer with data is an export and is audit-logged."""
    if not current_user.is_authenticated:
        return _api_error(401, "请先登录。")
    if current_user.role not in STAFF:
        return _api_error(403, "您没有权限访问排名数据。")
    if request.args.get("level") == "county" and not current_user.is_admin:
        return _api_error(403, "县市区之间的排名只有市级管理员可以查看。")
    try:
        f, errors = read_filters(request.args)
    except NotFound:  # another county than a supervisor's own
        return _api_error(404, "找不到该县市区，或您无权查看。")
    if errors:
        return _api_error(400, "；".join(e.problem for e in errors) + "。")
    ranking = _ranking(f.level, f, f.county.id if f.county else None)
    table = ranking_dict(ranking, county=_county_dict(f.county))
    with transaction(db.session, write=True):
        audit(db.session, "export_rankings", current_user,
              target=f"rankings {f.level} {f.month}" + (f" {f.county.name}" if f.county else ""),
              detail={"via": "api", "level": f.level, "month": f.month, "window": f.window,
                      "indicator": f.indicator, "county": f.county.name if f.county else None,
                      "ranked": len(table["ranked"]), "insufficient": len(table["insufficient"])},
              county_id=f.county.id if f.county else None)
    return jsonify(table)


@bp.app_template_global()
def report_url(level: str, unit_id: int, f: RankingFilters) -> str:
    return url_for("reports.unit", level=level, unit_id=unit_id, **f.args())


# ---------------------------------------------------------------------------
# The monthly workbook
# ---------------------------------------------------------------------------


@bp.route("/reports/monthly.xlsx")
@login_required
@roles_required("admin", "supervisor")
def monthly_report():
    """A supervisor gets their own county (another county's id is 404); an admin any county, or
    the city without ``county``."""
    now = clock_now()
    tz_name = current_app.config["DISPLAY_TIMEZONE"]
    try:
        month = parse_month(request.args.get("month") or to_local(now, tz_name, "%Y-%m"))
    except DrawError:
        abort(400)
    county_arg = request.args.get("county", "").strip()
    if county_arg:
        if as_id(county_arg) is None:
            abort(404)
        county = require_county(current_user, db.session.get(County, as_id(county_arg)))
    elif current_user.is_admin:
        county = None
    else:
        county = require_county(current_user, current_user.county)
    scope = county.name if county else CITY
    path = reports_dir(current_app.config) / report_filename(month, scope)
    build_monthly_report(
        db.session, month, county.id if county else None, path, config=current_app.config,
        settings=current_app.extensions["report_settings"], questionnaires=current_app.extensions["questionnaires"],
        now=now,
    )
    with transaction(db.session):
        audit_export(db.session, month, scope, path, actor=current_user, county_id=county.id if county else None)
    return send_file(path, as_attachment=True, download_name=path.name,
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


# ---------------------------------------------------------------------------
# The progress board (调查进度)
# ---------------------------------------------------------------------------


@bp.route("/calls/board")
@login_required
@roles_required(*STAFF)
def board():
    now = clock_now()
    month = request.args.get("month") or current_month(now)
    stmt = county_filter(current_user, select(Round).join(County), Round.county_id).where(Round.month == month)
    # one county of the city (the overview's links); a supervisor's board is their county anyway
    county_id = as_id(request.args.get("county")) if current_user.is_admin else None
    county = db.session.get(County, county_id) if county_id else None
    if county is not None:
        stmt = stmt.where(Round.county_id == county.id)
    rounds = db.session.scalars(stmt.order_by(County.code)).all()
    data = board_rows(db.session, [r.id for r in rounds], now)
    callers = {r.id: caller_stats(db.session, [r.id]) for r in rounds}
    problems = problem_counts(db.session, [r.id for r in rounds])
    return render_template("reports/board.html", rounds=rounds, data=data, month=month, callers=callers,
                           problems=problems, no_problems=EMPTY_COUNTS, county=county)
