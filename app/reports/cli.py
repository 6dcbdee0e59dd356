"""`flask report …`: the rankings table and the monthly workbook from the command line."""
from __future__ import annotations

import getpass
import io
import json

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog, County
from app.reports.indicators import RATES
from app.reports.rankings import build_ranking
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
    from app.reports.routes import DEFAULT_WINDOW, MAX_WINDOW, MONTH_PATTERN, RANK_LEVELS

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

    db.session.add(AuditLog(
        actor=_actor(), action="export_rankings",
        target=f"rankings {level} {month}" + (f" {county.name}" if county else ""),
        detail=json.dumps({"via": "cli", "level": level, "month": month, "window": window, "indicator": indicator,
                           "county": county.name if county else None, "format": fmt,
                           "ranked": len(table["ranked"]), "insufficient": len(table["insufficient"])},
                          ensure_ascii=False),
    ))
    db.session.commit()
    _write(text)
