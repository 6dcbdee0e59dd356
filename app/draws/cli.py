"""flask draw --month YYYY-MM [--county NAME]; draw verify / redraw / close; export call-list."""
import getpass

import click
from flask import current_app
from flask.cli import AppGroup

from app.draws.calllists import write_call_list
from app.draws.context import call_list_writer, draw_settings
from app.core.transactions import transaction
from app.core.clock import clock_now
from app.draws.services import DrawError, counties_for, draw_month_and_commit, find_round, parse_month, redraw_round, verify_round
from app.scheduler.month_end import close_round
from app.extensions import db
from app.models import audit


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _round_for(month: str | None, county_name: str | None):
    """The round of a county's month, or a Chinese error and exit 1."""
    try:
        month = parse_month(month)
        county = counties_for(db.session, [county_name])[0]
    except DrawError as exc:
        raise click.ClickException(str(exc)) from exc
    round_ = find_round(db.session, county.id, month)
    if round_ is None:
        raise click.ClickException(f"{county.name} {month} 尚未抽样。")
    return round_


def print_outcome(outcome) -> None:
    click.echo(outcome.message)
    for unit in outcome.shortfalls:
        click.echo(f"  · {unit.institution}：{unit.reason}")
    for path in outcome.files:
        click.echo(f"  呼叫名单：{path}")


@click.group("draw", cls=AppGroup, invoke_without_command=True)
@click.option("--month", help="月份 YYYY-MM")
@click.option("--county", "county_names", multiple=True, help="县市区名称（可重复；不填为全部）")
@click.option("--sample-size", type=int, help="每个机构的主样本量（不少于10）")
@click.option("--backups", type=int, help="每个机构的备用样本量")
@click.pass_context
def draw_cli(ctx, month, county_names, sample_size, backups):
    """抽取某月的调查样本（每个县市区每月一次）。"""
    if ctx.invoked_subcommand is not None:
        return
    try:
        month = parse_month(month)
        settings = draw_settings(current_app, sample_size=sample_size, backup_size=backups)
        ids = [c.id for c in counties_for(db.session, list(county_names))] if county_names else None
        outcomes = draw_month_and_commit(
            db.session, month, now=clock_now(), settings=settings, actor=_actor(),
            county_ids=ids, after_draw=call_list_writer(current_app, db.session),
        )
    except DrawError as exc:
        raise click.ClickException(str(exc)) from exc
    if not outcomes:
        click.echo("没有县市区。请先导入名册。")
    for outcome in outcomes:
        print_outcome(outcome)
    if any(o.status == "failed" for o in outcomes):
        ctx.exit(1)


@draw_cli.command("verify")
@click.option("--month", required=True, help="月份 YYYY-MM")
@click.option("--county", required=True, help="县市区名称")
def verify_command(month, county):
    """由记录的种子、参数和符合条件名单重算抽样，逐个核对样本。"""
    round_ = _round_for(month, county)
    result = verify_round(db.session, round_)
    click.echo(f"{round_.county.name} {round_.month}：种子 {round_.seed}（盐值 {round_.salt}），"
               f"符合条件 {round_.eligible_count} 人，哈希 {round_.eligible_hash}")
    for line in result.lines:
        click.echo("  " + line)
    if result.ok:
        click.echo("核验通过：每个样本都与重算结果一致。")
    else:
        raise click.ClickException("核验未通过。")


@draw_cli.command("redraw")
@click.option("--month", required=True, help="月份 YYYY-MM")
@click.option("--county", required=True, help="县市区名称")
@click.option("--reason", required=True, help="重新抽样的原因（记入日志）")
def redraw_command(month, county, reason):
    """在尚无拨打记录时重新抽样（换新的盐值），并记入日志。"""
    try:
        round_ = _round_for(month, county)
        with transaction(db.session):
            outcome = redraw_round(db.session, round_.id, now=clock_now(), settings=draw_settings(current_app),
                                   actor=_actor(), reason=reason)
        outcome.files = [str(p) for p in call_list_writer(current_app, db.session)(outcome.round_id)]
    except DrawError as exc:
        raise click.ClickException(str(exc)) from exc
    print_outcome(outcome)


@draw_cli.command("close")
@click.option("--month", required=True, help="月份 YYYY-MM")
@click.option("--county", default=None, help="县市区名称（不填为全部）")
def close_command(month, county):
    """月末关闭：未完成的样本给出最终处置，冻结本月数据。"""
    from app.models import Round
    from sqlalchemy import select

    try:
        month = parse_month(month)
        stmt = select(Round).where(Round.month == month)
        if county:
            stmt = stmt.where(Round.county_id == counties_for(db.session, [county])[0].id)
        rounds = [(r.id, r.county.name) for r in db.session.scalars(stmt)]
    except DrawError as exc:
        raise click.ClickException(str(exc)) from exc
    if not rounds:
        raise click.ClickException(f"{month} 没有抽样轮次。")
    for round_id, name in rounds:
        with transaction(db.session):
            closed = close_round(db.session, round_id, now=clock_now(), actor=_actor(),
                                 questionnaires=current_app.extensions["questionnaires"],
                                 vocabulary=current_app.extensions["vocabulary"])
        click.echo(f"{name} {month}：" + ("已关闭。" if closed else "此前已关闭。"))


export_cli = AppGroup("export", help="导出")


@export_cli.command("call-list")
@click.option("--month", required=True, help="月份 YYYY-MM")
@click.option("--county", required=True, help="县市区名称")
def export_call_list(month, county):
    """重新生成某县某月的呼叫名单（sample_lists/<县>/<月>-呼叫名单.xlsx 和 .csv）。"""
    round_ = _round_for(month, county)
    paths = write_call_list(db.session, round_.id, current_app.config["SAMPLE_LISTS_DIR"])
    with transaction(db.session):
        audit(db.session, "export_call_list", _actor(), target=f"{round_.county.name} {round_.month}",
              detail=", ".join(str(p) for p in paths), county_id=round_.county_id)
    for path in paths:
        click.echo(f"呼叫名单：{path}")
