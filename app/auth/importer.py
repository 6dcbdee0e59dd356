"""Bulk creation of accounts from a sheet (用户名, 姓名, 角色, 县区, 手机, optional 初始密码): how a
city sets up its supervisors and callers at once.

The sheet is read by the roster reader (xlsx/xls/csv, title rows, merged cells, CSV encodings,
every cell as text). ``check_user_sheet`` writes nothing: it returns the rows that would be
created and the rejected ones with their reasons. ``create_accounts`` creates every accepted
row through ``create_user`` (the same rules as one account on the web) inside the caller's
transaction: the caller commits all of them or none. Every account must choose its own
password at first sign-in; a row without an initial password gets a random one, handed to the
administrator once in a password file.

``ImportStore`` keeps a web preview between the upload and the confirmation, and makes sure a
preview is confirmed once; the users table's unique case-folded name is the final guarantee
that an account is never created twice.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app.auth.passwords import generate_password, password_problem
from app.auth.services import (
    Actor,
    UserError,
    clean_real_name,
    clean_user_phone,
    clean_username,
    create_user,
    taken_message,
)
from app.models import audit, ROLES, County, User, username_key
from app.core.sheets import CHUNK_ROWS, HeaderSpec, open_sheet, Rejection, SheetFileError
from app.core.upload_guard import ReadLimits
from app.core.masking import mask_phone, scrub_ids
from app.core.spreadsheets import write_error_report, write_xlsx

USER_SHEET = HeaderSpec(
    aliases={
        "username": ("用户名", "登录名", "账号", "登录账号", "用户账号"),
        "real_name": ("姓名", "真实姓名", "人员姓名"),
        "role": ("角色", "用户角色"),
        "county": ("县区", "县市区", "所属县区", "县（市、区）", "区县"),
        "phone": ("手机", "手机号", "手机号码", "联系电话", "电话"),
        "password": ("初始密码", "临时密码", "密码"),
    },
    labels={"username": "用户名", "real_name": "姓名", "role": "角色", "county": "县区", "phone": "手机",
            "password": "初始密码"},
    anchors=("username", "real_name"),
    required=("username", "real_name", "role"),
)
# Hashing a password takes about 0.1 s of a core (scrypt, on purpose): 2,000 accounts are a few
# minutes' work on a small server, and more than any city has staff.
MAX_ROWS = 2_000
MAX_BYTES = 5 << 20
ROLE_NAMES = {label: key for key, label in ROLES.items()} | {key: key for key in ROLES}
HIDDEN = "（已隐藏）"
PASSWORD_COLUMNS = ["用户名", "姓名", "角色", "县区", "初始密码"]


class UserImportFailed(Exception):
    """The file could not be used at all; the message is for the user, in Chinese."""


@dataclass(frozen=True)
class SheetRow:
    """An accepted row: what the account will be. ``password`` None: one is generated."""

    sheet: str
    row: int
    username: str
    real_name: str
    role: str
    county: str | None
    phone: str | None
    password: str | None = field(default=None, repr=False)

    @property
    def role_label(self) -> str:
        return ROLES[self.role]

    def public(self) -> dict:
        """What a page may show and a preview may keep: never the password."""
        return {"sheet": self.sheet, "row": self.row, "username": self.username, "real_name": self.real_name,
                "role": self.role_label, "county": self.county or "", "phone": mask_phone(self.phone),
                "password": "表中提供" if self.password else "自动生成"}


@dataclass
class SheetCheck:
    read: int
    sha256: str
    accepted: list[SheetRow]
    rejections: list[Rejection]
    notice: str | None = None  # sheets not read (no header, hidden)

    @property
    def rejected(self) -> int:
        return len({(r.sheet, r.row) for r in self.rejections})


@dataclass
class CreatedAccount:
    username: str
    real_name: str
    role: str
    county: str | None
    password: str = field(repr=False)
    generated: bool


def _read(path: Path, limits: ReadLimits | None = None) -> tuple[list[dict], set[str], str | None]:
    """The sheet's rows as {field: text, "_sheet", "_row"}; the fields its header has; what
    was not read (sheets without a header, hidden sheets)."""
    if not path.is_file():
        raise UserImportFailed("文件不存在。")
    if path.stat().st_size > MAX_BYTES:
        raise UserImportFailed(f"文件超过 {MAX_BYTES >> 20} MB，不像是用户表。")
    try:
        source = open_sheet(path, CHUNK_ROWS, USER_SHEET, limits)
        chunks = list(source.chunks())
    except SheetFileError as exc:
        raise UserImportFailed(str(exc)) from exc
    except Exception as exc:  # a broken or disguised file must never crash the process
        raise UserImportFailed("无法读取文件：文件已损坏，或不是 .xlsx、.xls、.csv 表格。") from exc
    rows = []
    for chunk in chunks:
        frame = chunk.frame
        columns = {f: (frame[f].tolist() if f in frame.columns else [""] * len(frame)) for f in USER_SHEET.aliases}
        for pos, number in enumerate(chunk.row_numbers.tolist()):
            row = {f: str(values[pos] if values[pos] is not None else "") for f, values in columns.items()}
            row["_sheet"], row["_row"] = chunk.sheet, int(number)
            rows.append(row)
            if len(rows) > MAX_ROWS:
                raise UserImportFailed(f"文件超过 {MAX_ROWS} 行，请分批导入。")
    if not rows:
        raise UserImportFailed("文件中没有数据行。")
    return rows, set(source.fields), source.notice


def check_user_sheet(session: Session, path: str | Path, limits: ReadLimits | None = None) -> SheetCheck:
    """Read and check the sheet against the database; writes nothing. Raises UserImportFailed
    when the file cannot be read."""
    path = Path(path)
    rows, fields, notice = _read(path, limits)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    counties = {c.name: c for c in session.scalars(select(County))}
    wanted = set()
    for row in rows:
        try:
            wanted.add(username_key(clean_username(row["username"])))
        except UserError:
            pass
    existing = set()
    keys = sorted(wanted)
    for start in range(0, len(keys), 500):
        existing.update(session.scalars(select(User.username_key).where(User.username_key.in_(keys[start:start + 500]))))

    labels = USER_SHEET.labels
    accepted: list[SheetRow] = []
    rejections: list[Rejection] = []
    first_row: dict[str, int] = {}
    for row in rows:
        sheet, number = row["_sheet"], row["_row"]
        errors: list[tuple[str, str, str]] = []  # column, value, reason

        def fail(name: str, value: str, reason: str) -> None:
            errors.append((labels[name], value, reason.rstrip("。")))

        username = real_name = phone = None
        try:
            username = clean_username(row["username"])
        except UserError as exc:
            fail("username", row["username"].strip(), str(exc))
        if username is not None:
            key = username_key(username)
            if key in first_row:
                fail("username", username, f"与第{first_row[key]}行的用户名重复（不区分大小写）")
            else:
                first_row[key] = number
                if key in existing:
                    fail("username", username, taken_message(username))
        try:
            real_name = clean_real_name(row["real_name"])
        except UserError as exc:
            fail("real_name", row["real_name"].strip(), str(exc))
        role_text = re.sub(r"\s+", "", row["role"])
        role = ROLE_NAMES.get(role_text) or ROLE_NAMES.get(role_text.lower())
        if role is None:
            fail("role", role_text, f"角色“{role_text}”无法识别（应为 市级管理员、县级督导、调查员，或 admin、supervisor、caller）"
                 if role_text else "请填写角色（市级管理员、县级督导、调查员）")
        county_name = row["county"].strip() or None
        if role is not None and role != "admin":
            county = counties.get(county_name) if county_name else None
            if county_name is None:
                fail("county", "", "县级督导和调查员必须填写所属县区")
            elif county is None:
                fail("county", county_name, f"县区“{county_name}”不存在")
            elif not getattr(county, "active", True):
                fail("county", county_name, f"县区“{county_name}”已停用")
        elif role == "admin":
            county_name = None  # an admin belongs to no county
        try:
            phone = clean_user_phone(row["phone"])
        except UserError as exc:
            fail("phone", row["phone"].strip(), str(exc))
        # a space typed around it in a cell is not part of the password people will be told
        password = row["password"].strip() or None
        if password is not None:
            problem = password_problem(password, username)
            if problem:
                fail("password", HIDDEN, problem)

        if errors:
            rejections.extend(Rejection(sheet, number, column, value, reason) for column, value, reason in errors)
        else:
            accepted.append(SheetRow(sheet, number, username, real_name, role, county_name, phone, password))
    return SheetCheck(read=len(rows), sha256=sha, accepted=accepted, rejections=rejections, notice=notice)


def _hash_all(passwords: list[str]) -> list[str]:
    # scrypt releases the GIL: threads hash on every core
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        return list(pool.map(generate_password_hash, passwords))


def create_accounts(session: Session, check: SheetCheck, *, actor: Actor, filename: str) -> list[CreatedAccount]:
    """Create every accepted row (flushes; the caller commits all or rolls back all). Raises
    UserImportFailed when one of them can no longer be created (a name taken meanwhile)."""
    rows = check.accepted
    passwords = [row.password or generate_password(row.username) for row in rows]
    hashes = _hash_all(passwords)
    created = []
    for row, password, hashed in zip(rows, passwords, hashes):
        try:
            create_user(session, row.username, row.role, password, row.county, real_name=row.real_name,
                        phone=row.phone, actor=actor, must_change_password=True, password_hash=hashed)
        except UserError as exc:
            raise UserImportFailed(f"第{row.row}行（{row.username}）：{exc}") from exc
        created.append(CreatedAccount(row.username, row.real_name, row.role, row.county, password,
                                      generated=row.password is None))
    if created:
        audit(session, "user_import", actor, target=f"file:{check.sha256[:16]} {filename}",
              detail=json.dumps({"read": check.read, "created": len(created), "rejected": check.rejected,
                                 "generated_passwords": sum(c.generated for c in created)},
                                ensure_ascii=False, sort_keys=True))
    session.flush()
    return created


def passwords_frame(created: list[CreatedAccount]) -> pd.DataFrame:
    return pd.DataFrame(
        [(c.username, c.real_name, ROLES[c.role], c.county or "", c.password if c.generated else "（导入表中提供的密码）")
         for c in created],
        columns=PASSWORD_COLUMNS,
    )


def write_passwords_file(path: Path, created: list[CreatedAccount]) -> Path:
    """The new accounts with their temporary passwords, readable by this system user only."""
    path = write_xlsx(path, {"初始密码": passwords_frame(created)}, {"初始密码": 18, "用户名": 20},
                      titles={"初始密码": "首次登录后须修改密码。本文件请妥善保管，发放后删除。"})
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------------------
# The command line's one-step import
# ---------------------------------------------------------------------------


@dataclass
class UserImportResult:
    read: int
    created: int
    rejected: int
    rejections: list[Rejection]
    error_report: Path | None = None
    passwords_file: Path | None = None

    def summary_line(self) -> str:
        return f"read={self.read} created={self.created} rejected={self.rejected}"

    def summary_zh(self) -> str:
        return f"读取 {self.read} 行，新建用户 {self.created} 个，拒绝 {self.rejected} 行"


def import_users(session: Session, path: str | Path, *, actor: Actor, reports_dir: Path, passwords_dir: Path,
                 dry_run: bool = False, limits: ReadLimits | None = None) -> UserImportResult:
    """Check and (unless ``dry_run``) create, inside the caller's transaction. The error report
    and the passwords file are written before the caller commits (a failed write creates
    nobody); the caller deletes the passwords file if its commit fails."""
    path = Path(path)
    check = check_user_sheet(session, path, limits)
    result = UserImportResult(check.read, 0, check.rejected, check.rejections)
    result.error_report = write_error_report(reports_dir, check.sha256, check.rejections)
    if dry_run:
        result.created = len(check.accepted)  # what a real run would create
        return result
    if not check.accepted:
        return result
    created = create_accounts(session, check, actor=actor, filename=path.name)
    result.created = len(created)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    result.passwords_file = write_passwords_file(
        Path(passwords_dir) / f"{stamp}-{check.sha256[:8]}-{secrets.token_hex(3)}-用户初始密码.xlsx", created
    )
    return result


# ---------------------------------------------------------------------------
# The web's preview, kept between the upload and the confirmation
# ---------------------------------------------------------------------------

TOKEN = re.compile(r"^[0-9a-f]{32}$")
PAGE_ROWS = 500
KEEP_SECONDS = 2 * 86400  # an upload, its preview and an unfetched password file: two days


class ImportStore:
    """One folder per upload: the file, its state (the preview; after confirmation the
    result), a claim that lets one confirmation through, and the one-time password file."""

    def __init__(self, base: str | Path):
        self.base = Path(base) / "users"

    def folder(self, token: str) -> Path:
        if not TOKEN.match(token or ""):
            raise FileNotFoundError(token)
        return self.base / token

    def new(self, suffix: str) -> tuple[str, Path]:
        self.prune()
        token = uuid.uuid4().hex
        folder = self.base / token
        folder.mkdir(parents=True, mode=0o700)
        return token, folder / f"source{suffix}"

    def discard(self, token: str) -> None:
        folder = self.folder(token)
        for item in folder.glob("*"):
            item.unlink(missing_ok=True)
        folder.rmdir()

    def prune(self, max_age_seconds: float = KEEP_SECONDS) -> None:
        """Forget uploads older than ``max_age_seconds`` (with any password file nobody fetched)."""
        if not self.base.is_dir():
            return
        limit = time.time() - max_age_seconds
        for folder in self.base.iterdir():
            try:
                if TOKEN.match(folder.name) and folder.stat().st_mtime < limit:
                    self.discard(folder.name)
            except OSError:
                pass  # another worker pruned it first

    def source(self, token: str) -> Path:
        found = sorted(self.folder(token).glob("source.*"))
        if not found:
            raise FileNotFoundError(token)
        return found[0]

    def load(self, token: str) -> dict:
        return json.loads((self.folder(token) / "state.json").read_text("utf-8"))

    def save(self, token: str, state: dict) -> None:
        target = self.folder(token) / "state.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, ensure_ascii=False), "utf-8")
        os.replace(tmp, target)

    def claim(self, token: str) -> bool:
        """True for the first confirmation only (an exclusive create: double clicks, retries
        and a second worker all see it taken)."""
        try:
            fd = os.open(self.folder(token) / "claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def release(self, token: str) -> None:
        (self.folder(token) / "claim").unlink(missing_ok=True)

    def passwords_path(self, token: str) -> Path:
        return self.folder(token) / "passwords.xlsx"

    def take_passwords(self, token: str) -> bytes | None:
        """The password file's bytes, once: it is moved aside atomically (a second request
        finds nothing) and deleted."""
        taken = self.folder(token) / f"passwords-{uuid.uuid4().hex}.sending"
        try:
            os.replace(self.passwords_path(token), taken)
        except FileNotFoundError:
            return None
        try:
            return taken.read_bytes()
        finally:
            taken.unlink(missing_ok=True)


def preview_state(check: SheetCheck, *, actor_id: int, filename: str, error_report: Path | None) -> dict:
    return {
        "status": "preview",
        "actor_id": actor_id,
        "filename": filename,
        "sha256": check.sha256,
        "read": check.read,
        "accepted": [row.public() for row in check.accepted],
        "accepted_names": [row.username for row in check.accepted],
        "rejected": check.rejected,
        "rejections": [{**asdict(r), "value": scrub_ids(r.value)} for r in check.rejections[:PAGE_ROWS]],
        "rejection_count": len(check.rejections),
        "error_report": error_report.stem if error_report else None,
        "notice": check.notice,
        "created_at": datetime.now().isoformat(timespec="seconds"),
    }
