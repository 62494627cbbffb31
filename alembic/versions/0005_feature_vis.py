"""feature visualisations

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 08:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_vis",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("unit", sa.Integer(), nullable=False),
        sa.Column("objective", sa.String(length=40), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("params_key", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("variant", sa.Integer(), nullable=False),
        sa.Column("image_key", sa.String(length=80), nullable=False),
        sa.Column("activation", sa.Float(), nullable=False),
        sa.Column("random_activation", sa.Float(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["run.id"], name=op.f("fk_feature_vis_run_id_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_vis")),
        sa.UniqueConstraint(
            "run_id", "target", "unit", "params_key", "variant", name="uq_feature_vis_image"
        ),
    )


def downgrade() -> None:
    op.drop_table("feature_vis")
