"""Institutions and teams named by a roster's rows: looked up once per import, and created
with --create-missing (each creation recorded in the organisation's history)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import County, Institution, Team
from app.org.maintenance import Actor, record_change
from app.org.maintenance import infer_institution_type


class OrgIndex:
    def __init__(self, session: Session, create_missing: bool, batch_county: County | None, actor: Actor | None = None):
        self.session = session
        self.actor = actor or Actor("名册导入")
        self.create_missing = create_missing
        self.batch_county = batch_county
        self.counties = {c.name: c for c in session.scalars(select(County))}
        self.institutions: dict[tuple[int, str], Institution] = {}
        self.institutions_by_name: dict[str, list[Institution]] = {}
        for inst in session.scalars(select(Institution)):
            self.institutions[(inst.county_id, inst.name)] = inst
            self.institutions_by_name.setdefault(inst.name, []).append(inst)
        self.codes = {inst.code: inst for insts in self.institutions_by_name.values() for inst in insts if inst.code}
        self.teams = {(t.institution_id, t.name): t for t in session.scalars(select(Team))}
        self.institutions_created = 0
        self.teams_created = 0

    def institution(
        self, county_name: str, name: str, code: str = "", create: bool = True
    ) -> tuple[Institution | None, str]:
        """(institution, '') or (None, reason). Creates it with --create-missing when asked."""
        county = self.batch_county
        if county_name:
            found = self.counties.get(county_name)
            if found is None:
                return None, f"县区“{county_name}”不存在"
            if county is not None and found.id != county.id:
                return None, f"该行县区“{county_name}”与本次导入选择的县区“{county.name}”不一致"
            county = found
        if county is None:
            candidates = self.institutions_by_name.get(name, [])
            if len(candidates) == 1:
                return candidates[0], ""
            if len(candidates) > 1:
                return None, f"机构“{name}”在多个县区重名，请在导入时指定县区"
            return None, f"机构“{name}”不存在（新建机构需指定县区）"
        inst = self.institutions.get((county.id, name))
        if inst is not None:
            return inst, ""
        if not (self.create_missing and create):
            return None, f"机构“{name}”在{county.name}不存在（可选择“自动新建机构和团队”）"
        kind = infer_institution_type(name)
        if kind is None:
            return None, f"无法从名称判断机构“{name}”的类型（应以 卫生院/中心卫生院/社区卫生服务中心 结尾）"
        if code and code in self.codes:
            return None, f"机构编码“{code}”已被机构“{self.codes[code].name}”使用"
        inst = Institution(county_id=county.id, name=name, type=kind, code=code or None)
        if code:
            self.codes[code] = inst
        self.session.add(inst)
        self.session.flush()
        self.institutions[(county.id, name)] = inst
        self.institutions_by_name.setdefault(name, []).append(inst)
        self.institutions_created += 1
        record_change(self.session, self.actor, "institution", inst.id, "create", None,
                      {"name": name, "code": code or None, "type": kind, "county": county.name}, "名册导入时自动新建")
        return inst, ""

    def team(self, inst: Institution, name: str, doctor: str, doctor_phone: str) -> tuple[Team | None, str]:
        team = self.teams.get((inst.id, name))
        if team is not None:
            return team, ""
        if not self.create_missing:
            return None, f"团队“{name}”在{inst.name}不存在（可选择“自动新建机构和团队”）"
        team = Team(institution_id=inst.id, name=name, leader_doctor=doctor or None, doctor_phone=doctor_phone or None)
        self.session.add(team)
        self.session.flush()
        self.teams[(inst.id, name)] = team
        self.teams_created += 1
        record_change(self.session, self.actor, "team", team.id, "create", None,
                      {"name": name, "leader_doctor": doctor or None, "doctor_phone": doctor_phone or None,
                       "institution": inst.name}, "名册导入时自动新建")
        return team, ""
