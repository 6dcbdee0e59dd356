"""Checking the audit chain (see app/models/audit.py for how it is built).

``verify_chain`` walks the rows in chain order and stops at the first break: a row whose place
is not the next one (a row before it was deleted), whose ``prev_hash`` is not its predecessor's
hash, or whose own hash does not match its fields (it was changed), or whose detail does not
match the digest its hash covers (unless the retention period erased it); a row not linked at all;
or a head that points past the last row (the last rows were deleted).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import AuditChainHead, AuditLog
from app.models.audit import CHAINED, GENESIS, HEAD_ID, detail_digest, record_hash

BATCH = 5000


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    records: int  # rows checked before the break (all of them when ok)
    head_id: int | None  # the last good row
    head_hash: str
    broken_id: int | None = None
    problem: str = ""

    def message(self) -> str:
        if self.ok:
            if not self.records:
                return "审计链完整：还没有审计记录。"
            return f"审计链完整：共 {self.records} 条记录，链头为记录 #{self.head_id}，哈希 {self.head_hash}。"
        where = f"记录 #{self.broken_id}" if self.broken_id is not None else "链头"
        return f"审计链在{where}处断开：{self.problem}（此前 {self.records} 条记录完好）。"


def chain_head(session: Session) -> AuditChainHead | None:
    """The chain's last link as committed (None when nothing was ever linked)."""
    head = session.get(AuditChainHead, HEAD_ID, populate_existing=True)
    return head if head is not None and head.seq > 0 else None


def verify_chain(session: Session, *, expect: tuple[int, str] | None = None) -> ChainReport:
    """Walk the chain up to its head; ``expect`` (record id, hash) also checks a link written
    down earlier (the head printed on a monthly report). The head is read first: rows linked
    by transactions that commit during the walk lie beyond it and are left to the next check."""
    table = AuditLog.__table__
    head = session.get(AuditChainHead, HEAD_ID, populate_existing=True)
    head_seq = head.seq if head is not None else 0
    columns = [table.c[name] for name in CHAINED] + [table.c.prev_hash, table.c.hash, table.c.detail,
                                                     table.c.erased_at]
    expected_seq, prev, last_id, count = 1, GENESIS, None, 0
    found_expected = expect is None

    def broken(row_id, problem):
        return ChainReport(False, count, last_id, prev, row_id, problem)

    while expected_seq <= head_seq:
        rows = session.execute(
            select(*columns).where(table.c.seq >= expected_seq, table.c.seq <= head_seq)
            .order_by(table.c.seq).limit(BATCH)
        ).mappings().all()
        for row in rows:
            if row["seq"] != expected_seq:
                return broken(row["id"], f"它的链序号是 {row['seq']}，应为 {expected_seq}：前面有记录被删除")
            if row["prev_hash"] != prev:
                return broken(row["id"], "它记下的前一条哈希与前一条记录不符：前一条记录被改动、删除或替换")
            if record_hash(row, prev) != row["hash"]:
                return broken(row["id"], "记录内容与它的哈希不符：这条记录被改动")
            if row["erased_at"] is None and detail_digest(row["detail"]) != row["detail_sha256"]:
                return broken(row["id"], "记录的详情与它的哈希不符：这条记录的详情被改动")
            if expect is not None and row["id"] == expect[0]:
                if row["hash"] != expect[1]:
                    return broken(row["id"], f"哈希 {row['hash']} 与此前记下的 {expect[1]} 不符：此前的记录被改写")
                found_expected = True
            prev, last_id, count = row["hash"], row["id"], count + 1
            expected_seq += 1
        if len(rows) < BATCH:
            break
    if count != head_seq or (count and (head.hash != prev or head.audit_id != last_id)):
        return ChainReport(False, count, last_id, prev, head.audit_id,
                           f"链头记的是第 {head_seq} 条（哈希 {head.hash}），链上只核对到第 {count} 条："
                           "最后的记录被删除或改动，或链头被改动")
    # rows linked beyond the head: legitimate if committed during the walk (the head has moved
    # on since), else the head was deleted or moved back to hide them
    now_head = session.get(AuditChainHead, HEAD_ID, populate_existing=True)
    now_seq = now_head.seq if now_head is not None else 0
    beyond = session.scalar(select(func.min(table.c.id)).where(table.c.seq > now_seq))
    if beyond is not None:
        return broken(beyond, f"它的链序号大于链头记的第 {now_seq} 条：链头被删除或回退")
    unlinked = session.scalar(select(func.min(table.c.id)).where(table.c.seq.is_(None)))
    if unlinked is not None:
        return broken(unlinked, "这条记录不在链上（没有链序号）：它是绕过应用写入的")
    if not found_expected:
        return ChainReport(False, count, last_id, prev, expect[0], "链上没有这条记录：它被删除")
    return ChainReport(True, count, last_id, prev)
