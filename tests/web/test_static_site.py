"""``neuronscope export``: the pages of runs as a static site whose every link and image resolves
from disk, with nothing that needs a server left in, and nothing of runs not exported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.config import load_settings
from tests.support.cli import environment, red_detector_analysis, run_cli
from tests.support.images import write_square_folder
from tests.support.web import web_client

REFERENCE = re.compile(r'(?:href|src)="([^"]+)"')


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs 1-3 of the red detector over the same squares (top-6, top-3, top-4), a note on
    run 1 with markup in its text, and the composition of run 1's layer 4 channel 0."""
    from server.cli.main import main

    root = tmp_path_factory.mktemp("export")
    folder = write_square_folder(root / "squares", per_class=8)
    data_dir = root / "data"
    with environment(NEURONSCOPE_DATA_DIR=str(data_dir)):
        for top_k in (6, 3, 4):
            assert main(red_detector_analysis(folder, top_k)) == 0
        assert main(["compose", "1", "4", "0"]) == 0  # shown on its page, as a picture
    with web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(data_dir)})) as client:
        client.post(
            "/runs/1/layers/4/neurons/0/note",
            data={"label": "red", "text": "<img src=x onerror=alert(1)>"},
        )
    return data_dir


def exported(data_dir: Path, out: Path, capsys, *runs: str) -> str:
    with environment(NEURONSCOPE_DATA_DIR=str(data_dir)):
        code, printed, err = run_cli(capsys, "export", *runs, "--out", str(out))
    assert code == 0, err
    return printed


def test_every_link_and_image_of_the_copy_resolves_on_disk(three_runs, tmp_path, capsys):
    out = tmp_path / "site"
    files_before = set((three_runs / "artifacts").glob("??/*"))
    printed = exported(three_runs, out, capsys, "2", "1")
    assert "pages and" in printed and str(out / "index.html") in printed
    pages = sorted(out.rglob("*.html"))
    expected = {
        "index.html",
        "runs/1/index.html",
        "runs/1/notes/index.html",
        "runs/1/layers/4/index.html",
        "runs/2/layers/1/neurons/2/index.html",
        "compare/1-2/index.html",
        "compare/1-2/layers/4/index.html",
        "indexes/index.html",
    }
    assert expected <= {page.relative_to(out).as_posix() for page in pages}
    # the runs' pictures are written out of their packs into the copy, not into the store
    assert set((three_runs / "artifacts").glob("??/*")) == files_before
    assert {path.suffix for path in (out / "artifacts").iterdir()} >= {".png", ".jpg"}
    for page in pages:
        html = page.read_text()
        for reference in REFERENCE.findall(html):
            assert not reference.startswith("/"), f"{page}: absolute {reference}"
            if reference.startswith("#"):  # a place on the same page
                continue
            target = (page.parent / reference.split("#")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(out)} links {reference}: missing"
        assert "<form" not in html and "hx-get" not in html and "htmx" not in html
        assert "runs/3/" not in html  # run 3 was not exported
    neuron = (out / "runs/1/layers/4/neurons/0/index.html").read_text()
    picture = neuron.split('<svg class="composition-picture"')[1].split("</svg>")[0]
    assert 'href="../../../1/neurons/0/index.html"' in picture  # the red detector's node
    assert re.search(r'<image href="(\.\./)+artifacts/', picture)
    assert "&lt;img src=x onerror=alert(1)&gt;" in neuron and "<img src=x" not in neuron
    assert 'href="../../../../../../compare/1-2/layers/4/index.html#neurons"' in neuron
    assert "static copy" in neuron


def test_a_former_export_is_replaced_and_other_folders_are_refused(three_runs, tmp_path, capsys):
    out = tmp_path / "site"
    exported(three_runs, out, capsys, "1", "2")
    exported(three_runs, out, capsys, "1")
    assert not (out / "runs" / "2").exists() and not (out / "compare").exists()
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter.tex").write_text("keep me")
    with environment(NEURONSCOPE_DATA_DIR=str(three_runs)):
        code, _, err = run_cli(capsys, "export", "1", "--out", str(mine))
    assert code == 1 and "not empty" in err and (mine / "chapter.tex").read_text() == "keep me"
    with environment(NEURONSCOPE_DATA_DIR=str(three_runs)):
        code, _, err = run_cli(capsys, "export", "9", "--out", str(tmp_path / "other"))
    assert code == 1 and err.strip() == "neuronscope: error: no run 9"
