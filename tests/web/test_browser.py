"""The dashboard in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import csv
import io
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.support.web import serving

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium package")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server_url(web_data_dir):
    with serving({"NEURONSCOPE_DATA_DIR": str(web_data_dir)}) as url:
        yield url


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


def table_channels(page) -> list[str]:
    return page.locator("table.neurons tbody tr td:nth-child(2)").all_inner_texts()


def test_sorting_by_a_header_click_is_in_the_url_and_survives_a_reload(page, server_url):
    page.goto(f"{server_url}/runs/1/layers/1")
    assert table_channels(page) == ["0", "1", "2"]
    page.click('th a[data-column="color"]')  # highest colour index first
    page.wait_for_url("**_sort_desc=color**")
    assert "_sort_desc=color" in page.url
    page.wait_for_function(
        "document.querySelector('table.neurons tbody td:nth-child(2) a').textContent === '0'"
    )
    page.click('th a[data-column="color"]')  # again: ascending
    page.wait_for_url("**_sort=color**")
    page.wait_for_function(
        "document.querySelector('table.neurons tbody td:nth-child(2) a').textContent === '1'"
    )
    sorted_order = table_channels(page)
    assert sorted_order == ["1", "0", "2"]
    page.reload()
    assert table_channels(page) == sorted_order
    csv_url = page.get_attribute("a.csv-link", "href")
    with urllib.request.urlopen(server_url + csv_url) as response:
        rows = list(csv.DictReader(io.StringIO(response.read().decode())))
    assert [r["channel"] for r in rows] == sorted_order


def test_no_image_on_the_neuron_page_is_broken(page, server_url, tmp_path):
    page.goto(f"{server_url}/runs/1/layers/4/neurons/0")
    page.wait_for_load_state("load")
    images = page.locator("img")
    assert images.count() >= 2
    broken = page.evaluate(
        "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length"
    )
    assert broken == 0
    page.keyboard.press("ArrowRight")  # keyboard navigation to the next neuron
    page.wait_for_url("**/neurons/1")
    page.screenshot(path=str(tmp_path / "neuron.png"), full_page=True)


def test_a_run_started_in_the_browser_updates_itself_until_done(page, tmp_path):
    from tests.support.jobs import drain, operator_lab, settings_for

    lab = operator_lab(tmp_path)
    environ = {
        "NEURONSCOPE_DATA_DIR": str(lab / "data"),
        "NEURONSCOPE_ALLOWED_ROOTS": str(lab / "images"),
    }
    with serving(environ) as url:
        page.goto(f"{url}/runs/new?dataset=1")
        page.fill('input[name="top_k"]', "3")
        page.fill('input[name="shards"]', "2")
        page.fill('input[name="batch_size"]', "4")
        page.click('button[type="submit"]:has-text("Start")')
        page.wait_for_url("**/runs/2")
        assert page.locator("section.stages progress").count() == 3  # sweep, merge, indexes
        assert "0/2 jobs done" in page.inner_text("section.stages")
        page.screenshot(path=str(tmp_path / "queued.png"), full_page=True)

        worker = threading.Thread(target=drain, args=(settings_for(lab / "data"),))
        worker.start()  # a worker runs the jobs; the open page is never reloaded
        page.wait_for_selector('a[href="/runs/2/layers/4"]', timeout=60_000)
        page.wait_for_selector("h1 .status.done", timeout=60_000)
        worker.join()
        assert "hx-trigger" not in page.inner_html("main")  # polling stopped once done
        assert page.locator("td.spark svg").count() > 0  # the index histograms arrived


def test_the_cost_estimate_appears_under_the_form_without_leaving_it(page, tmp_path):
    from tests.support.jobs import drain, operator_lab, settings_for

    lab = operator_lab(tmp_path)
    with serving({"NEURONSCOPE_DATA_DIR": str(lab / "data")}) as url:
        page.goto(f"{url}/runs/new?dataset=1")
        page.click('button:has-text("Estimate the cost first")')
        page.wait_for_selector("#estimate #job")  # the job's part of its page, under the form
        assert page.url.endswith("/runs/new?dataset=1")
        worker = threading.Thread(target=drain, args=(settings_for(lab / "data"),))
        worker.start()  # the part polls itself until the worker's trial is done
        page.wait_for_selector("#estimate table.estimate", timeout=60_000)
        worker.join()
        stages = page.locator("#estimate table.estimate td:first-child").all_inner_texts()
        assert stages[:2] == ["sweep", "Neuron Features"] and "total" in page.inner_text(
            "#estimate"
        )


def test_a_neuron_rendered_from_its_page_appears_beside_its_nf(page, tmp_path):
    from tests.support.cli import analysed_data_dir
    from tests.support.jobs import drain, settings_for

    data_dir = analysed_data_dir(tmp_path)
    with serving({"NEURONSCOPE_DATA_DIR": str(data_dir)}) as url:
        page.goto(f"{url}/runs/1/layers/1/neurons/0")
        assert "no visualisation yet" in page.inner_text("#featureviz")
        page.click('#featureviz button[value="0"]')
        page.wait_for_url("**/runs/1/layers/1/neurons/0")
        assert "rendering" in page.inner_text("#featureviz")

        worker = threading.Thread(target=drain, args=(settings_for(data_dir),))
        worker.start()  # the open page polls its section and shows the image once stored
        page.wait_for_selector("#featureviz figure.nf img", timeout=60_000)
        worker.join()
        assert "activation" in page.inner_text("#featureviz")
        assert "hx-trigger" not in page.inner_html("#featureviz")  # polling stopped
        page.screenshot(path=str(tmp_path / "featureviz.png"), full_page=True)

        page.goto(f"{url}/runs/1/layers/1")
        page.click('.grid-switch a:has-text("feature visualisations")')
        page.wait_for_url("**_grid=fv**")
        page.wait_for_selector('.grid img[alt="feature visualisation of channel 0"]')
        page.click('th a[data-column="color"]')  # sorting keeps the grid in the URL
        page.wait_for_url("**_sort_desc=color**")
        assert "_grid=fv" in page.url


def test_upload_decompose_point_at_a_pixel_then_follow_a_composition_tree(page, tmp_path):
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect

    from tests.support.cli import analysed_data_dir
    from tests.support.jobs import drain, settings_for

    data_dir = analysed_data_dir(tmp_path)
    pixels = np.full((48, 64, 3), 128, np.uint8)
    pixels[8:40, 4:36] = (230, 20, 20)
    image = tmp_path / "red-square.png"
    Image.fromarray(pixels).save(image)
    with serving({"NEURONSCOPE_DATA_DIR": str(data_dir)}) as url:
        page.goto(f"{url}/runs/1")
        page.set_input_files('input[type="file"]', str(image))
        page.click('button:has-text("Decompose")')
        page.wait_for_url("**/decompositions/1")
        assert "queued" in page.inner_text("h1")  # a worker has not taken it yet

        worker = threading.Thread(target=drain, args=(settings_for(data_dir),))
        worker.start()  # the open page polls until the decomposition is done
        page.wait_for_selector("#original", timeout=60_000)
        worker.join()
        page.click('.layer-switch a:has-text("1")')
        page.wait_for_url("**layer=1")
        box = page.locator("#original").bounding_box()
        at = {"red": (20 / 64, 24 / 48), "grey": (56 / 64, 6 / 48)}

        def point(name: str) -> tuple[float, float]:
            return box["x"] + box["width"] * at[name][0], box["y"] + box["height"] * at[name][1]

        first = page.locator("#pixel li").first
        page.mouse.move(*point("grey"))  # pointing is enough: no click
        expect(first).to_contain_text("channel 1")  # the luminance unit, on grey
        page.mouse.move(*point("red"))
        expect(first).to_contain_text("channel 0")  # the red detector
        page.mouse.click(*point("red"))  # pins the list ...
        page.mouse.move(*point("grey"))  # ... so moving away keeps it
        page.wait_for_timeout(300)
        expect(first).to_contain_text("channel 0")
        page.locator("#pixel li a").first.click()
        page.wait_for_url("**/runs/1/layers/1/neurons/0")

        page.goto(f"{url}/runs/1/layers/4/neurons/0?source=1&mode=relevance&depth=1")
        page.click('#composition button:has-text("Compute")')
        page.wait_for_url("**mode=relevance**")
        worker = threading.Thread(target=drain, args=(settings_for(data_dir),))
        worker.start()
        page.wait_for_selector("#composition ul.tree ul a", timeout=60_000)
        worker.join()
        picture = page.locator("#composition svg.composition-picture")
        assert picture.locator("image").count() >= 2  # the neuron and what composes it
        assert picture.locator("path").count() >= 1  # an edge for each relevance
        page.locator('#composition svg a[href*="/layers/1/"]').first.click()
        page.wait_for_url("**/runs/1/layers/1/neurons/*")
        page.go_back()
        page.locator("#composition ul.tree ul a").first.click()  # the list below it, too
        page.wait_for_url("**/runs/1/layers/1/neurons/*")
        page.screenshot(path=str(tmp_path / "composition.png"), full_page=True)


def test_a_label_written_on_a_neuron_page_filters_its_layer_and_is_found(page, tmp_path):
    from playwright.sync_api import expect

    from tests.support.cli import analysed_data_dir

    data_dir = analysed_data_dir(tmp_path)
    with serving({"NEURONSCOPE_DATA_DIR": str(data_dir)}) as url:
        page.goto(f"{url}/runs/1/layers/1/neurons/2")
        page.fill('#note input[name="label"]', "red curve")
        page.fill('#note textarea[name="text"]', "Fires on <b>red</b> arcs.")
        page.fill('#note input[name="author"]', "Grace")
        page.click('#note button[type="submit"]')
        page.wait_for_url("**/runs/1/layers/1/neurons/2#note")
        assert "red curve" in page.inner_text("#note .note-label")
        assert page.inner_text("#note .note-text") == "Fires on <b>red</b> arcs."  # as text

        page.goto(f"{url}/runs/1/layers/1")
        page.fill('input[name="label__contains"]', "CURVE")
        page.click('form.filters button[type="submit"]')
        page.wait_for_url("**label__contains=CURVE**")
        expect(page.locator("table.neurons tbody tr")).to_have_count(1)
        assert table_channels(page) == ["2"]
        page.reload()  # the filter is in the URL
        assert table_channels(page) == ["2"]

        page.fill("form.search input[name=q]", "arcs")
        page.press("form.search input[name=q]", "Enter")
        page.wait_for_url("**/notes?q=arcs")
        page.click("table.notes a")
        page.wait_for_url("**/runs/1/layers/1/neurons/2#note")


def test_a_comparison_sorted_by_a_change_leads_to_both_neurons(page, tmp_path):
    from server.cli.main import main
    from tests.support.cli import analysed_data_dir, environment, red_detector_analysis

    data_dir = analysed_data_dir(tmp_path)  # run 1: top-6 over the squares
    with environment(NEURONSCOPE_DATA_DIR=str(data_dir)):
        assert main(red_detector_analysis(tmp_path / "squares", 3)) == 0  # run 2: top-3
    with serving({"NEURONSCOPE_DATA_DIR": str(data_dir)}) as url:
        page.goto(f"{url}/runs/1/layers/1/neurons/0")
        page.click('a:has-text("compared")')
        page.wait_for_url("**/compare?runs=1,2&layer=1&channel__eq=0#neurons")
        assert page.locator("table.compare tbody tr").count() == 1
        page.click('a:has-text("back to every layer")')
        page.click('section.compare-layer h3 a:has-text("neuron by neuron")')
        page.wait_for_url("**layer=1#neurons")
        page.click('th a[data-column="delta_class"]')
        page.wait_for_url("**_sort_desc=delta_class**")
        deltas = page.locator("table.compare tbody td:nth-child(8) strong").all_inner_texts()
        assert deltas == sorted(deltas, key=float, reverse=True) and len(deltas) == 2  # 1 dead
        page.click("table.compare tbody tr:first-child a:has-text('run 2')")
        page.wait_for_url("**/runs/2/layers/1/neurons/*")


def sorted_column_check(page, header_text: str, column: int) -> None:
    """Click a static page's header: the table reorders by that column, largest first."""
    page.click(f'table.neurons th:has-text("{header_text}")')
    cells = page.locator(f"table.neurons tbody tr td:nth-child({column})").all_inner_texts()
    numbers = [float(text) for text in cells if text.strip() not in ("", "—")]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) >= 2


