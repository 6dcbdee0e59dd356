import os
import tempfile
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from app.auth.services import UserError, create_user
from app.demo.synth import YUEYANG_COUNTIES, inject_typical_errors, make_roster, make_units, write_messy_xlsx
from app.extensions import db
from app.models import County, Resident, User
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
    for name, region, _urban, _n in YUEYANG_COUNTIES:
        if db.session.scalar(select(County).where(County.name == name)) is None:
            db.session.add(County(name=name, code=region))
    db.session.commit()

    units = make_units(seed)
    roster = make_roster(residents, seed=seed, units=units)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo-roster.csv"
        roster.to_csv(path, index=False, encoding="utf-8")
        ctx = import_context(current_app, actor="demo-seed")
        try:
            result = execute_import(db.session, path, ImportOptions(create_missing=True), ctx, "演示数据.csv")
        except ImportFailed as exc:
            raise click.ClickException(f"演示数据导入失败：{exc}") from exc
    click.echo(f"演示数据：{result.summary_line()}，机构 {result.institutions_created} 家，团队 {result.teams_created} 个")

    # a messy export of one county, to try the importer by hand
    sample_dir = Path(current_app.instance_path) / "demo"
    sample_dir.mkdir(parents=True, exist_ok=True)
    sample = sample_dir / "岳阳县家庭医生签约居民花名册.xlsx"
    county_rows = make_roster(min(2000, residents), seed=seed + 99, units=[u for u in units if u.county == "岳阳县"])
    write_messy_xlsx(inject_typical_errors(county_rows), sample, "岳阳县家庭医生签约居民花名册")
    click.echo(f"示例名册（导出格式）：{sample}")


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
