"""residents: the ID hash as its first 128 bits (32 hex characters), unique by an index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 21:00:00

The keyed ID hash keeps the first 128 bits of HMAC-SHA256 (``hash_id``): half the bytes in
the table and in its unique index, which a city's roster import fills 1.5 million times.
A hash already stored is cut the same way, so every resident is still recognised by the
next import. The uniqueness moves from a table constraint to a unique index of the same
name, which a first import can drop and build once at the end (SQLite cannot drop the
index behind a constraint). On PostgreSQL the table keeps room in every page for the next
import's stamp on each resident (fillfactor 45).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _hash_type(length):
    return sa.String(length=length).with_variant(sa.String(length=length, collation='C'), 'postgresql')


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        # room in each page for a new version of every row in it: the import's last_seen stamp
        # on all of a roster's residents stays a HOT update (no index touched). Set before the
        # column change below, whose table rewrite then lays the rows out this way.
        op.execute("ALTER TABLE residents SET (fillfactor = 45)")
    # a 32-character value can never equal a 64-character one, so the constraint holds row by row
    op.execute("UPDATE residents SET id_hash = substr(id_hash, 1, 32) WHERE length(id_hash) > 32")
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.drop_constraint('uq_residents_id_hash', type_='unique')
        batch_op.alter_column('id_hash', existing_type=_hash_type(64), type_=_hash_type(32), existing_nullable=False)
        batch_op.create_index('uq_residents_id_hash', ['id_hash'], unique=True)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE residents SET (fillfactor = 85)")
    # the rest of each digest is gone: code before 0005 would not recognise a stored resident
    # (its next import would add everyone again), so only an empty residents table goes back
    if op.get_bind().execute(sa.text("SELECT 1 FROM residents LIMIT 1")).first() is not None:
        raise RuntimeError("0005 cannot be undone while residents are stored: their ID hashes are 128-bit now")
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.drop_index('uq_residents_id_hash')
        batch_op.alter_column('id_hash', existing_type=_hash_type(32), type_=_hash_type(64), existing_nullable=False)
        batch_op.create_unique_constraint('uq_residents_id_hash', ['id_hash'])
