import inspect
import os
import tempfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import click
import numpy as np
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from app.auth.services import UserError, create_user
from app.core.transactions import transaction
from app.core.clock import clock_now, TZ
from app.demo.simulate import Services, simulate
from app.demo.synth import (
    YUEYANG_COUNTIES,
    Unit,
    inject_typical_errors,
    make_roster,
    make_units,
    person_names,
    write_messy_xlsx,
)
from app.draws.context import draw_settings
from app.extensions import db
from app.models import County, Institution, Resident, Team, User
from app.org.maintenance import infer_institution_type
from app.roster.context import import_context
from app.roster.importer import import_and_commit
from app.roster.batch import ImportFailed, ImportOptions

demo_cli = AppGroup("demo", help="演示数据")

# (user name, role, county, real name)
DEMO_USERS = (
    ("admin", "admin", None, "周建国"),
    ("yyx_supervisor", "supervisor", "岳阳县", "李红梅"),
    ("yyx_caller", "caller", "岳阳县", "陈静"),
)
DEFAULT_PASSWORD = "demo-2026-yy"
CALLERS_PER_COUNTY = 2


def demo_password() -> str:
    return os.environ.get("DEMO_PASSWORD", DEFAULT_PASSWORD)


def _parse_now(value: str | None) -> datetime:
    if not value:
        return clock_now()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("时间格式应为 2026-11-23T19:00（北京时间）或带时区的 ISO 时间。") from None
    return moment.replace(tzinfo=TZ) if moment.tzinfo is None else moment


@demo_cli.command("seed")
@click.option("--residents", default=20_000, show_default=True, help="居民人数")
@click.option("--seed", default=2026, show_default=True, help="随机种子（相同种子生成相同数据）")
@click.option("--months", default=6, show_default=True, type=click.IntRange(0, 24),
              help="模拟最近N个月（含本月）的调查工作；0 = 只生成名册")
@click.option("--now", "now_text", default=None, help="模拟的当前时间（北京时间，如 2026-11-23T19:00；默认现在）")
@click.option("--all-counties", is_flag=True,
              help="每个月都模拟全部县市区（较慢）。默认本月全部，上月全部或大部分（视本月进度），"
                   "更早的月份只有分批上线的试点县，以控制耗时")
def seed_command(residents: int, seed: int, months: int, now_text: str | None, all_counties: bool):
    """生成一个地级市（岳阳式）的演示数据：12个县市区、167家机构、每家4-8个团队，以及最近几个月的
    抽样、拨打、问卷、月末关闭和问题整改（都经由系统自身的服务完成）。"""
    if residents < 1:
        raise click.ClickException("居民人数必须大于0。")
    if db.session.scalar(select(func.count()).select_from(Resident)):
        click.echo("数据库中已有居民数据，跳过演示数据生成。")
        return
    now = _parse_now(now_text)
    seed_city(current_app, residents=residents, seed=seed, now=now, months=months, echo=click.echo,
              all_counties=all_counties)


def seed_city(app, *, residents: int, seed: int, now: datetime, months: int, counties=YUEYANG_COUNTIES,
              echo=click.echo, sample: bool = True, all_counties: bool = False) -> None:
    """The organisation, the roster (imported through the importer) and ``months`` months of
    survey work ending with the month of ``now``."""
    today = now.astimezone(TZ).date()
    units = make_units(seed, counties)
    with transaction(db.session):
        _create_organisation(units, counties)
    roster = make_roster(residents, seed=seed, today=today, units=units)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo-roster.csv"
        roster.to_csv(path, index=False, encoding="utf-8")
        ctx = replace(import_context(app, actor="demo-seed"), today=today)
        try:
            result = import_and_commit(db.session, path, ImportOptions(), ctx, "演示数据.csv")
        except ImportFailed as exc:
            raise click.ClickException(f"演示数据导入失败：{exc}") from exc
    n_inst = db.session.scalar(select(func.count()).select_from(Institution))
    n_team = db.session.scalar(select(func.count()).select_from(Team))
    echo(f"演示数据：{result.summary_line()}；县市区 {len(counties)} 个，机构 {n_inst} 家，团队 {n_team} 个")

    if sample and any(u.county == "岳阳县" for u in units):
        # a messy export of one county, to try the importer by hand
        sample_dir = Path(app.instance_path) / "demo"
        sample_dir.mkdir(parents=True, exist_ok=True)
        path = sample_dir / "岳阳县家庭医生签约居民花名册.xlsx"
        county_rows = make_roster(min(2000, residents), seed=seed + 99, today=today,
                                  units=[u for u in units if u.county == "岳阳县"])
        write_messy_xlsx(inject_typical_errors(county_rows), path, "岳阳县家庭医生签约居民花名册")
        echo(f"示例名册（导出格式）：{path}")

    if months > 0:
        simulate_months(app, seed=seed, now=now, months=months, echo=echo, all_counties=all_counties)


def simulate_months(app, *, seed: int, now: datetime, months: int, echo=click.echo, all_counties: bool = False):
    """The demo accounts and callers, then ``months`` months of survey work (app/demo/simulate.py)."""
    rng = np.random.default_rng([seed, 20260])
    password = demo_password()
    hashed = generate_password_hash(password)
    with transaction(db.session):
        ensure_demo_users(password, hashed)
        callers = create_callers(password, rng, hashed)
    staff = _staff()
    services = Services(draw=draw_settings(app), calls=app.extensions["call_settings"],
                        questionnaires=app.extensions["questionnaires"], vocabulary=app.extensions["vocabulary"])
    echo(f"模拟最近 {months} 个月的调查工作（调查员 {sum(len(v) for v in callers.values())} 名）……")
    return simulate(db.session, now=now, rng=rng, months=months, services=services, callers=callers, staff=staff,
                    echo=echo, all_counties=all_counties)


