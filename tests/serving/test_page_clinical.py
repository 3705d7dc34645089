"""The page as a clinician uses it with a patient in front of her, in a real browser: how sure each risk is, the
IL-21 kit by its name, warnings in words, the downloads, the printed page and a CDS Hooks card's link.

As in test_page.py, no request may leave 127.0.0.1 and the console must stay free of errors.
"""

import json
import re
import shutil
import subprocess
from urllib.parse import urlencode

import pytest

from tests.browser import guarded_page
from tests.fhir_checks import assert_valid_fhir
from tests.serving.conftest import predicted_by_month
from tools.browser import fill_form

pytestmark = pytest.mark.integration

FORM = {"age_years": "67", "sex": "female", "disease_duration_years": "2.5", "il21_pg_ml": "620",
        "il21_assay": "legacy_elisa", "thyroid_antibodies": "true"}
PATIENT = {"age_years": 67, "sex": "female", "disease_duration_years": 2.5, "il21_pg_ml": 620,
           "il21_assay": "legacy_elisa", "thyroid_antibodies": True, "treatment": "alemtuzumab"}
MONTHS = list(range(1, 61))


@pytest.fixture(scope="module")
def answer(shared_server):
    return predicted_by_month(shared_server["url"], PATIENT, MONTHS)


def show(page, url, values=FORM):
    page.goto(f"{url}/")
    page.wait_for_selector("#f-age_years")
    fill_form(page, values)
    page.evaluate("delete document.body.dataset.drawnMs")
    page.click("#submit")
    page.wait_for_selector("body[data-drawn-ms]", state="attached")


def percent(risk: float) -> str:
    p = 100 * risk
    return f"{p:.1f}%" if p >= 1 else f"{p:.2f}%" if p >= 0.1 else "<0.1%"


def test_each_risk_comes_with_its_interval_named_as_the_model_names_it(chromium, shared_server, answer, model_info):
    with guarded_page(chromium) as (page, guard):
        show(page, shared_server["url"])
        chosen = page.locator("#summary tr.chosen").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.innerText))")
        for row, scores in zip(chosen, answer["predictions"][0]["outcomes"].values(), strict=True):
            for month, text in zip((24, 48), row[1:], strict=True):
                low, high = scores["risks"][month - 1]["risk_interval"]
                assert f"({percent(low)}–{percent(high)})" in text
        note = page.locator("#interval-note").inner_text()
        assert model_info["interval"]["name"] in note and model_info["interval"]["method"] in note
        assert guard.outside == [] and guard.errors == []


def test_warnings_use_the_labels_words_and_the_reference_patient_is_explained(chromium, shared_server):
    with guarded_page(chromium) as (page, guard):
        show(page, shared_server["url"])
        warnings = page.locator("#warnings").inner_text()
        assert "Age at first course: 67 is outside the training range 18–55 and is scored as 55 years" in warnings
        assert not re.search(r"age_years|interferon_beta_1a|il21_", warnings), warnings
        assert "not a real or a typical person" in page.locator("#reference-line").inner_text()
        assert guard.outside == [] and guard.errors == []


def test_the_il21_kit_is_chosen_by_its_printed_name_with_its_evidence(chromium, shared_server, model_info):
    kits = next(f for f in model_info["features"] if f["name"] == "il21_assay")["category_details"]
    with guarded_page(chromium) as (page, guard):
        page.goto(f"{shared_server['url']}/")
        page.wait_for_selector("#f-il21_assay")
        options = page.locator("#f-il21_assay option").evaluate_all("os => os.map(o => [o.value, o.text])")
        assert {value: text for value, text in options if value} == {k: v["printed_name"] for k, v in kits.items()}
        for kit, detail in kits.items():
            page.select_option("#f-il21_assay", kit)
            assert page.locator("#evidence-il21_assay").inner_text() == "Evidence for this kit: " + detail["evidence"]
        assert guard.outside == [] and guard.errors == []


def test_the_answer_downloads_as_json_and_as_fhir(chromium, shared_server, answer):
    with guarded_page(chromium) as (page, guard):
        show(page, shared_server["url"])
        with page.expect_download() as saved:
            page.click("#download-json")
        with open(saved.value.path()) as handle:
            assert json.load(handle)["predictions"] == answer["predictions"]
        with page.expect_download() as saved:
            page.click("#download-fhir")
        assert saved.value.suggested_filename.endswith(".fhir.json")
        with open(saved.value.path()) as handle:
            bundle = json.load(handle)
        assert_valid_fhir(bundle)
        thyroid = bundle["entry"][0]["resource"]["prediction"]
        expected = answer["predictions"][0]["outcomes"]["thyroid"]["risks"]
        for at in thyroid:
            month = at["whenRange"]["high"]["value"]
            assert at["probabilityDecimal"] == pytest.approx(expected[month - 1]["risk"], abs=1e-12)
        assert guard.outside == [] and guard.errors == []


def test_the_printed_page_is_one_a4_page(chromium, shared_server, tmp_path, record_property):
    """Printed to PDF by the browser, then drawn as a PNG (poppler's pdftoppm) and looked at: one page, not blank,
    and the summary and both curves are in it."""
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        pytest.skip("poppler-utils is not installed (as root: apt-get install -y poppler-utils; `make test` does it)")
    with guarded_page(chromium) as (page, guard):
        show(page, shared_server["url"])
        page.emulate_media(media="print")
        assert page.locator("#summary").is_visible() and page.locator("svg.chart").count() == 2
        assert page.locator("#patient-form").is_hidden() and page.locator("#explanation").is_hidden()
        pdf = tmp_path / "page.pdf"
        page.pdf(path=str(pdf), format="A4", print_background=True)
        assert guard.outside == [] and guard.errors == []
    subprocess.run([pdftoppm, "-png", "-r", "60", str(pdf), str(tmp_path / "printed")], check=True, timeout=60)
    pictures = sorted(tmp_path.glob("printed*.png"))
    record_property("printed_png", str(pictures[0]))
    print(f"\nthe printed page: {pictures[0]}")
    assert len(pictures) == 1, f"{len(pictures)} pages"
    import numpy as np
    from PIL import Image

    with Image.open(pictures[0]) as image:
        ink = np.asarray(image.convert("L")) < 128
    height, width = ink.shape
    assert abs(height / width - 297 / 210) < 0.02  # A4
    assert ink.mean() > 0.01, "the printed page is blank"
    rows = np.flatnonzero(ink.any(axis=1))
    assert rows[-1] > height / 2  # drawn well down the page: the summary and both curves are on it


def test_a_cards_link_fills_the_form_and_shows_the_risks(chromium, shared_server, answer):
    """A CDS Hooks card links to the page with the patient's values in the fragment, which never leaves the browser."""
    values = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in PATIENT.items()}
    with guarded_page(chromium) as (page, guard):
        page.goto(f"{shared_server['url']}/#{urlencode({**values, 'month': 12})}")
        page.wait_for_selector("body[data-drawn-ms]", state="attached")
        assert page.locator("#f-age_years").input_value() == "67"
        assert "by month 12" in page.locator("table.waterfall caption").first.inner_text()
        assert not any("#" in url or "age_years" in url for url in guard.requests)
        assert guard.outside == [] and guard.errors == []
