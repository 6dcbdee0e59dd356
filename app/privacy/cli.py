"""flask privacy purge [--dry-run]: erase the personal data kept longer than the retention
period (PERSONAL_DATA_RETENTION_MONTHS). The scheduler's nightly job calls ``run_purge``."""
from __future__ import annotations

import getpass
from datetime import datetime
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.core.clock import clock_now, to_local
from app.core.transactions import transaction
from app.draws.calllists import call_list_paths
from app.extensions import db
from app.privacy.services import PurgeError, PurgeResult, purge
from app.reports.excel import CITY, report_filename, reports_dir

privacy_cli = AppGroup("privacy", help="个人信息保护")

LABELS = (("rounds", "轮次"), ("cases", "样本"), ("attempts", "有备注的拨打记录"), ("responses", "含文字回答的问卷"),
          ("answer_edits", "答案更正记录"), ("problems", "有整改说明的问题"))


def stale_files(config, pairs: list[tuple[str, str]]) -> list[Path]:
    """The call lists and saved monthly reports of erased rounds (they hold names and phones)."""
    paths: list[Path] = []
    folder = reports_dir(config)
    for county, month in pairs:
        paths += call_list_paths(config["SAMPLE_LISTS_DIR"], county, month)
        paths += [folder / report_filename(month, county), folder / report_filename(month, CITY)]
    return [p for p in dict.fromkeys(paths) if p.exists()]


def run_purge(app: Flask, *, now: datetime, actor: str, dry_run: bool = False) -> PurgeResult:
    """One purge as one unit of work (a dry run is rolled back), then the erased rounds' files."""
    with transaction(db.session, commit=not dry_run):
        result = purge(db.session, now=now, months=app.config["PERSONAL_DATA_RETENTION_MONTHS"],
                       questionnaires=app.extensions["questionnaires"], actor=actor, dry_run=dry_run)
    if not dry_run:
        result.removed = stale_files(app.config, result.files)
        for path in result.removed:
            path.unlink(missing_ok=True)
    return result


def summary_lines(result: PurgeResult, months: int) -> list[str]:
    plan = result.plan
    lines = [f"保存期限 {months} 个月：{to_local(plan.cutoff)} 之前关闭的轮次、停用超过此期限的居民。"]
    for m in plan.months:
        counts = m.as_dict()
        lines.append(f"{m.month}：" + "，".join(f"{label} {counts[key]}" for key, label in LABELS))
    lines.append(f"停用超过保存期限的居民：{plan.residents}")
    lines.append(f"含文字内容的审计记录详情（答案更正、问题整改）：{plan.audit_details}")
    if result.removed:
        lines.append(f"已删除呼叫名单和月度报告文件：{len(result.removed)} 个")
    return lines


@privacy_cli.command("purge")
@click.option("--dry-run", is_flag=True, help="只列出将删除的数量（按月份和数据表），不做任何修改")
def purge_command(dry_run):
    """删除超过保存期限（PERSONAL_DATA_RETENTION_MONTHS）的个人信息：关闭已久的轮次中样本的
    姓名、电话、人群类别和文字记录，以及停用已久的居民的姓名、电话、地址和人群类别。
    匿名的答案、结果和所有统计数字保留不变。"""
    app = current_app._get_current_object()
    months = app.config["PERSONAL_DATA_RETENTION_MONTHS"]
    try:
        result = run_purge(app, now=clock_now(), actor=f"cli:{getpass.getuser()}", dry_run=dry_run)
    except PurgeError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in summary_lines(result, months):
        click.echo(line)
    if result.plan.empty:
        click.echo("没有超过保存期限的个人信息。")
    elif dry_run:
        click.echo("试运行：未做任何修改。")
    else:
        click.echo("已删除，并记入审计日志。")
