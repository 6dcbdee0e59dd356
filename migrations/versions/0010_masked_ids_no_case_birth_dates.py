"""masked IDs keep the last four only; cases no longer copy the birth date

A masked ID used to keep the region (first six) and the last four digits; with a birth date
shown beside it that was the whole ID. Every stored masked ID is cut to the last four
(``**************123X``, still 18 characters), and the draw's snapshot of a resident drops
the birth date (the age on the draw day stays). See docs/privacy.md.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 16:40:00

"""
import datetime

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    # the same SQL on SQLite and PostgreSQL; a value already masked this way is unchanged
    op.execute(
        "UPDATE residents SET id_masked = '**************' || substr(id_masked, 15, 4) "
        "WHERE length(id_masked) = 18 AND substr(id_masked, 1, 14) <> '**************'"
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops a plain column in place (3.35+): no table rebuild, so the attempts and
        # responses that point at cases (ON DELETE CASCADE) are never touched
        op.execute("ALTER TABLE cases DROP COLUMN birth_date")
    else:
        op.drop_column('cases', 'birth_date')


def downgrade():
    # the region and birth digits are gone for good: the masks stay short. The column comes
    # back filled with 1 January of the year the age points at, as a placeholder. Added with
    # a default rather than rebuilt (a rebuild on SQLite would drop the cases table, and with
    # it, through ON DELETE CASCADE, every attempt and response).
    op.add_column('cases', sa.Column('birth_date', sa.Date(), nullable=False, server_default='1900-01-01'))
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT cases.id, cases.age, rounds.draw_date FROM cases JOIN rounds ON rounds.id = cases.round_id"
    )).all()
    for case_id, age, draw_date in rows:
        year = int(str(draw_date)[:4]) - age
        bind.execute(sa.text("UPDATE cases SET birth_date = :d WHERE id = :id"),
                     {"d": datetime.date(max(year, 1), 1, 1), "id": case_id})
    if bind.dialect.name == "postgresql":
        op.alter_column('cases', 'birth_date', server_default=None)