def test_an_exported_copy_opens_from_disk_sorts_and_links(page, tmp_path):
    from server.cli.main import main
    from tests.support.cli import analysed_data_dir, environment

    data_dir = analysed_data_dir(tmp_path)
    out = tmp_path / "site"
    with environment(NEURONSCOPE_DATA_DIR=str(data_dir)):
        assert main(["export", "1", "--out", str(out)]) == 0
    page.goto((out / "index.html").as_uri())
    page.click('a:has-text("#1")')
    page.click('table.data a[href$="layers/1/index.html"]')  # the layer named 1
    page.wait_for_url("**/runs/1/layers/1/index.html")
    sorted_column_check(page, "colour", 5)
    page.fill("input.table-filter", "non-opponent")
    visible = page.locator("table.neurons tbody tr:visible").count()
    assert 0 < visible <= 3
    page.click("table.neurons tbody tr:visible td:nth-child(2) a >> nth=0")
    page.wait_for_url("**/neurons/*/index.html")
    broken = page.evaluate(
        "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length"
    )
    assert broken == 0 and "static copy" in page.inner_text("main")


PHONE_PAGES = (
    "/",
    "/runs/1",
    "/runs/1/layers/4",
    "/runs/1/layers/4/neurons/0",
    "/runs/1/layers/4/neurons/0?source=1&mode=relevance&depth=1",  # the composition picture
    "/decompositions/1",
    "/jobs",
    "/runs/new",
    "/runs/1/classes",
    "/notes",
    "/compare?runs=1,1",
    "/compare?runs=1,1&layer=4",
    "/indexes?run=1",
)


