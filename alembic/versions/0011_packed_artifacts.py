"""pack files: a run's small pictures written into a few files, and where each key lies in them

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 19:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "packed_artifact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("pack_key", sa.String(length=80), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packed_artifact")),
    )
    op.create_index("ix_packed_artifact_key", "packed_artifact", ["key"])
    op.create_index("ix_packed_artifact_pack_key", "packed_artifact", ["pack_key"])


def downgrade() -> None:
    op.drop_index("ix_packed_artifact_pack_key", table_name="packed_artifact")
    op.drop_index("ix_packed_artifact_key", table_name="packed_artifact")
    op.drop_table("packed_artifact")
