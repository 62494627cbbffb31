"""Background work from the browser: register, start, watch, cancel; tokens and allowed roots."""

from __future__ import annotations

import json
import re
from pathlib import Path
from unittest.mock import ANY

import pytest

from server.config import load_settings
from server.jobs.state import report_worker
from server.storage.db import Database
from tests.support.images import write_square_folder
from tests.support.jobs import drain, jobs, operator_lab, run_status, settings_for
from tests.support.web import LabClient, web_client


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    return operator_lab(tmp_path)


def client_for(lab: Path, **env: str) -> LabClient:
    settings = load_settings(
        {
            "NEURONSCOPE_DATA_DIR": str(lab / "data"),
            "NEURONSCOPE_ALLOWED_ROOTS": str(lab / "images"),
            **env,
        }
    )
    return web_client(settings)


def polls(html: str) -> bool:
    return 'hx-trigger="every' in html


def test_register_a_folder_and_start_a_sharded_run_from_the_browser(lab):
    settings = settings_for(lab / "data")
    web = client_for(lab)
    folder = write_square_folder(lab / "images" / "more", per_class=6)
    registered = web.post("/datasets", data={"path": str(folder)}, follow_redirects=False)
    assert registered.status_code == 303
    job_url = registered.headers["location"]
    assert polls(web.get(job_url).text)  # queued: the page keeps itself up to date
    drain(settings)
    page = web.get(job_url).text
    assert "done" in page and not polls(page) and "18 images" in page
    dataset_id = web.get(job_url + ".json").json()["result"]["dataset"]

    form = web.get(f"/runs/new?dataset={dataset_id}").text
    assert 'value="1" checked' in form and 'value="4" checked' in form  # the conv activations
    assert 'value="0" checked' not in form
    started = web.post(
        "/runs",
        data={
            "model": "1",
            "dataset": str(dataset_id),
            "layers": ["1", "4"],
            "top_k": "3",
            "shards": "2",
            "batch_size": "8",
            "indexes": "1",
        },
        follow_redirects=False,
    )
    assert started.status_code == 303
    run_url = started.headers["location"]
    partial = web.get(run_url, headers={"HX-Request": "true"}).text
    assert polls(partial) and "sweep shards" in partial and "0/2 jobs done" in partial
    assert "No worker is running" in partial
    jobs_partial = web.get("/jobs", headers={"HX-Request": "true"}).text
    assert polls(jobs_partial) and "no worker is running" in jobs_partial
    with Database(settings.database_url).session() as session:
        report_worker(session, "gpu-7", "cuda:0", None)
    assert "no worker is running" not in web.get("/jobs").text
    assert web.get("/api/workers").json()[0] | {"seconds_since_seen": 0} == {
        "name": "gpu-7",
        "device": "cuda:0",
        "state": "alive",
        "job": None,
        "started": ANY,
        "last_seen": ANY,
        "seconds_since_seen": 0,
    }

    again = web.post(  # the same work again: the same run, no new jobs
        "/runs",
        data={"model": "1", "dataset": str(dataset_id), "layers": ["1", "4"], "top_k": "3"},
        follow_redirects=False,
    )
    assert again.headers["location"] == run_url
    drafted = web.post(  # JPEGs at reduced scale are other pixels: another run, which says so
        "/runs",
        data={"model": "1", "dataset": str(dataset_id), "top_k": "3", "jpeg_draft": "1"},
        follow_redirects=False,
    )
    assert drafted.headers["location"] != run_url
    assert "JPEGs decoded at reduced scale" in web.get(drafted.headers["location"]).text
    assert "JPEGs decoded at reduced scale" not in web.get(run_url).text
    drafted_id = int(drafted.headers["location"].rsplit("/", 1)[1])
    assert web.get(f"/api/runs/{drafted_id}").json()["run"]["jpeg_draft"] is True
    before = len(jobs(settings))

    drain(settings)
    run_id = int(run_url.rsplit("/", 1)[1])
    assert run_status(settings, run_id) == "done" and len(jobs(settings)) == before
    finished = web.get(run_url, headers={"HX-Request": "true"}).text
    assert not polls(finished) and f'href="/runs/{run_id}/layers/4"' in finished
    assert "2/2 jobs done" in finished and "selectivity indexes" in finished
    assert not polls(web.get("/jobs", headers={"HX-Request": "true"}).text)
    neuron = web.get(f"/api/runs/{run_id}/layers/4/neurons/0").json()
    assert neuron["indexes"]["color"] > 0.5 and neuron["top"][0]["image"].startswith("red/")


