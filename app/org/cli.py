"""`flask org …`: the organisation from the command line (scripts and checks rely on these names)."""
import getpass
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from app.core.transactions import transaction
from app.extensions import db
from app.models import County, Institution, Resident, Team
from app.core.upload_guard import ReadLimits
from app.org.importer import OrgImportFailed, import_organisation
from app.org.maintenance import Actor, OrgError, create_county

org_cli = AppGroup("org", help="机构与团队")


def _actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}")


@org_cli.command("add-county")
@click.argument("name")
@click.option("--code", required=True, help="6位行政区划代码，如 430621")
def add_county_command(name, code):
    """新建县市区。"""
    try:
        with transaction(db.session):
            county = create_county(db.session, name, code, actor=_actor())
    except OrgError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"已新建县区 {county.name}（{county.code}）")


@org_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="只检查并报告，不写入数据库")
def import_command(path, dry_run):
    """导入机构与团队（列：县区, 县区代码, 机构, 机构代码, 机构类型, 团队, 团队长, 联系电话）。"""
    if not Path(path).is_file():
        raise click.ClickException(f"文件不存在：{path}")
    try:
        with transaction(db.session, commit=not dry_run):
            result = import_organisation(db.session, path, actor=_actor(),
                                         reports_dir=Path(current_app.config["IMPORT_REPORTS_DIR"]),
                                         limits=ReadLimits.from_config(current_app.config))
    except OrgImportFailed as exc:
        raise click.ClickException(f"导入失败：{exc}") from exc
    click.echo(result.summary_line())
    click.echo(result.summary_zh())
    for r in result.rejections[:20]:
        click.echo(f"  {r.sheet + ' ' if r.sheet else ''}第{r.row}行 {r.column}：{r.reason}")
    if result.rejected > 20:
        click.echo(f"  …… 另有 {result.rejected - 20} 行，见错误报告")
    if result.error_report:
        click.echo(f"错误报告：{result.error_report}")
    if dry_run:
        click.echo("预览模式：数据库未作更改。")


@org_cli.command("list")
@click.option("--county", "county_name", default=None, help="只列出该县区")
def list_command(county_name):
    """列出县市区、机构和团队（含停用的，标注“停用”）。"""
    stmt = select(County).order_by(County.code)
    if county_name:
        stmt = stmt.where(County.name == county_name.strip())
    counties = db.session.scalars(stmt).all()
    if county_name and not counties:
        raise click.ClickException(f"县区“{county_name}”不存在。")
    residents = dict(db.session.execute(
        select(Resident.team_id, func.count()).where(Resident.active.is_(True)).group_by(Resident.team_id)
    ).all())
    off = lambda unit: "" if unit.active else "  [停用]"  # noqa: E731
    for county in counties:
        institutions = db.session.scalars(
            select(Institution).where(Institution.county_id == county.id).order_by(Institution.name)
        ).all()
        click.echo(f"{county.name}（{county.code}）机构 {len(institutions)} 家{off(county)}")
        for inst in institutions:
            teams = db.session.scalars(select(Team).where(Team.institution_id == inst.id).order_by(Team.name)).all()
            click.echo(f"  {inst.name}（{inst.type}{'，' + inst.code if inst.code else ''}）团队 {len(teams)} 个{off(inst)}")
            for team in teams:
                leader = f" 团队长 {team.leader_doctor}" if team.leader_doctor else ""
                click.echo(f"    {team.name}{leader} 在册居民 {residents.get(team.id, 0)}{off(team)}")
    if not counties:
        click.echo("尚无县市区：先用 org add-county 或 org import 建立。")
