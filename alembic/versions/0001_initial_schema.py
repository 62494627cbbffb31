"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 00:35:44.772534
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(length=1000), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("image_count", sa.Integer(), nullable=False),
        sa.Column("class_count", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_dataset_fingerprint")),
    )
    op.create_table(
        "model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.String(length=500), nullable=False),
        sa.Column("weights_path", sa.String(length=1000), nullable=True),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column("input_size", sa.Integer(), nullable=False),
        sa.Column("mean", sa.JSON(), nullable=False),
        sa.Column("std", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model")),
        sa.UniqueConstraint("identity", name=op.f("uq_model_identity")),
    )
    op.create_table(
        "dataset_image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset.id"],
            name=op.f("fk_dataset_image_dataset_id_dataset"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_image")),
        sa.UniqueConstraint("dataset_id", "index", name="uq_dataset_image_position"),
    )
    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["dataset.id"], name=op.f("fk_run_dataset_id_dataset")
        ),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_run_model_id_model")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run")),
        sa.UniqueConstraint("key", name=op.f("uq_run_key")),
    )
    op.create_table(
        "layer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("rf_size", sa.JSON(), nullable=False),
        sa.Column("rf_stride", sa.JSON(), nullable=False),
        sa.Column("rf_offset", sa.JSON(), nullable=False),
        sa.Column("dead_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["run.id"], name=op.f("fk_layer_run_id_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_layer")),
        sa.UniqueConstraint("run_id", "name", name="uq_layer_run_name"),
    )
    op.create_table(
        "neuron",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("layer_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.Column("mean_activation", sa.Float(), nullable=False),
        sa.Column("max_activation", sa.Float(), nullable=False),
        sa.Column("nf_key", sa.String(length=80), nullable=True),
        sa.Column("nf_array_key", sa.String(length=80), nullable=True),
        sa.Column("sprite_key", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(
            ["layer_id"], ["layer.id"], name=op.f("fk_neuron_layer_id_layer"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_neuron")),
        sa.UniqueConstraint("layer_id", "channel", name="uq_neuron_layer_channel"),
    )
    op.create_table(
        "top_activation",
        sa.Column("neuron_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("image_index", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("col", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["neuron_id"],
            ["neuron.id"],
            name=op.f("fk_top_activation_neuron_id_neuron"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("neuron_id", "rank", name=op.f("pk_top_activation")),
    )
    with op.batch_alter_table("top_activation", schema=None) as batch_op:
        batch_op.create_index("ix_top_activation_image", ["image_index"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("top_activation", schema=None) as batch_op:
        batch_op.drop_index("ix_top_activation_image")

    op.drop_table("top_activation")
    op.drop_table("neuron")
    op.drop_table("layer")
    op.drop_table("run")
    op.drop_table("dataset_image")
    op.drop_table("model")
    op.drop_table("dataset")
