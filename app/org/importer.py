"""Import of the organisation structure from a sheet (县区, 县区代码, 机构, 机构代码, 机构类型, 团队,
团队长, 联系电话): how a city loads its counties, institutions and teams at once.

Read by the roster reader (title rows, merged cells filled down, footers, CSV encodings), each
row applied in a savepoint through the maintenance services (so every unit gets its history
and every rule is the same as on the web); a rejected row is reported with its reason and
leaves nothing behind; the whole import is one transaction that the caller commits, or rolls
back for a preview. Units are matched by name; an existing unit's empty cells change nothing,
other cells update it (never a rename: a name is how a row finds its unit).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import County, Institution, Team
from app.org.maintenance import (
    Actor,
    OrgError,
    clean_county_code,
    clean_doctor_phone,
    clean_institution_code,
    clean_name,
    clean_person,
    clean_type,
    create_county,
    create_institution,
    create_team,
    edit_institution,
    edit_team,
)
from app.org.maintenance import infer_institution_type
from app.core.sheets import CHUNK_ROWS, HeaderSpec, open_sheet, Rejection, SheetFileError
from app.core.spreadsheets import write_error_report
from app.core.upload_guard import ReadLimits

ORG_SHEET = HeaderSpec(
    aliases={
        "county": ("县区", "县市区", "县（市、区）", "区县", "县区名称"),
        "county_code": ("县区代码", "行政区划代码", "县区编码", "区划代码"),
        "institution": ("机构", "机构名称", "基层医疗卫生机构", "签约机构"),
        "institution_code": ("机构代码", "机构编码", "统一社会信用代码"),
        "institution_type": ("机构类型", "类型"),
        "team": ("团队", "团队名称", "签约团队", "家庭医生团队"),
        "leader": ("团队长", "团队长姓名", "家庭医生", "签约医生"),
        "phone": ("联系电话", "电话", "团队长电话", "医生电话", "手机"),
    },
    labels={"county": "县区", "county_code": "县区代码", "institution": "机构", "institution_code": "机构代码",
            "institution_type": "机构类型", "team": "团队", "leader": "团队长", "phone": "联系电话"},
    anchors=("county", "institution"),
    required=("county", "institution"),
)
MAX_ROWS = 50_000


class OrgImportFailed(Exception):
    """The file could not be imported at all; the message is for the user, in Chinese."""


@dataclass
class OrgImportResult:
    read: int = 0
    rejected: int = 0
    created: dict[str, int] = field(default_factory=lambda: {"county": 0, "institution": 0, "team": 0})
    updated: dict[str, int] = field(default_factory=lambda: {"county": 0, "institution": 0, "team": 0})
    rejections: list[Rejection] = field(default_factory=list)
    error_report: Path | None = None
    notice: str | None = None  # sheets not read (no header, hidden)

    def summary_line(self) -> str:
        c, u = self.created, self.updated
        return (f"read={self.read} rejected={self.rejected} counties_created={c['county']} "
                f"institutions_created={c['institution']} institutions_updated={u['institution']} "
                f"teams_created={c['team']} teams_updated={u['team']}")

    def summary_zh(self) -> str:
        c, u = self.created, self.updated
        return (f"读取 {self.read} 行，拒绝 {self.rejected} 行；新建县区 {c['county']} 个、机构 {c['institution']} 家、"
                f"团队 {c['team']} 个；更新机构 {u['institution']} 家、团队 {u['team']} 个"
                + (f"。{self.notice}" if self.notice else ""))


class _RowError(Exception):
    def __init__(self, column: str, value: str, reason: str):
        super().__init__(reason)
        self.column, self.value, self.reason = column, value, reason


def _check(label: str, value: str, clean):
    try:
        return clean(value)
    except OrgError as exc:
        raise _RowError(label, value, str(exc)) from None


def _apply_row(session: Session, row: dict, actor: Actor, result: OrgImportResult,
               seen: dict[tuple, int], number: int) -> None:
    labels = ORG_SHEET.labels
    county_name = _check(labels["county"], row["county"], lambda v: clean_name("county", v))
    inst_name = _check(labels["institution"], row["institution"], lambda v: clean_name("institution", v))
    team_name = _check(labels["team"], row["team"], lambda v: clean_name("team", v)) if row["team"] else None
    code = _check(labels["county_code"], row["county_code"], clean_county_code) if row["county_code"] else None
    inst_code = _check(labels["institution_code"], row["institution_code"], clean_institution_code)
    inst_type = _check(labels["institution_type"], row["institution_type"], clean_type) if row["institution_type"] else None
    leader = _check(labels["leader"], row["leader"], clean_person)
    phone = _check(labels["phone"], row["phone"], clean_doctor_phone)

    key = (county_name, inst_name, team_name)
    if key in seen:
        what = f"团队“{team_name}”" if team_name else f"机构“{inst_name}”"
        raise _RowError(labels["team"] if team_name else labels["institution"], team_name or inst_name,
                        f"{what}与第{seen[key]}行重复")

    county = session.scalar(select(County).where(County.name == county_name))
    if county is None:
        if code is None:
            raise _RowError(labels["county_code"], "", f"县区“{county_name}”不存在，新建时须填写6位县区代码")
        county = create_county(session, county_name, code, actor=actor)
        result.created["county"] += 1
    elif code is not None and county.code != code:
        raise _RowError(labels["county_code"], code, f"县区“{county_name}”已有代码 {county.code}，与本行不一致")

    inst = session.scalar(select(Institution).where(Institution.county_id == county.id, Institution.name == inst_name))
    if inst is None:
        kind = inst_type or infer_institution_type(inst_name)
        if kind is None:
            raise _RowError(labels["institution_type"], "", "无法从机构名称推断类型，请填写机构类型")
        inst = create_institution(session, county, name=inst_name, code=inst_code, type=kind, actor=actor)
        result.created["institution"] += 1
    elif (inst_code and inst_code != inst.code) or (inst_type and inst_type != inst.type):
        if edit_institution(session, inst, name=inst.name, code=inst_code or inst.code, type=inst_type or inst.type,
                            actor=actor, reason="机构与团队导入"):
            result.updated["institution"] += 1

    if team_name is not None:
        team = session.scalar(select(Team).where(Team.institution_id == inst.id, Team.name == team_name))
        if team is None:
            create_team(session, inst, name=team_name, leader_doctor=leader, doctor_phone=phone, actor=actor)
            result.created["team"] += 1
        elif (leader and leader != team.leader_doctor) or (phone and phone != team.doctor_phone):
            if edit_team(session, team, name=team.name, leader_doctor=leader or team.leader_doctor,
                         doctor_phone=phone or team.doctor_phone, actor=actor, reason="机构与团队导入"):
                result.updated["team"] += 1
    seen[key] = number


def import_organisation(session: Session, path: str | Path, *, actor: Actor, reports_dir: Path,
                        limits: ReadLimits | None = None) -> OrgImportResult:
    """Apply the sheet inside the caller's transaction (flushes only): commit to keep it, roll
    back for a preview. Raises OrgImportFailed when the file cannot be read."""
    path = Path(path)
    try:
        source = open_sheet(path, CHUNK_ROWS, ORG_SHEET, limits)
        chunks = list(source.chunks())
    except SheetFileError as exc:
        raise OrgImportFailed(str(exc)) from exc
    except Exception as exc:  # a broken file must never crash the process
        raise OrgImportFailed(f"无法读取文件：{type(exc).__name__}") from exc
    total = sum(len(c.frame) for c in chunks)
    if total > MAX_ROWS:
        raise OrgImportFailed(f"文件有 {total} 行，超过机构与团队导入的上限 {MAX_ROWS} 行。")
    if total == 0:
        raise OrgImportFailed("文件中没有数据行。")

    result = OrgImportResult(notice=source.notice)
    seen: dict[tuple, int] = {}
    for chunk in chunks:
        frame = chunk.frame
        columns = {f: (frame[f].tolist() if f in frame.columns else [""] * len(frame)) for f in ORG_SHEET.aliases}
        for pos, number in enumerate(chunk.row_numbers.tolist()):
            row = {f: str(values[pos] or "").strip() for f, values in columns.items()}
            result.read += 1
            counts = dict(result.created), dict(result.updated)
            savepoint = session.begin_nested()
            try:
                _apply_row(session, row, actor, result, seen, int(number))
                savepoint.commit()
                continue
            except _RowError as exc:
                rejection = Rejection(chunk.sheet, int(number), exc.column, exc.value, exc.reason)
            except OrgError as exc:
                rejection = Rejection(chunk.sheet, int(number), "", "", str(exc))
            savepoint.rollback()  # the row leaves nothing behind, its counts included
            result.created, result.updated = counts
            result.rejections.append(rejection)
    result.rejected = len(result.rejections)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    result.error_report = write_error_report(reports_dir, sha, result.rejections)
    return result
