"""What a run will cost, before it starts: the new-run form's button and the API ask a worker
for a timed trial; a queued run's first job notes the whole run's estimate."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import load_settings
from tests.support.jobs import drain, jobs, operator_lab, settings_for
from tests.support.web import web_client

FORM = {"model": "1", "dataset": "1", "layers": ["1", "4"], "top_k": "3", "batch_size": "8"}


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    return operator_lab(tmp_path)


def test_the_form_asks_a_worker_for_each_stage_and_the_total(lab):
    settings = settings_for(lab / "data")
    web = web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(lab / "data")}))
    assert "Estimate the cost first" in web.get("/runs/new").text
    asked = web.post("/runs/estimate", data={**FORM, "indexes": "1"}, follow_redirects=False)
    assert asked.status_code == 303
    job_url = asked.headers["location"]
    assert "estimate" in web.get(job_url).text
    drain(settings)
    result = web.get(job_url + ".json").json()["result"]
    names = [stage["name"] for stage in result["stages"]]
    assert names == ["sweep", "Neuron Features", "physiology", "indexes"]
    assert result["layers"] == 2 and result["images"] == 12
    assert result["seconds"] == pytest.approx(sum(s["seconds"] for s in result["stages"]), abs=0.1)
    assert result["bytes"] > 0 and not result["large"] and result["advice"] == []
    page = web.get(job_url).text
    assert "<th>total</th>" in page and "Neuron Features" in page and "12 images on cpu" in page
    assert not [job for job in jobs(settings) if job.kind == "sweep"]  # nothing was started

    without = web.post("/api/runs/estimate", json={**FORM, "layers": ["1"], "indexes": False})
    assert without.status_code == 200 and without.json()["kind"] == "estimate"
    drain(settings)
    other = web.get(f"/jobs/{without.json()['id']}.json").json()["result"]
    assert [stage["name"] for stage in other["stages"]] == ["sweep", "Neuron Features"]

    again = web.post("/runs/estimate", data={**FORM, "indexes": "1"}, follow_redirects=False)
    assert again.headers["location"] == job_url  # asked again: the same job measures again
    assert web.get(job_url + ".json").json()["status"] == "queued"


def test_a_bad_request_is_refused_before_any_job(lab):
    web = web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(lab / "data")}))
    missing = web.post("/runs/estimate", data={**FORM, "layers": ["nope"]})
    assert missing.status_code == 400 and "has no layer &#39;nope&#39;" in missing.text
    assert web.post("/api/runs/estimate", json={**FORM, "dataset": 9}).status_code == 404
    assert not jobs(settings_for(lab / "data"))


def test_a_queued_run_notes_its_estimate_in_its_first_job(lab):
    settings = settings_for(lab / "data")
    web = web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(lab / "data")}))
    started = web.post("/runs", data={**FORM, "shards": "2"}, follow_redirects=False)
    assert started.status_code == 303
    drain(settings)
    shards = sorted((j for j in jobs(settings) if j.kind == "sweep"), key=lambda j: j.id)
    first, second = (job.result for job in shards)
    assert [stage["name"] for stage in first["estimate"]["stages"]] == ["sweep", "Neuron Features"]
    assert "estimate" not in second  # once per run
