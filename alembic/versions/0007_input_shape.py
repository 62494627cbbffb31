"""models with non-square or greyscale input

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 11:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model") as batch:
        batch.add_column(sa.Column("input_width", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("input_channels", sa.Integer(), nullable=False, server_default="3")
        )


def downgrade() -> None:
    with op.batch_alter_table("model") as batch:
        batch.drop_column("input_channels")
        batch.drop_column("input_width")
