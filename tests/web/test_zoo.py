"""Zoo models from the browser: a worker lists the pretrained weights in its caches, each is
registered with one click (timm by tag, torchvision by weights name), and the new-run form
offers the model's own preprocessing."""

from __future__ import annotations

import pytest

from server.config import load_settings
from tests.support.images import write_photo
from tests.support.jobs import cli, drain, environment, operator_lab, settings_for
from tests.support.web import web_client
from tests.support.zoo import empty_caches, hub_snapshot, torchvision_checkpoint

pytest.importorskip("timm")


def test_find_register_and_start_from_the_caches(tmp_path, monkeypatch):
    lab = operator_lab(tmp_path / "lab")
    caches = empty_caches(tmp_path / "caches", monkeypatch)
    hub_snapshot(caches, "resnet18.a1_in1k")
    torchvision_checkpoint(caches, "resnet18", "IMAGENET1K_V1")
    settings = settings_for(lab / "data")
    web = web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(lab / "data")}))
    assert "Find pretrained weights" in web.get("/models").text
    assert 'action="/models/zoo"' in web.get("/runs/new").text  # the run form offers it too

    scanned = web.post("/models/zoo", follow_redirects=False)
    assert scanned.status_code == 303
    drain(settings)
    job = web.get(scanned.headers["location"] + ".json").json()
    specs = {(w["spec"], w["weights"]) for w in job["result"]["weights"]}
    assert specs == {("timm:resnet18.a1_in1k", ""), ("torchvision:resnet18", "IMAGENET1K_V1")}
    assert 'value="timm:resnet18.a1_in1k"' in web.get(scanned.headers["location"]).text

    for spec, weights in specs:
        registered = web.post("/models", data={"spec": spec, "weights": weights})
        assert registered.status_code == 200, registered.text
    drain(settings)
    models = {m["spec"]: m for m in web.get("/api/models").json()}
    timm_model = models["timm:resnet18.a1_in1k"]
    assert timm_model["weights_source"] == "timm/resnet18.a1_in1k"
    assert timm_model["resize"] == "center-crop 235 bicubic" and timm_model["classes"] == 1000
    assert models["torchvision:resnet18"]["resize"] == "center-crop 256"

    form = web.get(f"/runs/new?model={timm_model['id']}").text
    assert "timm/resnet18.a1_in1k" in form and "centre crop from 235 px, bicubic" in form
    run = {"model": str(timm_model["id"]), "dataset": "1", "layers": ["layer1"], "top_k": "2"}
    started = web.post("/runs", data={**run, "batch_size": "4"}, follow_redirects=False)
    drain(settings)  # a worker loads the pretrained weights again, from the cache's blob
    finished = web.get(started.headers["location"] + ".json").json()["run"]
    assert finished["status"] == "done" and finished["resize"] == "center-crop 235 bicubic"
    assert finished["weights_source"] == "timm/resnet18.a1_in1k"
    run_page = web.get(started.headers["location"]).text
    assert "pretrained: timm/resnet18.a1_in1k" in run_page
    assert "centre crop from 235 px, bicubic" in run_page and "mean 0.485, 0.456, 0.406" in run_page

    refused = web.post("/models", data={"spec": "timm:../../etc"})
    assert refused.status_code == 400 and "does not name a timm model" in refused.text


def test_imagenet_folder_names_are_shown_with_the_weights_class_names(tmp_path, monkeypatch):
    caches = empty_caches(tmp_path / "caches", monkeypatch)
    hub_snapshot(caches, "resnet18.a1_in1k")
    folder = tmp_path / "val"  # ImageNet's own layout: a folder per WordNet id
    for index, wnid in enumerate(("n01440764", "n01443537")):
        for seed in range(2):
            write_photo(folder / wnid / f"{seed}.jpg", 70, 50, seed=2 * index + seed)
    env = environment(tmp_path / "data")
    args = ("--input-size", "64", "--layers", "layer1", "--top-k", "3", "--no-indexes")
    cli(env, "analyze", "--model", "timm:resnet18.a1_in1k", "--data", str(folder), *args)
    web = web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(tmp_path / "data")}))
    neuron = web.get("/runs/1/layers/layer1/neurons/0.json").json()
    labels = {top["label"] for top in neuron["top"]}
    names = {"n01440764": "tench", "n01443537": "goldfish"}
    assert neuron["label_names"] == {label: names[label] for label in labels}
    page = web.get("/runs/1/layers/layer1/neurons/0").text
    assert any(f"{label} · {names[label]}" in page for label in labels)
