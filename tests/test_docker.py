"""The docker/ files, checked by reading (no Docker engine runs on CI machines)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())


def test_every_compose_build_target_is_a_dockerfile_stage():
    stages = set(re.findall(r"^FROM \S+ AS (\w+)$", DOCKERFILE, flags=re.MULTILINE))
    assert stages == {"source", "app", "worker"}
    stages.discard("source")  # only copied from
    targets = {s["build"]["target"] for s in COMPOSE["services"].values() if "build" in s}
    assert targets == stages


def test_the_worker_image_has_a_cuda_base_and_runs_a_worker_on_a_gpu():
    worker_stage = DOCKERFILE.split(" AS worker", 1)[1]
    assert DOCKERFILE.split(" AS worker")[0].rsplit("FROM ", 1)[1].startswith("nvidia/cuda:")
    assert '"neuronscope", "worker", "--device", "cuda:0"' in worker_stage
    worker = COMPOSE["services"]["worker-0"]
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    # A loader per core with two batches of 256 images in flight each: far past Docker's 64 MB.
    assert worker["shm_size"] == "4gb"


def test_web_and_worker_share_the_database_and_the_data_directory():
    web, worker = COMPOSE["services"]["web"], COMPOSE["services"]["worker-0"]
    for key in ("NEURONSCOPE_DATABASE_URL", "NEURONSCOPE_DATA_DIR"):
        assert web["environment"][key] == worker["environment"][key]
    assert web["environment"]["NEURONSCOPE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "data:/data" in web["volumes"] and "data:/data" in worker["volumes"]
    assert "data" in COMPOSE["volumes"]


def test_the_images_copy_what_exists_and_pin_torch():
    for sources in re.findall(r"^COPY (?!--from)(.+) /app/", DOCKERFILE, flags=re.MULTILINE):
        for source in sources.split():
            assert (REPO / source).exists(), source
    assert DOCKERFILE.count("COPY --from=source /app /app") == 2
    assert DOCKERFILE.count("torch==2.14.1 torchvision==0.29.1") == 2
    # editable, so web/ and alembic/ stay beside the code; timm's zoo included
    assert DOCKERFILE.count("pip install -e '.[timm]'") == 2
