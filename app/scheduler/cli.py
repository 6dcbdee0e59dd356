import signal

import click
from flask import current_app
from flask.cli import AppGroup

from app.draws.context import clock_now
from app.extensions import db
from app.filters import to_local
from app.models import SchedulerRun
from app.scheduler.jobs import JOB_LABELS, next_runs, run_job
from app.scheduler.runner import build

scheduler_cli = AppGroup("scheduler", help="定时任务")


@scheduler_cli.command("run")
def run_command():
    """运行定时任务进程：每月抽样、月末关闭；启动时先补做停机期间错过的任务。"""
    app = current_app._get_current_object()
    click.echo("启动时补做检查……")
    run = run_job(app, "catch_up")
    click.echo(run.result if run else "没有需要补做的任务。")
    scheduler = build(app)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    for job, when in next_runs(app.config, clock_now(), count=1):
        click.echo(f"下次{JOB_LABELS[job]}：{to_local(when)}")
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    click.echo("定时任务进程已停止。")


@scheduler_cli.command("run-once")
@click.argument("job", type=click.Choice(["draw", "close", "catch_up"]))
def run_once(job):
    """立即执行一次指定任务（draw / close / catch_up），记入运行历史。"""
    run = run_job(current_app._get_current_object(), job)
    if run is None:
        click.echo("没有需要执行的工作。")
        return
    click.echo(f"{JOB_LABELS[job]}：{run.status}\n{run.result or ''}")
    if run.status == "failed":
        raise click.ClickException(run.error or "任务失败。")


@scheduler_cli.command("status")
def status_command():
    """显示下次运行时间和最近的运行历史。"""
    for job, when in next_runs(current_app.config, clock_now()):
        click.echo(f"下次{JOB_LABELS[job]}：{to_local(when)}")
    runs = db.session.scalars(db.select(SchedulerRun).order_by(SchedulerRun.started_at.desc()).limit(10))
    for run in runs:
        click.echo(f"{to_local(run.started_at)} {JOB_LABELS.get(run.job, run.job)} {run.status}")
