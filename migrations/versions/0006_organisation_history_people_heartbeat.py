"""organisation history, people, scheduler heartbeat

Counties, institutions and teams can be deactivated (never deleted) and a merged team points
at the team that absorbed it; every change of a unit is kept in org_changes. Users gain a real
name, a phone, a forced password change and a case-folded user name that is unique. Scheduler
processes write a heartbeat. Two more institution types are allowed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:43:10.566841

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

OLD_TYPES = "type IN ('乡镇卫生院', '中心卫生院', '社区卫生服务中心')"
NEW_TYPES = "type IN ('乡镇卫生院', '中心卫生院', '社区卫生服务中心', '社区卫生服务站', '其他基层医疗卫生机构')"


def upgrade():
    op.create_table('scheduler_heartbeats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=100), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('beat_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduler_heartbeats')),
    sa.UniqueConstraint('host', 'pid', 'started_at', name=op.f('uq_scheduler_heartbeats_host_pid_started_at'))
    )
    with op.batch_alter_table('scheduler_heartbeats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scheduler_heartbeats_beat_at'), ['beat_at'], unique=False)

    op.create_table('org_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('unit_kind', sa.String(length=12), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=12), nullable=False),
    sa.Column('before', sa.Text(), nullable=True),
    sa.Column('after', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_org_changes_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_org_changes'))
    )
    with op.batch_alter_table('org_changes', schema=None) as batch_op:
        batch_op.create_index('ix_org_changes_unit', ['unit_kind', 'unit_id'], unique=False)

    with op.batch_alter_table('counties', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))

    with op.batch_alter_table('institutions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.drop_constraint(batch_op.f('ck_institutions_type_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_institutions_type_known'), NEW_TYPES)

    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_teams_merged_into_id_teams'), 'teams', ['merged_into_id'], ['id'])

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('username_key', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('real_name', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('phone', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('password_changed_at', sa.DateTime(), nullable=True))

    # the case-folded name of every existing user (Python's casefold, as the model does);
    # two names differing only in case would fail the unique constraint below: say which
    bind = op.get_bind()
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('username', sa.String),
                     sa.column('username_key', sa.String))
    seen: dict[str, str] = {}
    for user_id, username in bind.execute(sa.select(users.c.id, users.c.username)).all():
        key = username.strip().casefold()
        if key in seen:
            raise RuntimeError(f"用户名“{seen[key]}”与“{username}”仅大小写不同，请先改名其中一个再升级。")
        seen[key] = username
        bind.execute(users.update().where(users.c.id == user_id).values(username_key=key))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('username_key', existing_type=sa.String(length=50), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_users_username_key'), ['username_key'])



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_users_username_key'), type_='unique')
        batch_op.drop_column('password_changed_at')
        batch_op.drop_column('must_change_password')
        batch_op.drop_column('phone')
        batch_op.drop_column('real_name')
        batch_op.drop_column('username_key')

    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_teams_merged_into_id_teams'), type_='foreignkey')
        batch_op.drop_column('merged_into_id')
        batch_op.drop_column('active')

    bind = op.get_bind()
    newer = bind.execute(sa.text(
        "SELECT count(*) FROM institutions WHERE type NOT IN ('乡镇卫生院', '中心卫生院', '社区卫生服务中心')"
    )).scalar()
    if newer:
        raise RuntimeError(f"{newer} 家机构的类型在 0006 之前不存在，不能降级。")
    with op.batch_alter_table('institutions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_institutions_type_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_institutions_type_known'), OLD_TYPES)
        batch_op.drop_column('active')

    with op.batch_alter_table('counties', schema=None) as batch_op:
        batch_op.drop_column('active')

    with op.batch_alter_table('org_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_org_changes_unit')

    op.drop_table('org_changes')
    with op.batch_alter_table('scheduler_heartbeats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scheduler_heartbeats_beat_at'))

    op.drop_table('scheduler_heartbeats')
