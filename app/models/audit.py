"""The audit log, and the hash chain that makes a rewrite of it evident.

Every row carries ``seq`` (its place in the chain: 1, 2, 3 … without gaps), ``prev_hash``
(the hash of the row at ``seq - 1``; 64 zeros for the first) and ``hash``: the hex SHA-256
of a canonical JSON of its fields and ``prev_hash`` (``record_hash``). One row,
``audit_chain_head``, holds the last link (seq, audit row id, hash).

Rows are linked when their transaction commits, not when they are written: a
``before_commit`` listener flushes, then, holding the chain head (``SELECT … FOR UPDATE`` on
PostgreSQL; on SQLite the transaction already holds the database's single write lock since
it has inserted the rows), gives every unlinked row of the transaction the next places in
id order and moves the head. So

- two transactions never link to the same predecessor: the second waits for the head until
  the first has committed, then reads the head the first left (and ``seq`` is unique, so the
  database itself refuses two rows in one place);
- the head is the last lock a transaction takes and is held only for its commit: no
  lock-order cycle (deadlock) with the rows the work itself locks, and a long import does not
  hold back everyone else's audit rows while it runs;
- a rollback drops the rows and the head's move together.

A row's hash covers ``detail_sha256``, the SHA-256 of its ``detail``, and not the detail
itself: the retention period (app/privacy) can then erase the free text a detail holds about
residents (``erased_at`` marks it) while the chain still verifies. A detail changed by any
other means no longer matches its digest; a digest changed to match no longer matches the
row's hash. An erasure shows as one, with its date, never as the text that was there.

Rows inserted without the ORM unit of work (``session.execute(insert(AuditLog), …)``) are
linked the same way; work on a raw connection of its own calls ``link_pending(connection)``
before committing. Sealing rows afterwards in id order (a job) was rejected: on PostgreSQL ids
are handed out at insert, not at commit, so a job cannot know that no lower id is still to be
committed, and rows would stay unprotected until it ran.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, bindparam, event, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.core.clock import utcnow

GENESIS = "0" * 64  # the prev_hash of the first row
HEAD_ID = 1
PENDING = "audit.pending"  # session.info: the transaction may hold unlinked audit rows

# What each action means, for people (the audit page, its export). An action not listed is
# shown by its code.
ACTION_LABELS = {
    "login": "登录",
    "login_failed": "登录失败",
    "logout": "退出登录",
    "logout_all": "退出全部会话",
    "password_change": "修改密码",
    "user_create": "新建用户",
    "user_update": "修改用户",
    "user_password_reset": "重置密码",
    "user_unlock": "解锁账号",
    "user_import": "批量导入用户",
    "view_phone": "查看完整电话",
    "case_search": "按电话号码查找",
    "answer_edit": "修改答案",
    "undo_attempt": "撤销拨打记录",
    "assign_cases": "分配样本",
    "draw": "抽样",
    "redraw": "重新抽样",
    "close_round": "月末关闭轮次",
    "roster.import": "导入名册",
    "roster.import.preview": "预览名册导入",
    "roster.import.failed": "名册导入失败",
    "roster.import.cancelled": "取消名册导入",
    "org_create": "新建机构/团队",
    "org_edit": "修改机构/团队",
    "org_rename": "机构/团队更名",
    "org_move": "调整团队所属机构",
    "org_merge": "合并团队",
    "org_absorb": "并入团队",
    "org_deactivate": "停用机构/团队",
    "org_reactivate": "启用机构/团队",
    "problem_assign": "问题交办机构",
    "problem_close": "问题整改并关闭",
    "problem_reopen": "问题重新打开",
    "export_call_list": "生成呼叫名单",
    "export.call_list": "下载呼叫名单",
    "export.call_list_print": "打印呼叫名单",
    "export_rankings": "导出排名",
    "export_monthly_report": "导出月度报告",
    "export.user_passwords": "下载初始密码",
    "export.import_errors": "下载错误报告",
    "export.audit_log": "导出审计日志",
    "privacy.purge": "清除过期个人信息",
}


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action, action)


class AuditLog(db.Model):
    """Who did what, when: sign-ins, imports, exports, edits of answers, redraws …"""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(Text)
    # the county the record concerns (what supervisors see): the writer's county_id, else the
    # acting user's county; NULL for city-wide acts (admins only)
    county_id: Mapped[int | None] = mapped_column(ForeignKey("counties.id"), index=True)
    # the chain (see the module's docstring); NULL only until the transaction commits
    seq: Mapped[int | None] = mapped_column(unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    # the SHA-256 of ``detail`` as linked (the hash covers this, not the text), and when the
    # retention period erased the detail
    detail_sha256: Mapped[str | None] = mapped_column(String(64))
    erased_at: Mapped[datetime | None]

    @property
    def action_label(self) -> str:
        return action_label(self.action)


class AuditChainHead(db.Model):
    """The chain's last link: one row (id 1)."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(default=0)
    audit_id: Mapped[int | None]
    hash: Mapped[str] = mapped_column(String(64), default=GENESIS)


@event.listens_for(AuditChainHead.__table__, "after_create")
def _start_chain(table, connection, **_kw):
    """A table made by create_all (tests) starts with its head, as the migration leaves it."""
    connection.execute(table.insert().values(id=HEAD_ID, seq=0, audit_id=None, hash=GENESIS))


# the fields a hash covers, in the canonical order
CHAINED = ("id", "seq", "at", "user_id", "county_id", "actor", "action", "target", "detail_sha256")
# actions whose detail may hold what people wrote about a resident (answers, notes): the
# retention period erases it
ERASABLE_DETAIL_ACTIONS = ("answer_edit", "problem_assign", "problem_close", "problem_reopen")


