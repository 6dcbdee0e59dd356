import sys

import click
from flask.cli import AppGroup

from app.auth.services import UserError, create_user
from app.extensions import db
from app.models import ROLES

users_cli = AppGroup("users", help="用户管理")


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(list(ROLES)), required=True, help="admin / supervisor / caller")
@click.option("--county", "county_name", default=None, help="所属县区（督导和调查员必填）")
@click.option("--password-stdin", is_flag=True, help="从标准输入读取密码（一行）")
def create_command(username, role, county_name, password_stdin):
    """创建用户。"""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("密码", hide_input=True, confirmation_prompt="再次输入密码")
    try:
        user = create_user(db.session, username, role, password, county_name)
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"已创建用户 {user.username}（{user.role_label}）")
