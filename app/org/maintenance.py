"""Organisation maintenance: counties, institutions and teams created, edited, renamed, moved,
merged, deactivated and reactivated — by the bureau itself, on the web and the command line.

Rules kept here and nowhere else:
- a unit is never deleted: it is deactivated. An inactive county is not drawn; the residents
  of an inactive institution or team are not eligible for new draws; past rounds, cases and
  results keep pointing at the unit, so every past figure stays as it was;
- every change writes an ``OrgChange`` (the unit's history: values before and after, reason,
  who) and an audit row;
- names are unique among siblings (county names city-wide, institution names within their
  county, team names within their institution), county codes are 6-digit administrative
  codes, institution codes unique;
- a renamed unit shows its current name everywhere; its page lists its former names. A case
  keeps the names of its draw in its snapshot (call lists and the case screen);
- a team moves only within its county, and merges only into an active team of the same county:
  its residents move to the surviving team; its past cases stay its own.

Services flush; the caller (view, CLI command) commits.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import audit, INSTITUTION_TYPES, County, Institution, OrgChange, Resident, Team, User
from app.core.cells import clean_phone
from app.core.masking import mask_phone

COUNTY_CODE = re.compile(r"^[1-8][0-9]{5}$")
INSTITUTION_CODE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{0,29}$")
MAX_NAME = {"county": 50, "institution": 100, "team": 100}
ACTIONS = {
    "create": "新建",
    "edit": "修改",
    "rename": "更名",
    "move": "调整所属机构",
    "merge": "合并",
    "absorb": "并入团队",
    "deactivate": "停用",
    "reactivate": "启用",
}
KIND_LABELS = {"county": "县市区", "institution": "机构", "team": "团队"}


class OrgError(ValueError):
    """A change refused; the message is for the user, in Chinese."""


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a signed-in user, or a named process (CLI, import)."""

    name: str
    user_id: int | None = None

    @classmethod
    def of(cls, user: User | None, fallback: str = "命令行") -> Actor:
        return cls(user.username, user.id) if user is not None else cls(fallback)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def clean_name(kind: str, value: str | None) -> str:
    name = unicodedata.normalize("NFKC", value or "").strip()
    label = KIND_LABELS[kind]
    if not name:
        raise OrgError(f"请填写{label}名称。")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise OrgError(f"{label}名称不能包含控制字符或换行。")
    if len(name) > MAX_NAME[kind]:
        raise OrgError(f"{label}名称不超过{MAX_NAME[kind]}个字。")
    return name


def clean_county_code(value: str | None) -> str:
    code = unicodedata.normalize("NFKC", value or "").strip()
    if not COUNTY_CODE.match(code):
        raise OrgError(f"县区代码“{code}”无效：应为6位行政区划代码，如 430621。")
    return code


def clean_institution_code(value: str | None) -> str | None:
    code = unicodedata.normalize("NFKC", value or "").strip().upper()
    if not code:
        return None
    if not INSTITUTION_CODE.match(code):
        raise OrgError(f"机构代码“{code}”无效：只能包含字母、数字和“-”，不超过30位。")
    return code


def clean_type(value: str | None) -> str:
    kind = (value or "").strip()
    if kind not in INSTITUTION_TYPES:
        raise OrgError(f"机构类型“{kind}”无效：应为{'、'.join(INSTITUTION_TYPES)}之一。")
    return kind


def clean_person(value: str | None) -> str | None:
    name = unicodedata.normalize("NFKC", value or "").strip()
    if not name:
        return None
    if any(unicodedata.category(ch).startswith("C") for ch in name) or len(name) > 50:
        raise OrgError("团队长姓名无效（不超过50个字，不能含控制字符）。")
    return name


def clean_doctor_phone(value: str | None) -> str | None:
    phone, reason = clean_phone(value or "")
    if reason:
        raise OrgError(f"联系电话“{value}”无效：{reason}。")
    return phone or None


def clean_reason(value: str | None, *, required: bool) -> str | None:
    reason = (value or "").strip()
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in reason):
        raise OrgError("原因不能包含控制字符。")
    if required and len(reason) < 2:
        raise OrgError("请填写原因（至少2个字）。")
    return reason[:500] or None


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------


