import signal

import click
from flask import current_app
from flask.cli import AppGroup

from app.core.clock import clock_now, to_local
from app.extensions import db
from app.models import SchedulerRun
from app.scheduler.heartbeat import ALIVE_WITHIN, Heartbeat, SchedulerState, scheduler_state
from app.scheduler.jobs import JOB_LABELS, next_runs, run_job
from app.scheduler.runner import build

scheduler_cli = AppGroup("scheduler", help="定时任务")


@scheduler_cli.command("run")
def run_command():
    """运行定时任务进程：每月抽样、月末关闭；启动时先补做停机期间错过的任务。
    运行期间每分钟写一次心跳，定时任务页面和 scheduler status 据此判断进程是否在运行。"""
    app = current_app._get_current_object()
    heartbeat = Heartbeat(app)
    heartbeat.beat()  # before the catch-up: a long first draw must not look like a dead process
    click.echo("启动时补做检查……")
    run = run_job(app, "catch_up")
    click.echo(run.result if run else "没有需要补做的任务。")
    scheduler = build(app, heartbeat=heartbeat)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    for job, when in next_runs(app.config, clock_now(), count=1):
        click.echo(f"下次{JOB_LABELS[job]}：{to_local(when)}")
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    click.echo("定时任务进程已停止。")


@scheduler_cli.command("run-once")
@click.argument("job", type=click.Choice(["draw", "close", "catch_up", "purge", "uploads"]))
def run_once(job):
    """立即执行一次指定任务（draw / close / catch_up / purge / uploads），记入运行历史。"""
    run = run_job(current_app._get_current_object(), job)
    if run is None:
        click.echo("没有需要执行的工作。")
        return
    click.echo(f"{JOB_LABELS[job]}：{run.status}\n{run.result or ''}")
    if run.status == "failed":
        raise click.ClickException(run.error or "任务失败。")


def state_lines(state: SchedulerState) -> list[str]:
    """The process state in words (the same facts the 定时任务 page shows)."""
    newest = state.newest
    if state.alive:
        lines = [f"定时任务进程运行中：{b.host} 进程 {b.pid}，{to_local(b.started_at)} 启动，"
                 f"最近心跳 {to_local(b.beat_at, fmt='%Y-%m-%d %H:%M:%S')}" for b in state.running]
        return lines
    if newest is None:
        last = "从未收到心跳"
    else:
        last = (f"最近心跳 {to_local(newest.beat_at, fmt='%Y-%m-%d %H:%M:%S')}（{state.minutes_since} 分钟前，"
                f"{newest.host} 进程 {newest.pid}）")
    return [f"定时任务进程未运行：{last}，超过 {state.alive_within_minutes} 分钟没有心跳。", state.start_hint]


@scheduler_cli.command(
    "status",
    help=f"显示定时任务进程是否在运行（最近 {ALIVE_WITHIN.total_seconds() // 60:.0f} 分钟内有心跳）、"
         "下次运行时间和最近的运行历史。\n\n退出码：0 = 有定时任务进程在运行；1 = 没有（可用于监控告警）。",
)
@click.pass_context
def status_command(ctx):
    now = clock_now()
    state = scheduler_state(db.session, now)
    for line in state_lines(state):
        click.echo(line)
    suffix = "" if state.alive else "（需定时任务进程运行才会执行）"
    for job, when in next_runs(current_app.config, now):
        click.echo(f"下次{JOB_LABELS[job]}：{to_local(when)}{suffix}")
    runs = db.session.scalars(db.select(SchedulerRun).order_by(SchedulerRun.started_at.desc()).limit(10))
    for run in runs:
        click.echo(f"{to_local(run.started_at)} {JOB_LABELS.get(run.job, run.job)} {run.status}")
    if not state.alive:
        ctx.exit(1)
