"""The monthly report workbook (.xlsx) for a county or the whole city.

One workbook, five sheets, each built from the function the matching screen uses, so the
numbers are the same by construction:

- 汇总: progress and AAPOR outcome counts/rates per institution, county and city, from
  ``board_rows`` (the supervisors' board), beside the month's key indicators from
  ``unit_indicators``;
- 机构排名 / 团队排名: ``build_ranking`` with the rankings page's defaults (institutions on the
  month, teams on a rolling 12-month window), ranked rows first, then the 样本不足 rows;
- 问题清单: the month's rectification list (Problem rows);
- 明细: one row per active case (primaries and activated backups) with its outcome and answers;
- 说明: the audit chain's head when the workbook was made (record id and hash), so a later
  rewrite of the audit log contradicts the paper already sent (``flask audit verify --expect``).

Phones are masked everywhere (ID numbers and phones typed into free text too), every workbook
is written through ``app.core.spreadsheets.write_xlsx`` (formula injection neutralised, atomic
write), files are mode 0600 and never inside sample_lists, and every export is written to the
audit log.

Entry point: ``build_monthly_report``, used by GET /reports/monthly.xlsx?month=YYYY-MM&county=<id>
(endpoint ``reports.monthly_report``, app/reports/routes.py) and ``flask report monthly --month
YYYY-MM [--county NAME] [--output PATH]`` (app/reports/cli.py).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import case as sql_case
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.calls.outcomes import AAPOR_LABELS, aapor_class, label
from app.core.clock import to_local
from app.core.masking import mask_phone, scrub_free_text
from app.core.spreadsheets import write_xlsx
from app.draws.calllists import SEX, safe_dirname, sample_label
from app.models import PROBLEM_STATUS_LABELS, audit, AuditChainHead, Case, County, Institution, Problem, Response, Round, Team
from app.questionnaires import FLAGS, Questionnaire, load_questionnaires
from app.reports.board import Progress, board_rows
from app.reports.indicators import LEVEL_LABELS, RATES, Unit, unit_indicators
from app.reports.rankings import POSITION_LABELS, Ranking, build_ranking
from app.reports.settings import ReportSettings

AUDIT_ACTION = "export_monthly_report"
CITY = "全市"
SHEETS = ("汇总", "机构排名", "团队排名", "问题清单", "明细", "说明")
# the rankings page's defaults: institutions on the month, teams on a rolling 12 months
INSTITUTION_WINDOW = 1
TEAM_WINDOW = 12
RANK_INDICATOR = "satisfaction"
REPORTS_FOLDER = "monthly_reports"  # a sibling of IMPORT_REPORTS_DIR

PERCENT = "0.0%"
CHANGE = "+0.0%;-0.0%;0.0%"
ONE_DECIMAL = "0.0"

# 汇总: the board's columns (same labels as the board screen), AAPOR counts and rates,
# then the month's indicators
PROGRESS_COLUMNS = {
    "目标": "target", "已完成": "completed", "已拨未结束": "underway", "未拨打": "untouched",
    "尚缺": "remaining", "拨打次数": "attempts", "待回访": "callbacks", "已替换": "replacements",
    "样本缺口": "shortfall",
}
AAPOR_COUNT_COLUMNS = {f"{AAPOR_LABELS[c]}({c})": c for c in ("I", "P", "R", "NC", "O", "UH", "NE")}
AAPOR_RATE_COLUMNS = ("RR1", "RR2", "COOP1", "REF1", "CON1")
INDICATOR_RATES = ("satisfaction", "aware", "knows_doctor", "fulfilment", "effect")  # before the score
N_COLUMN = "完成访问数(n)"
SCORE_COLUMN = "满意度得分"
FLAGGED_COLUMN = "问题数"

# 机构排名 / 团队排名
RANK_COLUMNS = ("名次", "状态", "单位", "所属", "完成访问数", "达标数", "有效回答数", "观察值", "95%区间下限", "95%区间上限",
                "调整后", "上期调整后", "上期有效回答数", "变化", "漏斗图位置", "综合得分")

NUMBER_FORMATS = {
    **{c: PERCENT for c in AAPOR_RATE_COLUMNS},
    **{RATES[c]: PERCENT for c in RATES},
    "观察值": PERCENT, "95%区间下限": PERCENT, "95%区间上限": PERCENT, "调整后": PERCENT, "上期调整后": PERCENT,
    "变化": CHANGE, SCORE_COLUMN: ONE_DECIMAL, "综合得分": ONE_DECIMAL,
}
WIDTHS = {
    "层级": 12, "县市区": 12, "机构": 24, "团队": 22, "单位": 24, "所属": 30, "姓名": 12, "联系电话": 28,
    "人群类别": 24, "样本类型": 12, "结果": 16, "AAPOR类别": 14, "替换情况": 30, "问题标记": 30, "问题": 30,
    "整改情况": 40, "漏斗图位置": 18, "状态": 12, "访问时间": 18, "发现时间": 18, "交办时间": 18, "整改时间": 18,
    "项目": 24, "内容": 90, "名次": 8, "编号": 8, "序号": 8, "性别": 6, "年龄": 6, "拨打次数": 10,
    **{c: 9 for c in AAPOR_RATE_COLUMNS},
}

_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def _flag_labels(codes: str | None) -> str:
    return "、".join(FLAGS.get(code, code) for code in (codes or "").split(",") if code)


def _phones(case: Case) -> str:
    return mask_phone(case.phone) + (f" / {mask_phone(case.phone2)}" if case.phone2 else "")


def _tz_label(tz_name: str) -> str:
    return "北京时间" if tz_name == "Asia/Shanghai" else tz_name


# ---------------------------------------------------------------------------
# 汇总
# ---------------------------------------------------------------------------


def _indicator_values(unit: Unit | None) -> dict:
    values: dict = {N_COLUMN: unit.n if unit else None}
    for code in INDICATOR_RATES:
        values[RATES[code]] = unit.rate(code).value if unit else None
    values[SCORE_COLUMN] = unit.score if unit else None
    values[RATES["renew"]] = unit.rate("renew").value if unit else None
    values[FLAGGED_COLUMN] = unit.counts.flagged if unit else None
    return values


def _summary_row(level: str, county: str, institution: str, progress: Progress, unit: Unit | None) -> dict:
    row = {"层级": level, "县市区": county, "机构": institution}
    row.update({column: getattr(progress, attr) for column, attr in PROGRESS_COLUMNS.items()})
    rates = progress.aapor
    row.update({column: getattr(rates, code) for column, code in AAPOR_COUNT_COLUMNS.items()})
    row.update({code: getattr(rates, code) for code in AAPOR_RATE_COLUMNS})
    row.update(_indicator_values(unit))
    return row


def summary_frame(session: Session, rounds: list[Round], month: str, county_id: int | None, *,
                  settings: ReportSettings, now: datetime) -> pd.DataFrame:
    """Institution rows and a 合计 row per county (a 全市合计 row for the city), the progress
    and AAPOR figures straight from ``board_rows``, the indicators from ``unit_indicators``."""
    institutions = {u.key: u for u in unit_indicators(session, "institution", [month], county_id=county_id,
                                                       scores=settings.scores)}
    counties = {u.key: u for u in unit_indicators(session, "county", [month], county_id=county_id,
                                                   scores=settings.scores)}
    rows = []
    city = Progress("合计")
    for progress in board_rows(session, [r.id for r in rounds], now):
        name = progress.round.county.name
        for inst in progress.institutions:
            rows.append(_summary_row("机构", name, inst.name, inst, institutions.get(inst.institution_id)))
        rows.append(_summary_row("县市区合计", name, "合计", progress.total, counties.get(progress.round.county_id)))
        city.add(progress.total)
    if county_id is None:
        city_unit = unit_indicators(session, "city", [month], scores=settings.scores)[0]
        rows.append(_summary_row("全市合计", CITY, "", city, city_unit))
    columns = (["层级", "县市区", "机构", *PROGRESS_COLUMNS, *AAPOR_COUNT_COLUMNS, *AAPOR_RATE_COLUMNS,
                *_indicator_values(None)])
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------
# 机构排名 / 团队排名
# ---------------------------------------------------------------------------


def rankings(session: Session, month: str, county_id: int | None, settings: ReportSettings) -> tuple[Ranking, Ranking]:
    common = dict(indicator=RANK_INDICATOR, county_id=county_id, scores=settings.scores, weights=settings.weights)
    institutions = build_ranking(session, "institution", month, window=INSTITUTION_WINDOW,
                                 min_n=settings.min_n["institution"], **common)
    teams = build_ranking(session, "team", month, window=TEAM_WINDOW, min_n=settings.min_n["team"], **common)
    return institutions, teams


def ranking_frame(ranking: Ranking) -> pd.DataFrame:
    rows = []
    for row in ranking.ranked + ranking.insufficient:
        rows.append({
            "名次": row.rank,
            "状态": "参与排名" if row.rank is not None else "样本不足",
            "单位": row.unit.name,
            "所属": row.unit.parent,
            "完成访问数": row.completes,
            "达标数": row.successes,
            "有效回答数": row.n,
            "观察值": row.observed,
            "95%区间下限": row.low,
            "95%区间上限": row.high,
            "调整后": row.adjusted,
            "上期调整后": row.previous,
            "上期有效回答数": row.previous_n if row.previous is not None else None,
            "变化": row.change,
            "漏斗图位置": POSITION_LABELS.get(row.position, "") if row.position else "",
            "综合得分": row.composite,
        })
    # the unit column is named as on the rankings page (机构 / 团队)
    return pd.DataFrame(rows, columns=list(RANK_COLUMNS)).rename(columns={"单位": LEVEL_LABELS[ranking.level]})


def _period(ranking: Ranking) -> str:
    if ranking.window == 1:
        return f"{ranking.month}（当月）"
    return f"{ranking.months[0]}至{ranking.months[-1]}（近{ranking.window}个月滚动）"


def ranking_title(ranking: Ranking, head: str) -> str:
    overall = f"{ranking.overall * 100:.1f}%" if ranking.overall is not None else "—"
    return (f"{head} · {LEVEL_LABELS[ranking.level]}排名 · 指标：{ranking.label} · 期间：{_period(ranking)} · "
            f"按调整后比率（经验贝叶斯）排名，完成访问数少于{ranking.min_n}的列为样本不足（不排名） · "
            f"总体{ranking.label} {overall}")


# ---------------------------------------------------------------------------
# 问题清单
# ---------------------------------------------------------------------------

PROBLEM_COLUMNS = ("编号", "县市区", "机构", "团队", "姓名", "联系电话", "问题", "状态", "整改情况", "发现时间",
                   "交办时间", "整改时间")


def problems_frame(session: Session, month: str, county_id: int | None, tz_name: str) -> pd.DataFrame:
    stmt = (
        select(Problem, Case, County.name, Institution.name, Team.name)
        .join(Response, Response.id == Problem.response_id)
        .join(Case, Case.id == Response.case_id)
        .join(County, County.id == Problem.county_id)
        .join(Institution, Institution.id == Problem.institution_id)
        .join(Team, Team.id == Problem.team_id)
        .where(Problem.month == month)
        .order_by(County.code, Institution.name, Team.name, Problem.id)
    )
    if county_id is not None:
        stmt = stmt.where(Problem.county_id == county_id)
    rows = []
    for problem, case, county, institution, team in session.execute(stmt):
        rows.append({
            "编号": problem.id,
            "县市区": county,
            "机构": institution,
            "团队": team,
            "姓名": case.name,
            "联系电话": _phones(case),
            "问题": _flag_labels(problem.flags),
            "状态": PROBLEM_STATUS_LABELS.get(problem.status, problem.status),
            "整改情况": scrub_free_text(problem.note),
            "发现时间": to_local(problem.created_at, tz_name),
            "交办时间": to_local(problem.assigned_at, tz_name),
            "整改时间": to_local(problem.closed_at, tz_name),
        })
    return pd.DataFrame(rows, columns=list(PROBLEM_COLUMNS))


# ---------------------------------------------------------------------------
# 明细
# ---------------------------------------------------------------------------

DETAIL_COLUMNS = ("序号", "县市区", "机构", "团队", "姓名", "性别", "年龄", "人群类别", "联系电话", "样本类型",
                  "状态", "拨打次数", "结果", "AAPOR类别", "替换情况", "访问时间")
DETAIL_TAIL = ("问题标记",)


def _outcome_label(case: Case) -> str:
    if case.outcome is None and not case.attempt_count:
        return "未拨打"
    return label(case.outcome)


def _aapor_label(case: Case) -> str:
    # as on the board: a case without a disposition yet counts as unknown eligibility
    code = aapor_class(case.outcome) or "UH"
    return f"{code} {AAPOR_LABELS.get(code, '')}".strip()


def _replacement(case: Case, by_id: dict[int, Case], replaced_by: dict[int, Case]) -> str:
    parts = []
    if case.replaces_case_id is not None:
        old = by_id.get(case.replaces_case_id)
        if old is not None:
            parts.append(f"替换{sample_label(old.kind, old.position)}（{label(old.outcome)}）")
        else:
            parts.append("替换其他样本")
    new = replaced_by.get(case.id)
    if new is not None:
        parts.append(f"已由{sample_label(new.kind, new.position)}替换")
    elif case.replacement_state == "none_left":
        parts.append("需替换但无备用样本")
    return "；".join(parts)


def _option_with_score(q: Questionnaire, role: str, score) -> str | None:
    item = q.role_item(role)
    if item is None:
        return None
    for option in item.options:
        if option.score == score and (score is not None or not option.end):
            return option.label
    return None


def _derived_answers(q: Questionnaire, response: Response) -> dict[str, str]:
    """For a response stored without its raw answers: the derived columns in the questionnaire's
    own words (item title -> option label)."""
    shown: dict[str, str] = {}

    def put(role: str, text: str | None) -> None:
        item = q.role_item(role)
        if item is not None and text:
            shown[item.title] = text

    identity = q.role_item("identity")
    if identity is not None and response.proxy is not None:
        proxy = [o for o in identity.options if o.proxy]
        own = [o for o in identity.options if not o.proxy and not o.end]
        if response.proxy:
            put("identity", proxy[0].label if len(proxy) == 1 else "家属代答")
        else:
            put("identity", own[0].label if own else None)
    for role in ("aware", "knows_doctor", "wants_contact"):
        value = getattr(response, role)
        if value is not None:
            put(role, _option_with_score(q, role, 1.0 if value else 0.0))
    if response.renew is not None:
        put("renew", _option_with_score(q, "renew", 1.0 if response.renew else 0.0))
    elif response.renew_answered:
        put("renew", _option_with_score(q, "renew", None))
    for role in ("effect", "satisfaction"):
        value = getattr(response, role)
        if value is not None:
            put(role, _option_with_score(q, role, float(value)))
    services = q.role_item("services")
    if services is not None and response.services:
        labels = []
        for code in response.services.split(","):
            try:
                labels.append(services.option(code).label)
            except Exception:  # an option code of another version: show it as stored
                labels.append(code)
        put("services", "、".join(labels))
    if response.service_count is not None:
        put("service_count", str(response.service_count))
    return shown


def _answers(q: Questionnaire | None, response: Response) -> dict[str, str]:
    if q is None:
        return {}
    try:
        answers = json.loads(response.answers or "{}")
    except ValueError:
        answers = {}
    shown = {title: scrub_free_text(text) for _code, title, text in q.display(answers)} if answers else {}
    return shown or _derived_answers(q, response)


def answer_titles(questionnaires: Mapping[str, Questionnaire], versions: list[str]) -> list[str]:
    titles: list[str] = []
    for version in versions:
        q = questionnaires.get(version)
        for item in q.items if q else ():
            if item.title not in titles:
                titles.append(item.title)
    return titles


def _answer_column(title: str) -> str:
    return f"{title}（回答）" if title in DETAIL_COLUMNS or title in DETAIL_TAIL else title


def detail_frame(session: Session, rounds: list[Round], questionnaires: Mapping[str, Questionnaire],
                 tz_name: str) -> pd.DataFrame:
    round_ids = [r.id for r in rounds]
    county_of = {r.id: r.county.name for r in rounds}
    code_of = {r.id: r.county.code for r in rounds}
    cases = list(session.scalars(
        select(Case).where(Case.round_id.in_(round_ids), Case.status != "reserve").order_by(
            Case.institution_name, Case.institution_id, Case.team_name, Case.team_id,
            sql_case((Case.kind == "primary", 0), else_=1), Case.position,
        )
    )) if round_ids else []
    cases.sort(key=lambda c: code_of[c.round_id])  # stable: county first, then the order above
    by_id = {c.id: c for c in cases}
    replaced_by = {c.replaces_case_id: c for c in cases if c.replaces_case_id is not None}
    responses: dict[int, Response] = {}
    if round_ids:
        for response in session.scalars(
            select(Response).where(Response.round_id.in_(round_ids), Response.status.in_(("complete", "partial")))
            .order_by(Response.id)
        ):
            kept = responses.get(response.case_id)
            if kept is None or kept.status != "complete" or response.status == "complete":
                responses[response.case_id] = response
    versions = sorted({r.questionnaire_version for r in rounds} | {r.questionnaire_version for r in responses.values()})
    titles = answer_titles(questionnaires, versions)
    columns = list(DETAIL_COLUMNS) + [_answer_column(t) for t in titles] + list(DETAIL_TAIL)
    rows = []
    for number, case in enumerate(cases, start=1):
        response = responses.get(case.id)
        row = {
            "序号": number,
            "县市区": county_of[case.round_id],
            "机构": case.institution_name,
            "团队": case.team_name,
            "姓名": case.name,
            "性别": SEX.get(case.sex, ""),
            "年龄": case.age,
            "人群类别": case.population_labels,
            "联系电话": _phones(case),
            "样本类型": sample_label(case.kind, case.position),
            "状态": case.state_label,
            "拨打次数": case.attempt_count,
            "结果": _outcome_label(case),
            "AAPOR类别": _aapor_label(case),
            "替换情况": _replacement(case, by_id, replaced_by),
            "访问时间": to_local(response.completed_at, tz_name) if response is not None else "",
            "问题标记": _flag_labels(response.flags) if response is not None else "",
        }
        if response is not None:
            for title, text in _answers(questionnaires.get(response.questionnaire_version), response).items():
                row[_answer_column(title)] = text
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------
# The workbook
# ---------------------------------------------------------------------------


def notes_frame(session: Session) -> pd.DataFrame:
    """The audit chain's head as committed now: anyone holding the workbook can later check
    that the log up to that record was not rewritten."""
    head = session.get(AuditChainHead, 1, populate_existing=True)
    if head is None or not head.seq:
        rows = [("审计链头", "尚无审计记录")]
    else:
        rows = [
            ("审计链头", f"记录 #{head.audit_id}（第 {head.seq} 条）"),
            ("审计链头哈希（SHA-256）", head.hash),
            ("核对方法", f"flask --app wsgi audit verify --expect {head.audit_id}:{head.hash}"),
        ]
    return pd.DataFrame(rows, columns=["项目", "内容"])


def scope_name(session: Session, county_id: int | None) -> str:
    if county_id is None:
        return CITY
    county = session.get(County, county_id)
    if county is None:
        raise ValueError(f"unknown county id: {county_id}")
    return county.name


def build_monthly_report(
    session: Session,
    month: str,
    county_id: int | None,
    path: str | Path,
    *,
    config: Mapping,
    settings: ReportSettings | None = None,
    questionnaires: Mapping[str, Questionnaire] | None = None,
    now: datetime | None = None,
) -> Path:
    """Write the month's report of one county (or of the city when ``county_id`` is None) to
    ``path`` and return it. ``config`` is the application's config (time zone, report settings,
    questionnaires folder); ``settings`` and ``questionnaires`` default to what it says."""
    if not _MONTH.fullmatch(month or ""):
        raise ValueError(f"month must be YYYY-MM: {month!r}")
    settings = settings or ReportSettings.from_config(config)
    questionnaires = questionnaires if questionnaires is not None else load_questionnaires(config["QUESTIONNAIRES_DIR"])
    now = now or datetime.now(timezone.utc)
    tz_name = config.get("DISPLAY_TIMEZONE", "Asia/Shanghai")
    scope = scope_name(session, county_id)
    stmt = select(Round).join(County, County.id == Round.county_id).where(Round.month == month).order_by(County.code)
    if county_id is not None:
        stmt = stmt.where(Round.county_id == county_id)
    rounds = list(session.scalars(stmt))

    head = f"{scope} {month} 家庭医生签约服务满意度电话调查月度报告"
    made = f"生成时间：{to_local(now, tz_name)}（{_tz_label(tz_name)}）"
    institution_ranking, team_ranking = rankings(session, month, county_id, settings)
    sheets = {
        "汇总": summary_frame(session, rounds, month, county_id, settings=settings, now=now),
        "机构排名": ranking_frame(institution_ranking),
        "团队排名": ranking_frame(team_ranking),
        "问题清单": problems_frame(session, month, county_id, tz_name),
        "明细": detail_frame(session, rounds, questionnaires, tz_name),
        "说明": notes_frame(session),
    }
    if not rounds:
        head += "（本月没有抽样轮次）"
    titles = {
        "汇总": f"{head} · 汇总（进度与AAPOR应答率、本月主要指标）· {made}",
        "机构排名": f"{ranking_title(institution_ranking, head)} · {made}",
        "团队排名": f"{ranking_title(team_ranking, head)} · {made}",
        "问题清单": f"{head} · 问题清单（整改）· {made}",
        "明细": f"{head} · 明细（每个样本一行，电话已隐藏）· {made}",
        "说明": f"{head} · 说明 · {made}",
    }
    path = Path(path)
    write_xlsx(path, sheets, {**WIDTHS, **_answer_widths(sheets["明细"])}, titles=titles,
               number_formats=NUMBER_FORMATS)
    os.chmod(path, 0o600)
    return path


def _answer_widths(detail: pd.DataFrame) -> dict[str, int]:
    """Answer columns as wide as their longest answer (within reason)."""
    widths = {}
    for column in detail.columns[len(DETAIL_COLUMNS):-len(DETAIL_TAIL)]:
        longest = max((len(str(v)) for v in detail[column] if isinstance(v, str)), default=0)
        widths[str(column)] = max(12, min(40, max(longest, len(str(column))) * 2 + 2))
    return widths


def is_inside(path: Path, folder: str | Path | None) -> bool:
    if not folder:
        return False
    try:
        path.resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def reports_dir(config: Mapping) -> Path:
    """Where monthly reports are kept: beside IMPORT_REPORTS_DIR, never inside sample_lists
    (a temporary folder if the configuration would put them there)."""
    folder = Path(config["IMPORT_REPORTS_DIR"]).parent / REPORTS_FOLDER
    if is_inside(folder, config.get("SAMPLE_LISTS_DIR")):
        folder = Path(tempfile.gettempdir()) / f"survey-{REPORTS_FOLDER}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def report_filename(month: str, scope: str) -> str:
    return f"{month}-{safe_dirname(scope)}-月度报告.xlsx"


def audit_export(session: Session, month: str, scope: str, path: Path, *, actor, county_id: int | None = None) -> None:
    """The export's audit row (a User, or a process named by a string); the boundary commits."""
    audit(session, AUDIT_ACTION, actor, target=f"{scope} {month}", detail=str(path), county_id=county_id)