def record_change(session: Session, actor: Actor, kind: str, unit_id: int, action: str,
            before: dict | None, after: dict | None, reason: str | None) -> None:
    def dump(values):
        return json.dumps(values, ensure_ascii=False, sort_keys=True) if values is not None else None

    session.add(OrgChange(unit_kind=kind, unit_id=unit_id, action=action, before=dump(before), after=dump(after),
                          reason=reason, actor=actor.name, user_id=actor.user_id))
    audit(session, f"org_{action}", actor.name, user_id=actor.user_id, target=f"{kind}:{unit_id}",
          detail=dump({"before": before, "after": after, "reason": reason}),
          county_id=county_of(kind, unit_of(session, kind, unit_id)).id)


def _diff(unit, values: dict) -> tuple[dict, dict]:
    before, after = {}, {}
    for key, value in values.items():
        if getattr(unit, key) != value:
            before[key], after[key] = getattr(unit, key), value
    return before, after


def _apply(session: Session, actor: Actor, kind: str, unit, values: dict, reason: str | None) -> dict:
    """Set changed values; a name change is a rename (its own history row), the rest an edit."""
    before, after = _diff(unit, values)
    if not after:
        return {}
    for key, value in after.items():
        setattr(unit, key, value)
    session.flush()
    if "name" in after:
        record_change(session, actor, kind, unit.id, "rename", {"name": before.pop("name")}, {"name": after["name"]}, reason)
    if after.keys() - {"name"}:
        record_change(session, actor, kind, unit.id, "edit", before, {k: v for k, v in after.items() if k != "name"}, reason)
    return after


def history(session: Session, kind: str, unit_id: int) -> list[OrgChange]:
    return list(session.scalars(
        select(OrgChange).where(OrgChange.unit_kind == kind, OrgChange.unit_id == unit_id)
        .order_by(OrgChange.at.desc(), OrgChange.id.desc())
    ))


def former_names(session: Session, kind: str, unit_id: int) -> list[str]:
    """Names the unit had before, most recent first."""
    names = []
    for change in history(session, kind, unit_id):
        if change.action == "rename" and change.before:
            old = json.loads(change.before).get("name")
            if old and old not in names:
                names.append(old)
    return names


def describe(change: OrgChange) -> str:
    """One line of a unit's history, in Chinese."""
    labels = {"name": "名称", "code": "代码", "type": "类型", "leader_doctor": "团队长", "doctor_phone": "联系电话",
              "institution": "所属机构", "into": "并入", "residents": "居民", "from": "来自团队",
              "county": "所属县区", "active": "状态"}
    before = json.loads(change.before) if change.before else {}
    after = json.loads(change.after) if change.after else {}

    def shown(value, key: str = "") -> str:
        if key == "doctor_phone" and value:
            return mask_phone(value)  # history is read on pages that mask phones
        if isinstance(value, bool):
            return "在用" if value else "停用"
        return "（空）" if value is None or value == "" else str(value)

    parts = []
    for key in sorted(set(before) | set(after)):
        if key in before and key in after:
            parts.append(f"{labels.get(key, key)}：{shown(before[key], key)} → {shown(after[key], key)}")
        elif key in after and after[key] is not None and after[key] != "":
            parts.append(f"{labels.get(key, key)}：{shown(after[key], key)}")
    return "；".join(parts)


# ---------------------------------------------------------------------------
# Counties
# ---------------------------------------------------------------------------


def _county_taken(session: Session, name: str, code: str, exclude: int | None = None) -> None:
    for column, value, label in ((County.name, name, "名称"), (County.code, code, "代码")):
        stmt = select(County.id).where(column == value)
        if exclude is not None:
            stmt = stmt.where(County.id != exclude)
        if session.scalar(stmt) is not None:
            raise OrgError(f"县区{label}“{value}”已存在。")