def _create_organisation(units: list[Unit], counties=YUEYANG_COUNTIES) -> None:
    """Every county, institution and team of the demo city, residents or not."""
    existing = {c.name: c for c in db.session.scalars(select(County))}
    for name, region, _urban, _n in counties:
        if name not in existing:
            existing[name] = County(name=name, code=region)
            db.session.add(existing[name])
    db.session.flush()
    institutions = {(i.county_id, i.name): i for i in db.session.scalars(select(Institution))}
    teams = {(t.institution_id, t.name) for t in db.session.scalars(select(Team))}
    for unit in units:
        county = existing[unit.county]
        inst = institutions.get((county.id, unit.institution))
        if inst is None:
            inst = Institution(county_id=county.id, name=unit.institution, type=infer_institution_type(unit.institution))
            db.session.add(inst)
            db.session.flush()
            institutions[(county.id, unit.institution)] = inst
        if (inst.id, unit.team) not in teams:
            db.session.add(Team(institution_id=inst.id, name=unit.team, leader_doctor=unit.doctor))
            teams.add((inst.id, unit.team))


# ---------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------


def _create_account(username: str, role: str, password: str, county: str | None, real_name: str,
                    password_hash: str | None = None) -> User:
    """A demo account through the product's create_user, with a real name and no forced
    password change (the demo logins are printed for everyone). ``password_hash``: the
    password hashed once for all demo accounts (hashing is slow on purpose)."""
    accepted = inspect.signature(create_user).parameters
    extra = {"real_name": real_name, "must_change_password": False, "password_hash": password_hash}
    extra = {k: v for k, v in extra.items() if k in accepted and v is not None}
    try:
        user = create_user(db.session, username, role, password, county, **extra)
    except UserError as exc:
        raise click.ClickException(f"{username}：{exc}") from exc
    user.real_name = real_name
    user.must_change_password = False
    db.session.flush()
    return user


def ensure_demo_users(password: str, password_hash: str | None = None) -> list[User]:
    """The demo accounts (admin, and 岳阳县's supervisor and caller when 岳阳县 exists)."""
    users = []
    for username, role, county, real_name in DEMO_USERS:
        user = db.session.scalar(select(User).where(User.username == username))
        if user is None:
            if county is not None and db.session.scalar(select(County.id).where(County.name == county)) is None:
                continue  # a demo city without that county
            user = _create_account(username, role, password, county, real_name, password_hash)
        users.append(user)
    return users


def create_callers(password: str, rng: np.random.Generator, password_hash: str | None = None) -> dict[int, list[User]]:
    """Two callers per county (``demo_caller_<county code>_1``, ``_2``), and ``yyx_caller``
    working 岳阳县 with them. Existing accounts are reused."""
    counties = list(db.session.scalars(select(County).order_by(County.code)))
    names = iter(person_names(rng, len(counties) * CALLERS_PER_COUNTY * 2))
    used = set(db.session.scalars(select(User.real_name).where(User.real_name.is_not(None))))
    callers: dict[int, list[User]] = {}
    for county in counties:
        staff = []
        for k in range(1, CALLERS_PER_COUNTY + 1):
            username = f"demo_caller_{county.code}_{k}"
            user = db.session.scalar(select(User).where(User.username == username))
            if user is None:
                real_name = next(n for n in names if n not in used)
                used.add(real_name)
                user = _create_account(username, "caller", password, county.name, real_name, password_hash)
            staff.append(user)
        callers[county.id] = staff
    own = db.session.scalar(select(User).where(User.username == "yyx_caller"))
    if own is not None and own.county_id in callers:
        callers[own.county_id].insert(0, own)
    return callers


def _staff() -> dict[int, User]:
    """Who handles each county's problems: its supervisor, else the city administrator."""
    admin = db.session.scalar(select(User).where(User.role == "admin").order_by(User.id))
    staff = {}
    for county_id in db.session.scalars(select(County.id)):
        supervisor = db.session.scalar(
            select(User).where(User.role == "supervisor", User.county_id == county_id).order_by(User.id)
        )
        if supervisor is not None or admin is not None:
            staff[county_id] = supervisor or admin
    return staff


@demo_cli.command("users")
def users_command():
    """创建演示账号（已存在则跳过）并打印登录信息。"""
    password = demo_password()
    with transaction(db.session):
        users = ensure_demo_users(password)
    click.echo("演示账号（密码均为 %s，可用环境变量 DEMO_PASSWORD 修改）：" % password)
    for user in users:
        click.echo(f"  {user.username:16s} {user.role:11s} {user.county.name if user.county else '全市':6s} "
                   f"{user.real_name or ''}")
    callers = db.session.scalar(select(func.count()).select_from(User).where(User.username.like("demo\\_caller\\_%",
                                                                                               escape="\\")))
    if callers:
        click.echo(f"  另有各县市区调查员 {callers} 名（demo_caller_<县区代码>_1、_2，密码相同）")
