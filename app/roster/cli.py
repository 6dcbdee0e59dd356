import getpass

import click
from flask import current_app
from flask.cli import AppGroup

from app.extensions import db
from app.roster.context import import_context
from app.roster.importer import import_and_commit
from app.roster.batch import ImportFailed, ImportOptions

roster_cli = AppGroup("roster", help="签约居民名册")


@roster_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--county", default=None, help="县区名称：文件中的机构都属于该县区")
@click.option("--create-missing", is_flag=True, help="自动新建文件中不存在的机构和团队")
@click.option("--full", is_flag=True, help="全量名册：文件涉及机构中不在文件里的居民标记为停用")
@click.option("--dry-run", is_flag=True, help="只检查并报告，不写入数据库")
def import_command(path, county, create_missing, full, dry_run):
    """导入签约居民名册（.xlsx / .xls / .csv）。"""
    options = ImportOptions(county=county, create_missing=create_missing, full=full, dry_run=dry_run)
    ctx = import_context(current_app, actor=f"cli:{getpass.getuser()}")
    try:
        result = import_and_commit(db.session, path, options, ctx)
    except ImportFailed as exc:
        raise click.ClickException(f"导入失败：{exc}") from exc
    click.echo(result.summary_line() + (f" deactivated={result.deactivated}" if full else ""))
    if result.institutions_created or result.teams_created:
        click.echo(f"新建机构 {result.institutions_created} 个，新建团队 {result.teams_created} 个")
    if result.message:
        click.echo(result.message)
    if result.error_report:
        click.echo(f"错误报告：{result.error_report}")
    if dry_run:
        click.echo("预览模式：数据库未作更改。")