def create_county(session: Session, name: str, code: str, *, actor: Actor) -> County:
    name, code = clean_name("county", name), clean_county_code(code)
    _county_taken(session, name, code)
    county = County(name=name, code=code, active=True)
    session.add(county)
    session.flush()
    record_change(session, actor, "county", county.id, "create", None, {"name": name, "code": code}, None)
    return county


def edit_county(session: Session, county: County, *, name: str, code: str, actor: Actor,
                reason: str | None = None) -> dict:
    name, code = clean_name("county", name), clean_county_code(code)
    _county_taken(session, name, code, exclude=county.id)
    return _apply(session, actor, "county", county, {"name": name, "code": code}, clean_reason(reason, required=False))


# ---------------------------------------------------------------------------
# Institutions
# ---------------------------------------------------------------------------


def _institution_taken(session: Session, county_id: int, name: str, code: str | None, exclude: int | None = None) -> None:
    stmt = select(Institution.id).where(Institution.county_id == county_id, Institution.name == name)
    if exclude is not None:
        stmt = stmt.where(Institution.id != exclude)
    if session.scalar(stmt) is not None:
        raise OrgError(f"本县区已有名为“{name}”的机构。")
    if code:
        stmt = select(Institution.name, Institution.county_id).where(Institution.code == code)
        if exclude is not None:
            stmt = stmt.where(Institution.id != exclude)
        other = session.execute(stmt).first()
        if other is not None:
            # another county's institution is not named: a supervisor sees only their county
            holder = f"“{other.name}”" if other.county_id == county_id else "其他县区的机构"
            raise OrgError(f"机构代码“{code}”已被{holder}使用。")


def create_institution(session: Session, county: County, *, name: str, code: str | None, type: str,
                       actor: Actor) -> Institution:
    name, code, kind = clean_name("institution", name), clean_institution_code(code), clean_type(type)
    _institution_taken(session, county.id, name, code)
    inst = Institution(county_id=county.id, name=name, code=code, type=kind, active=True)
    session.add(inst)
    session.flush()
    record_change(session, actor, "institution", inst.id, "create", None,
            {"name": name, "code": code, "type": kind, "county": county.name}, None)
    return inst


def edit_institution(session: Session, inst: Institution, *, name: str, code: str | None, type: str, actor: Actor,
                     reason: str | None = None) -> dict:
    name, code, kind = clean_name("institution", name), clean_institution_code(code), clean_type(type)
    _institution_taken(session, inst.county_id, name, code, exclude=inst.id)
    return _apply(session, actor, "institution", inst, {"name": name, "code": code, "type": kind},
                  clean_reason(reason, required=False))


# ---------------------------------------------------------------------------
# Teams
# ---------------------------------------------------------------------------


def _team_taken(session: Session, institution_id: int, name: str, exclude: int | None = None) -> None:
    stmt = select(Team.id).where(Team.institution_id == institution_id, Team.name == name)
    if exclude is not None:
        stmt = stmt.where(Team.id != exclude)
    if session.scalar(stmt) is not None:
        raise OrgError(f"该机构已有名为“{name}”的团队。")


def create_team(session: Session, inst: Institution, *, name: str, leader_doctor: str | None,
                doctor_phone: str | None, actor: Actor) -> Team:
    name = clean_name("team", name)
    leader, phone = clean_person(leader_doctor), clean_doctor_phone(doctor_phone)
    _team_taken(session, inst.id, name)
    team = Team(institution_id=inst.id, name=name, leader_doctor=leader, doctor_phone=phone, active=True)
    session.add(team)
    session.flush()
    record_change(session, actor, "team", team.id, "create", None,
            {"name": name, "leader_doctor": leader, "doctor_phone": phone, "institution": inst.name}, None)
    return team


def edit_team(session: Session, team: Team, *, name: str, leader_doctor: str | None, doctor_phone: str | None,
              actor: Actor, reason: str | None = None) -> dict:
    name = clean_name("team", name)
    leader, phone = clean_person(leader_doctor), clean_doctor_phone(doctor_phone)
    _team_taken(session, team.institution_id, name, exclude=team.id)
    return _apply(session, actor, "team", team, {"name": name, "leader_doctor": leader, "doctor_phone": phone},
                  clean_reason(reason, required=False))


