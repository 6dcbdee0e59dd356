import os
import tempfile
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from app.auth.services import UserError, create_user
from app.demo.synth import YUEYANG_COUNTIES, Unit, inject_typical_errors, make_roster, make_units, write_messy_xlsx
from app.extensions import db
from app.models import County, Institution, Resident, Team, User
from app.roster.normalize import infer_institution_type
from app.roster.context import import_context
from app.roster.services import ImportFailed, ImportOptions, execute_import

demo_cli = AppGroup("demo", help="演示数据")

DEMO_USERS = (("admin", "admin", None), ("yyx_supervisor", "supervisor", "岳阳县"), ("yyx_caller", "caller", "岳阳县"))


@demo_cli.command("seed")
@click.option("--residents", default=20_000, show_default=True, help="居民人数")
@click.option("--seed", default=2026, show_default=True, help="随机种子（相同种子生成相同数据）")
def seed_command(residents: int, seed: int):
    """生成一个地级市（岳阳式）的演示数据：12个县市区、167家机构、每家4-8个团队。"""
    if residents < 1:
        raise click.ClickException("居民人数必须大于0。")
    if db.session.scalar(select(func.count()).select_from(Resident)):
        click.echo("数据库中已有居民数据，跳过演示数据生成。")
        return
    units = make_units(seed)
    _create_organisation(units)
    roster = make_roster(residents, seed=seed, units=units)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo-roster.csv"
        roster.to_csv(path, index=False, encoding="utf-8")
        ctx = import_context(current_app, actor="demo-seed")
        try:
            result = execute_import(db.session, path, ImportOptions(), ctx, "演示数据.csv")
        except ImportFailed as exc:
            raise click.ClickException(f"演示数据导入失败：{exc}") from exc
    n_inst = db.session.scalar(select(func.count()).select_from(Institution))
    n_team = db.session.scalar(select(func.count()).select_from(Team))
    click.echo(f"演示数据：{result.summary_line()}；县市区 {len(YUEYANG_COUNTIES)} 个，机构 {n_inst} 家，团队 {n_team} 个")

    # a messy export of one county, to try the importer by hand
    sample_dir = Path(current_app.instance_path) / "demo"
    sample_dir.mkdir(parents=True, exist_ok=True)
    sample = sample_dir / "岳阳县家庭医生签约居民花名册.xlsx"
    county_rows = make_roster(min(2000, residents), seed=seed + 99, units=[u for u in units if u.county == "岳阳县"])
    write_messy_xlsx(inject_typical_errors(county_rows), sample, "岳阳县家庭医生签约居民花名册")
    click.echo(f"示例名册（导出格式）：{sample}")


def _create_organisation(units: list[Unit]) -> None:
    """Every county, institution and team of the demo city, residents or not."""
    counties = {c.name: c for c in db.session.scalars(select(County))}
    for name, region, _urban, _n in YUEYANG_COUNTIES:
        if name not in counties:
            counties[name] = County(name=name, code=region)
            db.session.add(counties[name])
    db.session.flush()
    institutions = {(i.county_id, i.name): i for i in db.session.scalars(select(Institution))}
    teams = {(t.institution_id, t.name) for t in db.session.scalars(select(Team))}
    for unit in units:
        county = counties[unit.county]
        inst = institutions.get((county.id, unit.institution))
        if inst is None:
            inst = Institution(county_id=county.id, name=unit.institution, type=infer_institution_type(unit.institution))
            db.session.add(inst)
            db.session.flush()
            institutions[(county.id, unit.institution)] = inst
        if (inst.id, unit.team) not in teams:
            db.session.add(Team(institution_id=inst.id, name=unit.team, leader_doctor=unit.doctor))
            teams.add((inst.id, unit.team))
    db.session.commit()


@demo_cli.command("users")
def users_command():
    """创建演示账号（已存在则跳过）并打印登录信息。"""
    password = os.environ.get("DEMO_PASSWORD", "demo12345")
    for username, role, county in DEMO_USERS:
        if db.session.scalar(select(User).where(User.username == username)) is None:
            try:
                create_user(db.session, username, role, password, county)
            except UserError as exc:
                raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo("演示账号（密码均为 %s，可用环境变量 DEMO_PASSWORD 修改）：" % password)
    for username, role, county in DEMO_USERS:
        click.echo(f"  {username:16s} {role:11s} {county or '全市'}")
