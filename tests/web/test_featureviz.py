"""Feature visualisations and DeepDream from the browser and the API, rendered by a worker."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from server.config import load_settings
from tests.support.jobs import drain, jobs, settings_for
from tests.support.web import LabClient, web_client

NEURON = "/runs/1/layers/1/neurons/0"
STEPS = {"steps": "96", "size": "32"}


def client_for(analysed_dir: Path, **env: str) -> LabClient:
    return web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(analysed_dir), **env}))


def polls(html: str) -> bool:
    return 'hx-trigger="every' in html


def artifacts(html: str) -> list[str]:
    return re.findall(r'src="/artifacts/([0-9a-f]+\.png)"', html)


def test_render_a_neuron_from_its_page_then_see_it_beside_the_nf(analysed_dir):
    web = client_for(analysed_dir)
    page = web.get(NEURON).text
    assert "no visualisation yet" in page and "Render 4 diverse" in page and not polls(page)
    asked = web.post(
        "/runs/1/layers/1/featureviz", data={"channel": "0", **STEPS}, follow_redirects=False
    )
    assert asked.status_code == 303 and asked.headers["location"] == NEURON
    page = web.get(NEURON).text
    assert "rendering…" in page and polls(page)
    drain(settings_for(analysed_dir))
    page = web.get(NEURON).text
    assert not polls(page) and "activation" in page
    _nf, visualisation = artifacts(page)[:2]
    pixels = np.asarray(Image.open(web.app.state.store.path(visualisation)), dtype=float)
    assert (pixels[..., 0] - pixels[..., 1]).mean() > 40  # the red detector wants red
    (stored,) = web.get(NEURON + ".json").json()["feature_vis"]
    assert stored["key"] == visualisation and stored["steps"] == 96
    assert stored["activation"] > 100 * max(stored["random_activation"], 1e-3)

    grid = web.get("/runs/1/layers/1?_grid=fv&_sort_desc=color").text
    assert visualisation in artifacts(grid) and grid.count("not rendered") == 2
    assert re.search(r'href="[^"]*_sort[^"]*_grid=fv"', grid)  # sorting keeps the grid
    assert ">Neuron Features</a>" in grid  # and a link switches back
    layer = web.get("/runs/1/layers/1.json?_grid=fv").json()
    assert layer["feature_vis"] == {"0": visualisation}
    assert web.get("/runs/1/layers/1?_grid=nope").status_code == 400

    web.post("/runs/1/layers/1/featureviz", data={"channel": "0", "diversity": "4", **STEPS})
    drain(settings_for(analysed_dir))
    page = web.get(NEURON).text
    assert "4 diverse visualisations" in page and len(set(artifacts(page))) >= 6


def test_a_whole_layer_is_one_job_with_a_stage_bar(analysed_dir):
    web = client_for(analysed_dir)
    web.post("/runs/1/layers/4/featureviz", data={"steps": "8", "size": "32"})
    run_page = web.get("/runs/1").text
    assert "feature visualisations" in run_page and polls(run_page)
    drain(settings_for(analysed_dir))
    (job,) = [job for job in jobs(settings_for(analysed_dir)) if job.kind == "featureviz"]
    assert job.status == "done" and job.result["rendered"] == 2
    assert web.get("/runs/1.json").json()["run"]["status"] == "done"
    assert len(web.get("/runs/1/layers/4.json").json()["feature_vis"]) == 2


def test_classes_of_a_model_without_logits_fail_alone_and_readably(analysed_dir):
    web = client_for(analysed_dir)
    assert "No class visualisation yet" in web.get("/runs/1/classes").text
    web.post("/runs/1/classes/featureviz", data={"steps": "8"})
    drain(settings_for(analysed_dir))
    (job,) = [job for job in jobs(settings_for(analysed_dir)) if job.kind == "featureviz"]
    assert job.status == "failed" and "vector of logits" in job.error
    assert web.get("/runs/1.json").json()["run"]["status"] == "done"  # the run is unharmed
    assert web.get("/runs/1/classes.json").json()["classes"] == []


def test_dream_a_top_image_from_the_neuron_page(analysed_dir):
    web = client_for(analysed_dir)
    page = web.get(NEURON).text
    index = re.search(r'name="image_index" value="(\d+)"', page).group(1)
    asked = web.post(
        "/runs/1/dreams", data={"image_index": index, "layer": "1"}, follow_redirects=False
    )
    assert asked.status_code == 303
    job_url = asked.headers["location"]
    drain(settings_for(analysed_dir))
    page = web.get(job_url).text
    assert "DeepDream at 1" in page and len(artifacts(page)) == 2
    source, dreamt = artifacts(page)
    assert Image.open(web.app.state.store.path(source)).size == (32, 32)
    assert source != dreamt


def test_bad_requests_get_a_readable_4xx_and_change_nothing(analysed_dir):
    web = client_for(analysed_dir)
    for body, status, words in [
        ({"layer": "nope"}, 404, "no layer 'nope'"),
        ({"layer": "1", "units": [9]}, 400, "channels 0..2"),
        ({"layer": "1", "diversity": 1}, 400, "diversity"),
        ({"layer": "1", "steps": 0}, 422, "steps"),
    ]:
        answer = web.post("/api/runs/1/featureviz", json=body)
        assert answer.status_code == status and words in answer.text, (body, answer.text)
    answer = web.post("/api/runs/1/dreams", json={"image_index": 999, "layer": "1"})
    assert answer.status_code == 400 and "images 0.." in answer.text
    answer = web.post("/runs/1/layers/1/featureviz", data={"method": "magic"})
    assert answer.status_code == 400 and "method must be one of" in answer.text
    assert not jobs(settings_for(analysed_dir))
    ok = web.post("/api/runs/1/featureviz", json={"layer": "1", "units": [0], "steps": 4})
    assert ok.status_code == 200 and ok.json()["kind"] == "featureviz"


def test_the_urls_of_earlier_versions_redirect_with_their_method_and_body(analysed_dir):
    web = client_for(analysed_dir)
    moved = {
        "/runs/1/layers/1/visualize": "/runs/1/layers/1/featureviz",
        "/runs/1/classes/visualize": "/runs/1/classes/featureviz",
        "/api/runs/1/visualizations": "/api/runs/1/featureviz",
    }
    for old, new in moved.items():
        answer = web.post(old, data={"steps": "4"}, follow_redirects=False)
        assert answer.status_code == 308 and answer.headers["location"] == new
    followed = web.post("/api/runs/1/visualizations", json={"layer": "1", "units": [1], "steps": 4})
    assert followed.status_code == 200 and followed.json()["params"]["units"] == [1]
    form = web.post("/runs/1/layers/1/visualize", data={"channel": "0"}, follow_redirects=True)
    assert form.status_code == 200 and form.url.path == NEURON


def test_asking_for_renders_needs_the_token_when_one_is_set(analysed_dir):
    web = client_for(analysed_dir, NEURONSCOPE_TOKEN="secret")
    refused = web.post("/api/runs/1/featureviz", json={"layer": "1"})
    assert refused.status_code in (401, 403)
    allowed = web.post(
        "/api/runs/1/featureviz",
        json={"layer": "1"},
        headers={"Authorization": "Bearer secret"},
    )
    assert allowed.status_code == 200
