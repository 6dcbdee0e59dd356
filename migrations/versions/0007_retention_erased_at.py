"""personal data retention: erased_at on rounds, cases and residents

The retention period (PERSONAL_DATA_RETENTION_MONTHS) erases the personal data of cases in
rounds closed longer ago, and of residents inactive as long; each erased row records when,
so the purge is idempotent and pages can say why a name is gone.

Revision ID: 0007
Revises: 0006

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TABLES = ('rounds', 'cases', 'residents')


def upgrade():
    # nullable columns without a default: no table rewrite on either database
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('erased_at', sa.DateTime(), nullable=True))


def downgrade():
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('erased_at')