def team_residents(session: Session, team_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Resident).where(Resident.team_id == team_id)) or 0


def move_team(session: Session, team: Team, target: Institution, *, reason: str, actor: Actor) -> None:
    """The team (with its residents) now belongs to ``target``, an active institution of the
    same county. Past cases keep the institution they were drawn in."""
    reason = clean_reason(reason, required=True)
    source = team.institution
    if target.id == source.id:
        raise OrgError("团队已属于该机构。")
    if target.county_id != source.county_id:
        raise OrgError("团队只能调整到本县区的机构。")
    if not target.active:
        raise OrgError(f"机构“{target.name}”已停用，不能接收团队。")
    _team_taken(session, target.id, team.name)
    team.institution_id = target.id
    team.institution = target
    session.flush()
    record_change(session, actor, "team", team.id, "move", {"institution": source.name}, {"institution": target.name}, reason)


def merge_teams(session: Session, absorbed: Team, survivor: Team, *, reason: str, actor: Actor) -> int:
    """Move every resident of ``absorbed`` to ``survivor`` and deactivate ``absorbed`` (it
    remembers where it went). Returns the residents moved. Past cases stay with the team they
    were drawn in, so every past figure is unchanged."""
    reason = clean_reason(reason, required=True)
    if absorbed.id == survivor.id:
        raise OrgError("不能把团队并入它自己。")
    if survivor.institution.county_id != absorbed.institution.county_id:
        raise OrgError("只能合并本县区的团队。")
    if not survivor.active or not survivor.institution.active:
        raise OrgError(f"团队“{survivor.name}”或其机构已停用，不能接收居民。")
    if not absorbed.active:
        raise OrgError(f"团队“{absorbed.name}”已停用或已合并。")
    moved = session.execute(
        update(Resident).where(Resident.team_id == absorbed.id).values(team_id=survivor.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    absorbed.active = False
    absorbed.merged_into_id = survivor.id
    session.flush()
    where = f"{survivor.institution.name} · {survivor.name}"
    record_change(session, actor, "team", absorbed.id, "merge", None, {"into": where, "residents": moved}, reason)
    record_change(session, actor, "team", survivor.id, "absorb", None,
            {"from": f"{absorbed.institution.name} · {absorbed.name}", "residents": moved}, reason)
    return moved


# ---------------------------------------------------------------------------
# Active or not
# ---------------------------------------------------------------------------


def set_active(session: Session, kind: str, unit, active: bool, *, reason: str | None, actor: Actor) -> bool:
    """Deactivate (a reason required) or reactivate a unit; False when it already was."""
    if bool(unit.active) == bool(active):
        return False
    reason = clean_reason(reason, required=not active)
    if active and kind == "team" and unit.merged_into_id is not None:
        raise OrgError("已合并的团队不能重新启用：其居民已转入其他团队。")
    if active and kind == "team" and not unit.institution.active:
        raise OrgError(f"请先启用所属机构“{unit.institution.name}”。")
    if active and kind == "institution" and not unit.county.active:
        raise OrgError(f"请先启用所属县区“{unit.county.name}”。")
    unit.active = bool(active)
    session.flush()
    record_change(session, actor, kind, unit.id, "reactivate" if active else "deactivate",
            {"active": not active}, {"active": bool(active)}, reason)
    return True


def unit_of(session: Session, kind: str, unit_id: int):
    model = {"county": County, "institution": Institution, "team": Team}[kind]
    return session.get(model, unit_id)


def county_of(kind: str, unit) -> County:
    if kind == "county":
        return unit
    if kind == "institution":
        return unit.county
    return unit.institution.county


def infer_institution_type(name: str) -> str | None:
    if "社区卫生服务中心" in name:
        return "社区卫生服务中心"
    if "社区卫生服务站" in name:
        return "社区卫生服务站"
    if "中心卫生院" in name:
        return "中心卫生院"
    if name.endswith("卫生院"):
        return "乡镇卫生院"
    return None
