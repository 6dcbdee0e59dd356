import getpass
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from app.core.transactions import transaction
from app.auth.importer import UserImportFailed, import_users
from app.core.upload_guard import ReadLimits
from app.auth.services import UserError, create_user
from app.extensions import db
from app.models import ROLES

users_cli = AppGroup("users", help="用户管理")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(list(ROLES)), required=True, help="admin / supervisor / caller")
@click.option("--county", "county_name", default=None, help="所属县区（督导和调查员必填）")
@click.option("--name", "real_name", required=True, help="姓名（真实姓名，显示在页面和开场白中）")
@click.option("--phone", default=None, help="手机或带区号的固定电话（可选）")
@click.option("--password-stdin", is_flag=True, help="从标准输入读取密码（一行）")
@click.option("--no-force-change", is_flag=True,
              help="不要求首次登录时修改密码。默认要求：这里设置的是临时密码，本人首次登录须改成只有自己知道的密码"
                   "（部署时创建的第一个管理员也一样）。只在密码本来就只有本人知道时使用，例如本人在服务器上为自己建账号，"
                   "或脚本化安装。")
def create_command(username, role, county_name, real_name, phone, password_stdin, no_force_change):
    """创建用户（密码须至少10位，不能包含用户名，不能是常见密码）。"""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("密码", hide_input=True, confirmation_prompt="再次输入密码")
    try:
        with transaction(db.session):
            user = create_user(db.session, username, role, password, county_name, real_name=real_name, phone=phone,
                               actor=_actor(), must_change_password=not no_force_change)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"已创建用户 {user.username}（{user.real_name}，{user.role_label}）")
    if user.must_change_password:
        click.echo("首次登录时须修改密码。")


@users_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="只检查并报告，不创建用户")
@click.option("--passwords-dir", type=click.Path(file_okay=False), default=None,
              help="初始密码文件写到这里（默认 IMPORT_REPORTS_DIR）；文件只有当前系统用户可读")
def import_command(path, dry_run, passwords_dir):
    """批量创建用户（列：用户名, 姓名, 角色, 县区, 手机, 可选 初始密码）。

    全部被接受的行一起创建，或一个都不创建；被拒绝的行列入错误报告。没有初始密码的行自动生成
    随机密码，写入初始密码文件。所有新账号首次登录时须修改密码。文件能读取时退出码为 0（即使有被拒绝的行）。
    """
    reports = Path(current_app.config["IMPORT_REPORTS_DIR"])
    result = None
    try:
        with transaction(db.session, commit=not dry_run):
            result = import_users(db.session, path, actor=_actor(), reports_dir=reports,
                                  passwords_dir=Path(passwords_dir) if passwords_dir else reports, dry_run=dry_run,
                                  limits=ReadLimits.from_config(current_app.config))
    except UserImportFailed as exc:
        raise click.ClickException(f"导入失败：{exc}") from exc
    except Exception:
        if result is not None and result.passwords_file:  # the commit failed: no such accounts
            result.passwords_file.unlink(missing_ok=True)
        raise
    click.echo(result.summary_line())
    click.echo(result.summary_zh())
    for r in result.rejections[:20]:
        click.echo(f"  {r.sheet + ' ' if r.sheet else ''}第{r.row}行 {r.column}：{r.reason}")
    if len(result.rejections) > 20:
        click.echo(f"  …… 另有 {len(result.rejections) - 20} 条，见错误报告")
    if result.error_report:
        click.echo(f"错误报告：{result.error_report}")
    if result.passwords_file:
        click.echo(f"初始密码文件：{result.passwords_file}（请妥善保管，发放后删除）")
    if dry_run:
        click.echo("预览模式：数据库未作更改。")


def _user(username: str):
    from sqlalchemy import select

    from app.auth.services import login_key
    from app.models import User

    user = db.session.scalar(select(User).where(User.username_key == login_key(username)))
    if user is None:
        raise click.ClickException(f"用户“{username}”不存在。")
    return user


@users_cli.command("reset-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="从标准输入读取临时密码（一行）；不给则生成随机密码并显示一次")
def reset_password_command(username, password_stdin):
    """重置用户密码（例如唯一的管理员忘记密码或被锁定时）：设置临时密码并解除锁定，本人下次登录须修改。"""
    from app.auth.services import reset_password
    from app.auth.throttle import ThrottleSettings

    user = _user(username)
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    try:
        with transaction(db.session):
            temporary = reset_password(db.session, user, actor=_actor(), password=password,
                                       settings=ThrottleSettings.from_config(current_app.config))
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"已重置用户 {user.username} 的密码，并解除锁定；下次登录须修改密码。")
    if not password_stdin:
        click.echo(f"临时密码（只显示这一次）：{temporary}")


@users_cli.command("unlock")
@click.argument("username")
def unlock_command(username):
    """解除因多次登录失败而被锁定的账号。"""
    from app.auth.services import unlock_user
    from app.auth.throttle import ThrottleSettings
    from app.core.clock import utcnow

    user = _user(username)
    with transaction(db.session):
        done = unlock_user(db.session, user, actor=_actor(), now=utcnow(),
                           settings=ThrottleSettings.from_config(current_app.config))
    click.echo(f"已解除用户 {user.username} 的锁定。" if done else f"用户 {user.username} 没有被锁定。")
