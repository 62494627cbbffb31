"""a lab's notes on neurons: labels and free text, every version kept

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 13:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "neuron_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("neuron_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=80), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["neuron_id"],
            ["neuron.id"],
            name=op.f("fk_neuron_note_neuron_id_neuron"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_neuron_note")),
    )
    op.create_index("ix_neuron_note_neuron_id", "neuron_note", ["neuron_id"])


def downgrade() -> None:
    op.drop_index("ix_neuron_note_neuron_id", table_name="neuron_note")
    op.drop_table("neuron_note")
