"""`flask report …`: the rankings table and the monthly workbook from the command line."""
from __future__ import annotations

import getpass
import io
import json
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.core.transactions import transaction
from app.core.clock import clock_now
from app.draws.services import DrawError, counties_for, parse_month
from app.extensions import db
from app.models import audit, County, Round
from app.reports.excel import CITY, audit_export, build_monthly_report, is_inside, report_filename, reports_dir
from app.reports.indicators import RATES
from app.reports.rankings import DEFAULT_WINDOW, MAX_WINDOW, MONTH_PATTERN, RANK_LEVELS, build_ranking
from app.reports.tables import ranking_dict, write_csv

report_cli = AppGroup("report", help="报表：排名、月度报告")


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _write(text: str) -> None:
    """UTF-8 on stdout whatever the terminal's locale says (bytes go to the binary stream)."""
    click.echo(text.encode("utf-8"), nl=False)


@report_cli.command("rankings")
@click.option("--month", help="月份 YYYY-MM（统计期的最后一个月）")
@click.option("--level", help="层级：team（团队）、institution（机构）、county（县市区）")
@click.option("--window", help="统计窗口（月数，1–12）；默认团队12个月，机构和县市区1个月")
@click.option("--county", "county_name", help="县市区名称（不填为全市）")
@click.option("--indicator", default="satisfaction", show_default=True,
              help="排名指标：" + "、".join(f"{k}（{v}）" for k, v in RATES.items()))
@click.option("--format", "fmt", default="csv", show_default=True, help="输出格式：csv 或 json")
def rankings_command(month, level, window, county_name, indicator, fmt):
    """把排名表输出到标准输出（csv：中文表头，UTF-8；json：与 /reports/api/rankings 相同），并记入操作日志。"""
    month = (month or "").strip()
    if not MONTH_PATTERN.match(month):
        raise click.ClickException(f"月份格式应为 YYYY-MM（例如 2026-11），收到：{month or '空'}")
    if level not in RANK_LEVELS:
        raise click.ClickException(f"层级应为 team（团队）、institution（机构）或 county（县市区），收到：{level or '空'}")
    if window is None or not str(window).strip():
        window = DEFAULT_WINDOW[level]
    elif str(window).strip().isdigit() and 1 <= int(window) <= MAX_WINDOW:
        window = int(window)
    else:
        raise click.ClickException(f"统计窗口应为1到{MAX_WINDOW}之间的整数（月数），收到：{window}")
    if indicator not in RATES:
        raise click.ClickException(
            f"未知的排名指标：{indicator}。可选：" + "、".join(f"{k}（{v}）" for k, v in RATES.items()))
    if fmt not in ("csv", "json"):
        raise click.ClickException(f"输出格式应为 csv 或 json，收到：{fmt}")
    county = None
    if county_name:
        if level == "county":
            raise click.ClickException("按县市区排名时不能再指定 --county（县市区之间相互比较）。")
        county = db.session.scalar(select(County).where(County.name == county_name.strip()))
        if county is None:
            raise click.ClickException(f"找不到县市区：{county_name}")

    settings = current_app.extensions["report_settings"]
    ranking = build_ranking(db.session, level, month, window=window, indicator=indicator,
                            county_id=county.id if county else None, min_n=settings.min_n.get(level),
                            scores=settings.scores, weights=settings.weights)
    table = ranking_dict(ranking, county={"id": county.id, "name": county.name} if county else None)
    if fmt == "json":
        text = json.dumps(table, ensure_ascii=False, allow_nan=False, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        write_csv(table, buffer)
        text = buffer.getvalue()

    with transaction(db.session):
        audit(db.session, "export_rankings", _actor(),
              target=f"rankings {level} {month}" + (f" {county.name}" if county else ""),
              detail={"via": "cli", "level": level, "month": month, "window": window, "indicator": indicator,
                      "county": county.name if county else None, "format": fmt,
                      "ranked": len(table["ranked"]), "insufficient": len(table["insufficient"])},
              county_id=county.id if county else None)
    _write(text)


@report_cli.command("monthly")
@click.option("--month", help="月份 YYYY-MM")
@click.option("--county", default=None, help="县市区名称（不填为全市）")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="输出文件路径（默认放在报告目录）")
def monthly_command(month, county, output):
    """生成月度报告（汇总、机构排名、团队排名、问题清单、明细）的 Excel 文件，并打印路径。"""
    try:
        month = parse_month(month)
        county_obj = counties_for(db.session, [county])[0] if county else None
    except DrawError as exc:
        raise click.ClickException(str(exc)) from exc
    scope = county_obj.name if county_obj else CITY
    config = current_app.config
    if output:
        path = Path(output)
        if path.suffix.lower() != ".xlsx":
            raise click.ClickException(f"输出文件应以 .xlsx 结尾：{output}")
        if is_inside(path, config.get("SAMPLE_LISTS_DIR")):
            raise click.ClickException("月度报告含居民信息，不能写入呼叫名单目录（SAMPLE_LISTS_DIR）。")
    else:
        path = reports_dir(config) / report_filename(month, scope)
    stmt = select(Round.id).where(Round.month == month)
    if county_obj is not None:
        stmt = stmt.where(Round.county_id == county_obj.id)
    has_rounds = db.session.scalar(stmt.limit(1))
    try:
        build_monthly_report(
            db.session, month, county_obj.id if county_obj else None, path, config=config,
            settings=current_app.extensions["report_settings"], questionnaires=current_app.extensions["questionnaires"],
            now=clock_now(),
        )
    except OSError as exc:
        raise click.ClickException(f"无法写入文件 {path}：{exc.strerror or exc}") from exc
    with transaction(db.session):
        audit_export(db.session, month, scope, path, actor=_actor(), county_id=county_obj.id if county_obj else None)
    if has_rounds is None:
        click.echo(f"注意：{scope} {month} 没有抽样轮次，报告中没有数据。")
    click.echo(f"月度报告：{path}")
