"""audit chain and county

Every audit row gets the county it concerns (existing rows: the acting user's county) and a
place in a hash chain (seq, prev_hash, hash, over the SHA-256 of its detail, detail_sha256;
erased_at marks a detail the retention period erased); audit_chain_head holds the last link. Existing
rows are linked here in id order, with the hash the application computes
(app/models/audit.py: ``canonical``), written out below so this revision stays as it is.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 16:40:00

"""
import hashlib
import json

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

GENESIS = "0" * 64
CHAINED = ("id", "seq", "at", "user_id", "county_id", "actor", "action", "target", "detail_sha256")
BATCH = 5000


def _hash(values, prev_hash):
    data = {}
    for name in CHAINED:
        value = values[name]
        if hasattr(value, "isoformat"):
            value = value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        data[name] = value
    data["prev_hash"] = prev_hash
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def upgrade():
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('county_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('detail_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('erased_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_audit_log_county_id'), ['county_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_audit_log_seq'), ['seq'])
        batch_op.create_foreign_key(batch_op.f('fk_audit_log_county_id_counties'), 'counties', ['county_id'], ['id'])

    op.create_table('audit_chain_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=True),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_chain_head_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_head'))
    )

    conn = op.get_bind()
    conn.execute(sa.text(
        "UPDATE audit_log SET county_id = (SELECT users.county_id FROM users WHERE users.id = audit_log.user_id) "
        "WHERE user_id IS NOT NULL"
    ))
    log = sa.table('audit_log', *(sa.column(name) for name in CHAINED if name != 'at'), sa.column('at', sa.DateTime),
                   sa.column('detail'), sa.column('prev_hash'), sa.column('hash'))
    read = [log.c[name] for name in CHAINED if name != 'detail_sha256'] + [log.c.detail]
    seq, prev, last_id = 0, GENESIS, None
    while True:
        rows = conn.execute(
            sa.select(*read).where(log.c.seq.is_(None)).order_by(log.c.id).limit(BATCH)
        ).mappings().all()
        if not rows:
            break
        links = []
        for row in rows:
            seq += 1
            detail = None if row["detail"] is None else hashlib.sha256(row["detail"].encode("utf-8")).hexdigest()
            digest = _hash({**row, "seq": seq, "detail_sha256": detail}, prev)
            links.append({"b_id": row["id"], "b_seq": seq, "b_prev": prev, "b_hash": digest, "b_detail": detail})
            prev, last_id = digest, row["id"]
        conn.execute(
            log.update().where(log.c.id == sa.bindparam('b_id')).values(
                seq=sa.bindparam('b_seq'), prev_hash=sa.bindparam('b_prev'), hash=sa.bindparam('b_hash'),
                detail_sha256=sa.bindparam('b_detail')),
            links,
        )
    conn.execute(sa.text("INSERT INTO audit_chain_head (id, seq, audit_id, hash) VALUES (1, :seq, :id, :hash)"),
                 {"seq": seq, "id": last_id, "hash": prev})


def downgrade():
    op.drop_table('audit_chain_head')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_audit_log_county_id_counties'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_audit_log_seq'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_audit_log_county_id'))
        batch_op.drop_column('erased_at')
        batch_op.drop_column('detail_sha256')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('seq')
        batch_op.drop_column('county_id')