def test_register_a_model_from_the_browser(lab):
    web = client_for(lab)
    code_spec = web.post("/models", data={"spec": "evil.module:run"}, follow_redirects=False)
    assert code_spec.status_code == 403 and "command line" in code_spec.text
    assert web.post("/models", data={"spec": "torchvision:../x"}).status_code == 400
    known = web.post(
        "/api/models",
        json={"spec": "tests.support.models:red_detector", "input_size": 16, "mean": [0, 0, 0]},
    )
    assert known.status_code == 200 and known.json()["kind"] == "register_model"
    drain(settings_for(lab / "data"))
    job = web.get(f"/api/jobs/{known.json()['id']}").json()
    assert job["status"] == "done", job["error"]
    models = web.get("/api/models").json()
    registered = next(m for m in models if m["id"] == job["result"]["model"])
    assert registered["input_size"] == 16
    assert [layer["name"] for layer in registered["layers"]] == ["0", "1", "2", "3", "4"]
    assert [layer["name"] for layer in registered["layers"] if layer["default"]] == ["1", "4"]


def test_a_failed_job_shows_its_error_in_the_page(lab):
    web = client_for(lab)
    job = web.post("/api/models", json={"spec": "torchvision:no_such_net"}).json()
    drain(settings_for(lab / "data"))
    page = web.get(f"/jobs/{job['id']}").text
    assert "failed" in page and "no_such_net" in page and 'class="error"' in page


def test_registering_a_model_that_cannot_take_its_input_names_the_module(lab):
    web = client_for(lab)
    refused = web.post("/models", data={"spec": "torchvision:alexnet", "input_size": "8,x"})
    assert refused.status_code == 400 and "N or H,W" in refused.text
    posted = web.post(
        "/models", data={"spec": "torchvision:alexnet", "input_size": "8"}, follow_redirects=False
    )
    non_square = web.post(
        "/api/models",
        json={"spec": "tests.support.models:red_detector", "input_size": [24, 48], "mean": [0]},
    ).json()
    drain(settings_for(lab / "data"))
    page = web.get(posted.headers["location"]).text
    assert "failed" in page and 'class="error"' in page and "Traceback" not in page
    assert "forward fails on a 8×8 RGB image in module &#39;features.2&#39; (MaxPool2d)" in page
    done = web.get(f"/api/jobs/{non_square['id']}").json()
    assert done["status"] == "done", done["error"]
    model = next(m for m in web.get("/api/models").json() if m["id"] == done["result"]["model"])
    assert model["input_shape"] == [24, 48] and model["mean"] == [0.0, 0.0, 0.0]
    assert "24×48 px" in web.get("/models").text


def test_paths_outside_the_allowed_roots_are_refused(lab, tmp_path):
    web = client_for(lab)
    outside = write_square_folder(tmp_path / "elsewhere", per_class=1)
    refused = web.post("/api/datasets", json={"path": str(outside)})
    assert refused.status_code == 403 and "outside the folders" in refused.json()["detail"]
    sneaky = web.post("/api/datasets", json={"path": str(lab / "images" / ".." / "elsewhere")})
    assert sneaky.status_code == 403
    assert web.post("/api/datasets", json={"path": "images/squares"}).status_code == 400
    missing = web.post("/api/datasets", json={"path": str(lab / "images" / "none")})
    assert missing.status_code == 400 and "no folder" in missing.json()["detail"]
    weights = web.post(
        "/api/models", json={"spec": "torchvision:resnet18", "weights": "/etc/passwd"}
    )
    assert weights.status_code == 403
    assert jobs(settings_for(lab / "data")) == []  # nothing was queued


