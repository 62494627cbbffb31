"""Neuron Feature arrays stored over the layer's reach, not the whole window

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 19:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("layer") as batch:
        batch.add_column(sa.Column("nf_box", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("layer") as batch:
        batch.drop_column("nf_box")