def test_no_page_scrolls_sideways_on_a_phone(page, tmp_path):
    """At 390 px every kind of page fits: the navigation wraps, wide tables scroll inside
    their own box, plots, images and grids scale."""
    from tests.support.cli import analysed_data_dir
    from tests.support.jobs import drain, settings_for

    data_dir = analysed_data_dir(tmp_path)
    phone = page.context.browser.new_page(viewport={"width": 390, "height": 844})
    with serving({"NEURONSCOPE_DATA_DIR": str(data_dir)}) as url:
        phone.goto(f"{url}/runs/1/layers/4/neurons/0")
        phone.click('form[action="/runs/1/decompositions"] button >> nth=0')  # a top image
        phone.wait_for_url("**/decompositions/1")
        phone.goto(f"{url}/runs/1/layers/4/neurons/0?source=1&mode=relevance&depth=1")
        phone.click('#composition button:has-text("Compute")')
        drain(settings_for(data_dir))
        too_wide = {}
        for path in PHONE_PAGES:
            phone.goto(url + path)
            width = phone.evaluate("document.documentElement.scrollWidth")
            if "mode=relevance" in path:
                assert phone.locator("svg.composition-picture").count() == 1
            if width > 390:
                too_wide[path] = width
    phone.close()
    assert too_wide == {}


def test_a_columns_definition_shows_on_focus_and_leads_to_its_examples(page, server_url):
    """The "?" beside a header shows the definition when focused from the keyboard (and on
    hover), and leads to its entry on /indexes with the run's own extremes."""
    from playwright.sync_api import expect

    from server.web.glossary import glossary

    page.goto(f"{server_url}/runs/1/layers/1")
    tip = page.locator('th a.explain[href$="#color"]')
    tip.focus()
    shown = tip.evaluate("element => getComputedStyle(element, '::after').content")
    assert glossary()["color"].summary in shown
    page.mouse.move(0, 0)
    page.locator('th a.explain[href$="#orientation"]').hover()
    hovered = page.locator('th a.explain[href$="#orientation"]').evaluate(
        "element => getComputedStyle(element, '::after').content"
    )
    assert glossary()["orientation"].summary in hovered
    tip.click()
    page.wait_for_url("**/indexes?run=1#color")
    highest = page.locator("#color .examples a").first
    expect(highest).to_have_attribute("href", "/runs/1/layers/1/neurons/0")  # the red detector
