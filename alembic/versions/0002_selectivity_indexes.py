"""selectivity indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 01:10:08.199061
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "neuron_index",
        sa.Column("neuron_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["neuron_id"],
            ["neuron.id"],
            name=op.f("fk_neuron_index_neuron_id_neuron"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("neuron_id", "name", name=op.f("pk_neuron_index")),
    )
    with op.batch_alter_table("neuron_index", schema=None) as batch_op:
        batch_op.create_index("ix_neuron_index_name_value", ["name", "value"], unique=False)

    with op.batch_alter_table("layer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("summary", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("layer", schema=None) as batch_op:
        batch_op.drop_column("summary")

    with op.batch_alter_table("neuron_index", schema=None) as batch_op:
        batch_op.drop_index("ix_neuron_index_name_value")

    op.drop_table("neuron_index")