def test_changes_need_the_lab_token_when_one_is_set(lab):
    web = client_for(lab, NEURONSCOPE_TOKEN="s3cret")
    folder = {"path": str(lab / "images" / "squares")}
    refused = web.post("/datasets", data=folder)
    assert refused.status_code == 403 and "lab token" in refused.text
    assert web.post("/api/datasets", json=folder).status_code == 403
    wrong = web.post("/api/datasets", json=folder, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    bearer = web.post("/api/datasets", json=folder, headers={"Authorization": "Bearer s3cret"})
    assert bearer.status_code == 200
    typed = web.post("/datasets", data={**folder, "token": "s3cret"}, follow_redirects=False)
    assert typed.status_code == 303 and "neuronscope_token" in typed.headers["set-cookie"]
    remembered = web.post("/datasets", data=folder, follow_redirects=False)  # the cookie
    assert remembered.status_code == 303
    assert web.get("/jobs").status_code == 200  # reading stays open


def test_a_cross_site_form_post_is_refused(lab):
    web = client_for(lab)
    posted = web.post(
        "/datasets",
        data={"path": str(lab / "images" / "squares")},
        headers={"Origin": "https://attacker.example"},
    )
    assert posted.status_code == 403 and "another site" in posted.text


def test_cancel_a_run_from_the_browser(lab):
    settings = settings_for(lab / "data")
    web = client_for(lab)
    started = web.post("/api/runs", json={"model": 1, "dataset": 1, "top_k": 4}).json()
    page = web.get(f"/runs/{started['run']}").text
    assert re.search(rf'action="/runs/{started["run"]}/cancel"', page)
    cancelled = web.post(f"/runs/{started['run']}/cancel", follow_redirects=False)
    assert cancelled.status_code == 303
    assert run_status(settings, started["run"]) == "cancelled"
    assert {job.status for job in jobs(settings)} == {"cancelled"}
    assert drain(settings) >= 1 and all(job.attempts == 0 for job in jobs(settings))
    listed = web.get("/jobs.json").json()["jobs"]
    assert json.dumps(listed).count('"cancelled"') >= len(started["jobs"])

    page = web.get(f"/runs/{started['run']}").text
    assert f'action="/runs/{started["run"]}/resume"' in page  # and run it again after all
    resumed = web.post(f"/runs/{started['run']}/resume", follow_redirects=False)
    assert resumed.status_code == 303 and run_status(settings, started["run"]) == "queued"
    drain(settings)
    assert run_status(settings, started["run"]) == "done"
    again = web.post(f"/api/runs/{started['run']}/resume")
    assert again.status_code == 400 and "only a failed or cancelled run" in again.json()["detail"]


def test_registering_a_changed_folder_again_registers_it_anew(lab):
    settings = settings_for(lab / "data")
    web = client_for(lab)
    folder = {"path": str(lab / "images" / "squares")}
    first = web.post("/api/datasets", json=folder).json()
    assert web.post("/api/datasets", json=folder).json()["id"] == first["id"]  # while queued
    drain(settings)
    before = web.get(f"/api/jobs/{first['id']}").json()["result"]["dataset"]
    (lab / "images" / "squares" / "red" / "new.png").write_bytes(
        (lab / "images" / "squares" / "red" / "000.png").read_bytes()
    )
    again = web.post("/api/datasets", json=folder).json()
    assert again["id"] == first["id"] and again["status"] == "queued"  # the same job, re-run
    drain(settings)
    after = web.get(f"/api/jobs/{first['id']}").json()["result"]
    assert after["dataset"] != before and after["images"] == 13