def detail_digest(detail: str | None) -> str | None:
    """The SHA-256 of a detail as the chain records it (None for no detail)."""
    return None if detail is None else hashlib.sha256(detail.encode("utf-8")).hexdigest()


def canonical(values, prev_hash: str) -> str:
    """The record as hashed: its chained fields and ``prev_hash`` as compact, key-sorted JSON
    (times as ISO 8601 with microseconds)."""
    data = {}
    for name in CHAINED:
        value = values[name]
        if isinstance(value, datetime):
            value = value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        data[name] = value
    data["prev_hash"] = prev_hash
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def record_hash(values, prev_hash: str) -> str:
    """Hex SHA-256 of the record's canonical form; ``values`` maps CHAINED names to values."""
    return hashlib.sha256(canonical(values, prev_hash).encode("utf-8")).hexdigest()


def _lock_head(connection):
    table = AuditChainHead.__table__
    stmt = select(table.c.seq, table.c.hash).where(table.c.id == HEAD_ID).with_for_update()
    head = connection.execute(stmt).first()
    if head is None:  # a database built by create_all (tests), or emptied
        if connection.execute(select(AuditLog.__table__.c.id).where(AuditLog.__table__.c.seq.is_not(None)).limit(1)).first():
            # linked rows without their head: someone deleted it. Starting again at 0 would
            # hide that; refusing keeps the break for `audit verify` to name
            raise RuntimeError("audit_chain_head is missing while audit rows are linked: run `flask audit verify`")
        dialect = connection.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        connection.execute(dialect_insert(table).values(id=HEAD_ID, seq=0, audit_id=None, hash=GENESIS)
                           .on_conflict_do_nothing())
        head = connection.execute(stmt).first()
    return head


def link_pending(connection) -> list[tuple[int, int, str, str]]:
    """Link every unlinked audit row this transaction can see, in id order, and move the head.
    Returns (id, seq, prev_hash, hash) per row linked. Call it just before the commit (the
    session does, see ``_link_on_commit``)."""
    table = AuditLog.__table__
    seq, prev = _lock_head(connection)
    # read after taking the head: a row another transaction links meanwhile is not taken twice
    fields = [table.c[name] for name in CHAINED if name != "detail_sha256"] + [table.c.detail]
    rows = connection.execute(
        select(*fields).where(table.c.seq.is_(None)).order_by(table.c.id)
    ).mappings().all()
    if not rows:
        return []
    links = []
    details = {}
    for row in rows:
        seq += 1
        values = {**row, "seq": seq, "detail_sha256": detail_digest(row["detail"])}
        digest = record_hash(values, prev)
        links.append((row["id"], seq, prev, digest))
        details[row["id"]] = values["detail_sha256"]
        prev = digest
    connection.execute(
        update(table).where(table.c.id == bindparam("b_id"), table.c.seq.is_(None)).values(
            seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash"),
            detail_sha256=bindparam("b_detail")),
        [{"b_id": i, "b_seq": s, "b_prev": p, "b_hash": h, "b_detail": details[i]} for i, s, p, h in links],
    )
    head = AuditChainHead.__table__
    connection.execute(update(head).where(head.c.id == HEAD_ID).values(seq=seq, audit_id=links[-1][0], hash=prev))
    return links


@event.listens_for(Session, "after_flush")
def _note_audit_rows(session, _context):
    if any(isinstance(obj, AuditLog) for obj in session.new):
        session.info[PENDING] = True


@event.listens_for(Session, "do_orm_execute")
def _note_audit_insert(state):
    statement = state.statement
    if getattr(statement, "is_insert", False) and getattr(statement.table, "name", None) == AuditLog.__tablename__:
        state.session.info[PENDING] = True


@event.listens_for(Session, "before_commit")
def _link_on_commit(session):
    if session.in_nested_transaction():
        # a savepoint's release fires this too: linking there would hold the head until the
        # outer transaction ends (an import of many rows would hold up every sign-in)
        return
    if not session.info.get(PENDING) and not any(isinstance(obj, AuditLog) for obj in session.new):
        return
    session.flush()
    links = link_pending(session.connection())
    session.info.pop(PENDING, None)
    # the objects in the session show what the database now holds
    for row_id, seq, prev, digest in links:
        obj = session.identity_map.get(session.identity_key(AuditLog, row_id))
        if obj is not None:
            set_committed_value(obj, "seq", seq)
            set_committed_value(obj, "prev_hash", prev)
            set_committed_value(obj, "hash", digest)
            set_committed_value(obj, "detail_sha256", detail_digest(obj.detail))


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session, transaction):
    if transaction.parent is None:
        session.info.pop(PENDING, None)


def audit(
    session,
    action: str,
    actor,
    *,
    user_id: int | None = None,
    target: str | None = None,
    detail: str | dict | list | None = None,
    at: datetime | None = None,
    county_id: int | None = None,
) -> AuditLog:
    """Record who did what. ``actor`` is the person (a User) or a process named by a string
    (``"scheduler"``, ``"cli:…"``), with ``user_id`` when a person set it going. A dict or
    list ``detail`` is kept as JSON. ``county_id`` is the county the act concerns (default:
    the acting user's county). Added to the session: the boundary's commit keeps it with the
    work it describes, and a rollback drops both; the commit links it into the chain."""
    if hasattr(actor, "username"):
        user_id = actor.id if user_id is None else user_id
        if county_id is None:
            county_id = getattr(actor, "county_id", None)
        actor = actor.username
    if isinstance(detail, (dict, list)):
        detail = json.dumps(detail, ensure_ascii=False)
    entry = AuditLog(user_id=user_id, actor=actor, action=action, target=target[:255] if target else target,
                     detail=detail, county_id=county_id)
    if at is not None:
        entry.at = at
    session.add(entry)
    return entry
