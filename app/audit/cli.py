"""`flask audit …`: checking the audit chain from the command line."""
import re

import click
from flask.cli import AppGroup

from app.audit.chain import verify_chain
from app.core.transactions import transaction
from app.extensions import db

audit_cli = AppGroup("audit", help="审计日志")

_EXPECT = re.compile(r"^#?([0-9]{1,18})[:=]([0-9a-fA-F]{64})$")


@audit_cli.command("verify")
@click.option("--expect", default=None, metavar="记录号:哈希",
              help="同时核对此前记下的一环（如月度报告上的审计链头），格式 记录号:哈希")
def verify_command(expect):
    """逐条核对审计链；发现断开时报告第一条有问题的记录并以非零状态退出。"""
    pair = None
    if expect:
        match = _EXPECT.match(expect.strip())
        if not match:
            raise click.ClickException("--expect 的格式应为 记录号:哈希（64位十六进制），如 1234:3fa9…")
        pair = (int(match.group(1)), match.group(2).lower())
    with transaction(db.session, commit=False):
        report = verify_chain(db.session, expect=pair)
    if not report.ok:
        raise click.ClickException(report.message())
    click.echo(report.message())
