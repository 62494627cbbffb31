"""Uploads, image decompositions and neuron compositions through the web app and a worker."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.config import load_settings
from tests.support.images import png_bytes, red_left_image
from tests.support.jobs import drain, jobs, settings_for
from tests.support.web import LabClient, web_client


def client_for(analysed_dir: Path, **env: str) -> LabClient:
    return web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(analysed_dir), **env}))


def test_upload_then_decompose_then_read_it_back(analysed_dir):
    web = client_for(analysed_dir)
    data = png_bytes(red_left_image())
    queued = web.post("/api/runs/1/decompositions", files={"file": ("red.png", data)})
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    number = queued.json()["id"]
    assert web.get(f"/api/decompositions/{number}").json()["status"] == "queued"
    page = web.get(f"/decompositions/{number}").text
    assert 'hx-trigger="every' in page  # the page polls while the worker works
    drain(settings_for(analysed_dir))
    done = web.get(f"/api/decompositions/{number}").json()
    assert done["status"] == "done" and (done["width"], done["height"]) == (60, 40)
    red = [n for n in done["layers"]["1"]["neurons"] if n["channel"] == 0]
    assert red  # the red detector, and only on the red square (rows 10-30, columns 5-25) ...
    for n in red:  # ... in the uploaded image's own pixels
        r0, r1, c0, c1 = n["window"]
        assert c0 < 25 and c1 > 5 and r0 < 30 and r1 > 10, n["window"]
    assert web.get(red[0]["nf"]).status_code == 200
    assert web.get(red[0]["heatmap"]).status_code == 200
    again = web.post("/api/runs/1/decompositions", files={"file": ("copy.png", data)})
    assert again.status_code == 200 and again.json()["id"] == number  # decomposed once
    page = web.get(f"/decompositions/{number}?layer=1&neuron=0").text
    assert 'hx-trigger="every' not in page and "where <a" in page
    assert "/runs/1/layers/1/neurons/0" in page
    red_row = page.split('<a href="/runs/1/layers/1/neurons/0">0</a>')[1].split("</tr>")[0]
    assert "<td>red</td>" in red_row  # the red detector's top class, a column of the table
    pixel = web.get(f"/decompositions/{number}/at?layer=1&x=15&y=20").text
    assert "channel 0" in pixel.split("</li>")[0]  # the red square's centre
    pixel = web.get(f"/decompositions/{number}/at?layer=1&x=50&y=5").text
    assert "channel 1" in pixel.split("</li>")[0]  # grey background: the luminance unit
    assert web.get(f"/decompositions/{number}?layer=nope").status_code == 404
    assert f"/decompositions/{number}" in web.get("/runs/1").text
    # The composite pastes NFs contrast-stretched; a switch shows the raw means.
    layer = done["layers"]["1"]
    assert layer["stretched"] and layer["composite_raw"] != layer["composite"]
    assert web.get(layer["composite_raw"]).status_code == 200
    stretched = web.get(f"/decompositions/{number}?layer=1").text
    assert layer["composite"] in stretched and layer["composite_raw"] not in stretched
    assert f"/decompositions/{number}?layer=1&amp;view=raw" in stretched
    raw = web.get(f"/decompositions/{number}?layer=1&view=raw").text
    assert layer["composite_raw"] in raw and "<strong>raw means</strong>" in raw
    assert web.get(f"/decompositions/{number}?layer=1&view=bright").status_code == 422


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16"])
def test_greyscale_palette_alpha_and_16_bit_images_are_accepted(analysed_dir, mode):
    web = client_for(analysed_dir)
    image = red_left_image("L" if mode == "I;16" else mode)
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image, np.uint16) * 257).astype(np.uint16))
    answer = web.post("/api/runs/1/decompositions", files={"file": ("x.png", png_bytes(image))})
    assert answer.status_code == 202, answer.text
    drain(settings_for(analysed_dir))
    assert web.get(f"/api/decompositions/{answer.json()['id']}").json()["status"] == "done"


def test_bad_uploads_are_refused_readably_and_store_nothing(analysed_dir, tmp_path):
    web = client_for(
        analysed_dir, NEURONSCOPE_MAX_UPLOAD_BYTES="50000", NEURONSCOPE_MAX_UPLOAD_PIXELS="250000"
    )
    store = analysed_dir / "artifacts"
    before = sorted(store.rglob("*"))
    whole = png_bytes(red_left_image(), "JPEG")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))
    cases = [
        (b"", 400, "choose an image"),
        (b"this is not an image", 400, "not an image"),
        (whole[: len(whole) // 2], 400, "cannot be decoded"),
        (png_bytes(Image.new("L", (1000, 1000))), 413, "megapixels"),
        (png_bytes(noise), 413, "at most 48.8 KiB"),
    ]
    for data, status, words in cases:
        answer = web.post("/api/runs/1/decompositions", files={"file": ("bad.png", data)})
        assert answer.status_code == status and words in answer.json()["detail"], answer.text
    assert sorted(store.rglob("*")) == before and not jobs(settings_for(analysed_dir))
    fine = web.post("/api/runs/1/decompositions", files={"file": ("ok.jpg", whole)})
    assert fine.status_code == 202  # the server is still up and the next upload works


def test_uploads_need_the_token_when_one_is_set(analysed_dir):
    web = client_for(analysed_dir, NEURONSCOPE_TOKEN="secret")
    data = {"file": ("red.png", png_bytes(red_left_image()))}
    assert web.post("/api/runs/1/decompositions", files=data).status_code in (401, 403)
    allowed = web.post(
        "/api/runs/1/decompositions", files=data, headers={"Authorization": "Bearer secret"}
    )
    assert allowed.status_code == 202


def test_a_dataset_image_from_a_neuron_page(analysed_dir):
    web = client_for(analysed_dir)
    page = web.get("/runs/1/layers/1/neurons/0").text
    index = re.search(r'name="image_index" value="(\d+)"><button[^>]*>decompose', page)
    assert index
    asked = web.post(
        "/runs/1/decompositions", data={"image_index": index.group(1)}, follow_redirects=False
    )
    assert asked.status_code == 303
    drain(settings_for(analysed_dir))
    record = web.get(asked.headers["location"] + ".json").json()
    assert record["status"] == "done" and record["image_index"] == int(index.group(1))


def test_composition_is_computed_once_on_request_and_linked(analysed_dir):
    web = client_for(analysed_dir)
    url = "/api/runs/1/layers/4/neurons/0/composition?source=1&mode=relevance&depth=1"
    never_asked = web.get(url)  # reading queues nothing: an <img> on any page could, else
    assert never_asked.status_code == 404 and "POST to this URL" in never_asked.json()["detail"]
    assert not jobs(settings_for(analysed_dir))
    first = web.post(url)
    assert first.status_code == 202 and first.json()["status"] == "queued"
    assert web.post(url).json()["job"] == first.json()["job"]  # the same job, not a second one
    assert web.get(url).status_code == 202 and web.get(url).json()["job"] == first.json()["job"]
    drain(settings_for(analysed_dir))
    tree = web.get(url).json()["tree"]
    # Layer 4's channel 0 sums layer 1's red detector (channel 0) over its window.
    assert tree["children"][0]["channel"] == 0
    assert tree["children"][0]["url"] == "/runs/1/layers/1/neurons/0"
    page = web.get("/runs/1/layers/4/neurons/0?source=1&mode=relevance&depth=1").text
    assert 'href="/runs/1/layers/1/neurons/0"' in page.split('id="composition"')[1]
    asked = web.post(
        "/runs/1/layers/4/neurons/0/composition",
        data={"source": "1", "mode": "activation"},
        follow_redirects=False,
    )
    assert asked.status_code == 303
    drain(settings_for(analysed_dir))
    activation = web.get("/api/runs/1/layers/4/neurons/0/composition?source=1").json()
    assert activation["mode"] == "activation" and activation["neurons"][0]["channel"] == 0
    assert web.get("/api/runs/1/layers/1/neurons/0/composition").status_code == 400


def test_dream_an_uploaded_image_from_its_decomposition_page(analysed_dir):
    web = client_for(analysed_dir)
    queued = web.post("/api/runs/1/decompositions", files={"file": ("red.png", png_bytes(
        red_left_image()))})  # fmt: skip
    drain(settings_for(analysed_dir))
    page = web.get(f"/decompositions/{queued.json()['id']}?layer=1").text
    upload = re.search(r'name="upload" value="([0-9a-f]{64})"', page).group(1)
    asked = web.post(
        "/runs/1/dreams", data={"upload": upload, "layer": "1"}, follow_redirects=False
    )
    assert asked.status_code == 303
    drain(settings_for(analysed_dir))
    job = web.get(asked.headers["location"] + ".json").json()
    assert job["status"] == "done" and job["result"]["image"] != job["result"]["source"]
    bad = web.post("/runs/1/dreams", data={"image_index": "x", "layer": "1"})
    assert bad.status_code == 400 and "whole number" in bad.text
    neither = web.post("/api/runs/1/dreams", json={"layer": "1"})
    assert neither.status_code == 400 and "name one image" in neither.text
