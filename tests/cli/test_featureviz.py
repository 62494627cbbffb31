"""Feature visualisations through the CLI and the queue: stored, reused, read back, refused."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.support.cli import analyze, run_cli
from tests.support.jobs import drain, jobs, settings_for
from tests.support.models import RED_DETECTOR_ARGS

FAST = ("--steps", "48", "--size", "32")
RED_ENOUGH = ("--steps", "96", "--size", "32")  # the red detector's image is clearly red by then


def test_visualize_a_layer_stores_reuses_and_reads_back(capsys, data_dir, square_folder):
    run = analyze(capsys, square_folder, "--no-indexes")["run"]
    code, out, err = run_cli(capsys, "visualize", str(run), "1", *RED_ENOUGH, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["rendered"] == 3 and result["reused"] == 0
    by_unit = {record["unit"]: record for record in result["visualisations"]}
    red = np.asarray(Image.open(by_unit[0]["png"]), dtype=float)
    assert (red[..., 0] - red[..., 1]).mean() > 40 and (red[..., 0] - red[..., 2]).mean() > 40
    assert by_unit[0]["activation"] > 100 * max(by_unit[0]["random_activation"], 1e-3)
    assert by_unit[2]["activation"] == 0.0  # the channel with an all-negative bias never fires

    code, out, _ = run_cli(capsys, "visualize", str(run), "1", *RED_ENOUGH, "--json")
    assert json.loads(out)["rendered"] == 0 and json.loads(out)["reused"] == 3

    code, out, _ = run_cli(capsys, "neuron", str(run), "1", "0", "--json")
    (stored,) = json.loads(out)["feature_vis"]
    assert stored["png"] == by_unit[0]["png"]
    assert {"objective", "method", "png", "steps", "size", "activation", "random_activation"} <= (
        stored.keys()
    )
    assert (stored["objective"], stored["method"], stored["steps"], stored["size"]) == (
        "channel",
        "gradient",
        96,
        32,
    )


def test_diverse_sets_and_the_genetic_search(capsys, data_dir, square_folder):
    run = str(analyze(capsys, square_folder, "--no-indexes")["run"])
    code, out, err = run_cli(
        capsys, "visualize", run, "4", "--channels", "0", "--diversity", "3", *FAST, "--json"
    )
    assert code == 0, err
    images = json.loads(out)["visualisations"]
    assert [image["variant"] for image in images] == [0, 1, 2]
    assert len({image["png"] for image in images}) == 3
    code, out, err = run_cli(
        capsys, "visualize", run, "1", "--channels", "0", "--method", "xdream",
        "--steps", "12", "--size", "32", "--json",
    )  # fmt: skip
    assert code == 0, err
    (found,) = json.loads(out)["visualisations"]
    assert found["method"] == "xdream" and found["activation"] > found["random_activation"]


def test_bad_requests_exit_with_one_readable_line(capsys, data_dir, square_folder):
    run = str(analyze(capsys, square_folder, "--no-indexes")["run"])
    for argv, expected in [
        ((run, "nope"), "no layer 'nope'"),
        ((run, "1", "--channels", "7"), "channels 0..2, not 7"),
        ((run, "1", "--channels", "x"), "numbers and ranges"),
        ((run, "--classes", "0-1"), "vector of logits"),
        ((run,), "give a layer"),
        ((run, "1", "--diversity", "1"), "diversity"),
        (("99", "1"), "no run 99"),
    ]:
        code, _, err = run_cli(capsys, "visualize", *argv, *FAST)
        assert code == 1 and expected in err and "Traceback" not in err, (argv, err)


def test_dream_writes_an_image_of_the_same_size(capsys, data_dir, square_folder, tmp_path):
    run = str(analyze(capsys, square_folder, "--no-indexes")["run"])
    source = next(square_folder.glob("red/*.png"))
    out = tmp_path / "dream.png"
    code, _, err = run_cli(
        capsys, "dream", run, str(source), "--layer", "1", "--octaves", "2", "--steps", "8",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert Image.open(out).size == Image.open(source).size
    assert not np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(source)))
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    code, _, err = run_cli(capsys, "dream", run, str(not_an_image), "--layer", "1")
    assert code == 1 and "readable image" in err
    code, _, err = run_cli(capsys, "dream", run, str(source), "--layer", "nope")
    assert code == 1 and "no layer 'nope'" in err


def test_queued_visualisations_and_analyze_featureviz(capsys, data_dir, square_folder):
    run = analyze(capsys, square_folder, "--no-indexes", "--featureviz", "--fv-steps", "8",
                  "--fv-size", "32", "--queue")["run"]  # fmt: skip
    settings = settings_for(data_dir)
    drain(settings)
    kinds = [(job.kind, job.status) for job in jobs(settings)]
    assert kinds.count(("featureviz", "done")) == 2, kinds
    code, out, _ = run_cli(capsys, "neuron", str(run), "4", "1", "--json")
    assert json.loads(out)["feature_vis"][0]["steps"] == 8
    code, out, err = run_cli(
        capsys, "visualize", str(run), "1", "--channels", "0-1", *FAST, "--queue", "--json"
    )
    assert code == 0, err
    job = json.loads(out)
    assert job["kind"] == "featureviz" and job["params"]["units"] == [0, 1]
    drain(settings)
    finished = next(j for j in jobs(settings) if j.id == job["id"])
    assert finished.status == "done" and finished.result["rendered"] == 2


def test_analyze_featureviz_in_process_estimates_then_renders(capsys, data_dir, square_folder):
    code, out, err = run_cli(
        capsys, "analyze", *RED_DETECTOR_ARGS, "--data", str(square_folder), "--layers", "1,4",
        "--top-k", "5", "--workers", "0", "--no-indexes", "--featureviz", "--fv-steps", "4",
        "--fv-size", "32",
    )  # fmt: skip
    assert code == 0, err
    assert "feature visualisations of 5 neurons (4 steps at 32 px on cpu): about" in out
    code, out, _ = run_cli(capsys, "neuron", "1", "4", "1", "--json")
    assert json.loads(out)["feature_vis"][0]["steps"] == 4


def test_resuming_a_cancelled_run_revives_its_visualisation_jobs(capsys, data_dir, square_folder):
    from server.jobs.state import stop_run
    from server.storage.db import Database
    from server.web.runs import resume_run

    run = analyze(capsys, square_folder, "--no-indexes", "--featureviz", "--fv-steps", "4",
                  "--queue")["run"]  # fmt: skip
    settings = settings_for(data_dir)
    with Database(settings.database_url).session() as session:
        stop_run(session, run, "cancelled", "cancelled by the test")
    assert {job.status for job in jobs(settings) if job.kind == "featureviz"} == {"cancelled"}
    with Database(settings.database_url).session() as session:
        resume_run(session, run)
    revived = [job for job in jobs(settings) if job.kind == "featureviz"]
    assert len(revived) == 2 and {job.status for job in revived} == {"waiting"}
    drain(settings)
    assert {job.status for job in jobs(settings)} == {"done"}
