"""The page at / and the docs at /docs in a real browser (Debian's Chromium), against a real server.

No request may leave 127.0.0.1: every other one is blocked and recorded, and each test asserts that
none was attempted. The Content-Security-Policy stays on (nothing bypasses it), so a console error
also catches anything the page tried that the policy refused.
"""

import json
import math
import re
import statistics

import pytest

from features.schema import FEATURE_NAMES, FEATURES, RESEARCH_NOTICE
from models.explanation_figures import risk_shares
from tests.browser import guarded_page
from tests.identity import explained_value
from tests.serving.conftest import API_TOKEN as TOKEN
from tests.serving.conftest import predicted_by_month
from tools.browser import fill_form

pytestmark = pytest.mark.integration

# Filled in by the test as a clinician would; the other inputs are left empty (not provided).
FORM = {"age_years": "34", "sex": "female", "disease_duration_years": "2.5", "il21_pg_ml": "620",
        "il21_assay": "legacy_elisa", "thyroid_antibodies": "true"}
PATIENT = {"age_years": 34, "sex": "female", "disease_duration_years": 2.5, "il21_pg_ml": 620,
           "il21_assay": "legacy_elisa", "thyroid_antibodies": True}
MONTHS = list(range(1, 61))


@pytest.fixture(scope="module")
def answer(shared_server):
    return predicted_by_month(shared_server["url"], PATIENT, MONTHS)


def fill(page, values=FORM):
    fill_form(page, values)


def submit(page) -> float:
    """Submit with the keyboard and wait until the results are drawn; the page's own timing, in ms."""
    page.evaluate("delete document.body.dataset.drawnMs")
    page.focus("#submit")
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-drawn-ms]", state="attached")
    return float(page.get_attribute("body", "data-drawn-ms"))


def percent_value(text: str) -> float:
    return float(re.match(r"\s*([-\d.]+)%", text.replace("−", "-")).group(1))


def rounding(shown_in_points: float) -> float:
    """Half the last digit the page shows: one decimal from 1 (percent) or 0.1 (points) up, else two."""
    return 0.0501 if abs(shown_in_points) >= 0.1 else 0.00501


def points_value(text: str) -> float:
    return float(text.replace("pts", "").replace("−", "-").replace("±", "").strip())


def open_page(page, url):
    page.goto(f"{url}/")
    page.wait_for_selector("#f-age_years")


def test_the_form_is_built_from_the_schema(chromium, shared_server, model_info):
    training = {f["name"]: f["training"] for f in model_info["features"]}  # the served version's own ranges
    with guarded_page(chromium) as (page, guard):
        open_page(page, shared_server["url"])
        for feature in FEATURES:
            label = page.locator(f"label[for='f-{feature.name}']")
            assert label.count() == 1, feature.name
            assert feature.label in label.inner_text()
            assert ("required" in label.inner_text().lower()) == feature.required
            hint = page.locator(f"#h-{feature.name}").inner_text()
            if feature.possible:
                assert f"{int(feature.possible[1]):,}" in hint, (feature.name, hint)
            if training.get(feature.name):
                low, high = training[feature.name]["low"], training[feature.name]["high"]
                assert f"{low:,.10g}–{high:,.10g}" in hint, (feature.name, hint)
            if feature.unit:
                assert feature.unit in page.locator(f"#field-{feature.name}").inner_text()
            if feature.categories:
                options = page.locator(f"#f-{feature.name} option").evaluate_all("os => os.map(o => o.value)")
                assert set(feature.categories) <= set(options)
        assert page.locator("#f-treatment").input_value() == "alemtuzumab"
        assert "legacy ELISA" in page.locator("#h-il21_pg_ml").inner_text()  # the training range per kit
        assert RESEARCH_NOTICE in page.locator("header").inner_text()
        assert f"version {model_info['version']}" in page.locator("#model-line").inner_text()
        assert guard.outside == [] and guard.errors == []


def test_a_submit_shows_risks_contrast_curves_and_waterfalls(chromium, shared_server, answer, model_info,
                                                             record_property):
    prediction = answer["predictions"][0]
    with guarded_page(chromium) as (page, guard):
        open_page(page, shared_server["url"])
        fill(page)
        timings = [submit(page) for _ in range(5)]
        record_property("submit_to_drawn_ms", timings)
        print(f"\none-patient submit answered and drawn: {', '.join(f'{t:.0f}' for t in timings)} ms "
              f"(median {statistics.median(timings):.0f} ms)")

        results = page.locator("#results")
        assert results.is_visible()
        assert RESEARCH_NOTICE in results.inner_text()
        assert f"version {answer['model']['version']}" in page.locator("#results-model").inner_text()
        assert page.evaluate("document.activeElement.id") == "results-heading"

        # The risks at 24 and 48 months under both treatments, and the difference.
        bodies = page.locator("#summary tbody")
        assert bodies.count() == len(prediction["outcomes"])
        for k, (outcome, scores) in enumerate(prediction["outcomes"].items()):
            rows = bodies.nth(k).locator("tr").evaluate_all(
                "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
            for column, month in enumerate((24, 48), start=1):
                at = scores["contrast"][month - 1]
                for row, key in ((1, "risk_if_alemtuzumab"), (2, "risk_if_interferon_beta_1a")):
                    shown = rows[row][column]
                    if 100 * at[key] >= 0.1:
                        assert percent_value(shown) == pytest.approx(100 * at[key], abs=rounding(100 * at[key] / 10)), \
                            (outcome, month, key)
                    else:
                        assert shown.startswith("<0.1%")
                    beyond = month > model_info["follow_up_months"][key.removeprefix("risk_if_")]
                    assert ("*" in shown) == beyond and ("(extrapolated)" in shown) == beyond
                assert points_value(rows[3][column]) == pytest.approx(100 * at["excess"],
                                                                      abs=rounding(100 * at["excess"]))
        assert "Extrapolated" in page.locator("#summary-note").inner_text()

        # Curves: one chart per outcome, a solid line per treatment and a dashed one beyond its follow-up.
        charts = page.locator("svg.chart")
        assert charts.count() == len(prediction["outcomes"])
        for k in range(charts.count()):
            for treatment, months in model_info["follow_up_months"].items():
                solid = charts.nth(k).locator(f"path.line.{treatment}:not(.extrapolated)")
                dashed = charts.nth(k).locator(f"path.line.extrapolated.{treatment}")
                assert solid.count() == 1
                assert dashed.count() == (1 if months < 60 else 0)
            assert charts.nth(k).get_attribute("role") == "img"

        # The waterfalls, at month 48 by default: each input's part in points, "not provided" marked.
        assert set(prediction["not_provided"]) == set(FEATURE_NAMES) - set(PATIENT) - {"treatment"}
        tables = page.locator("table.waterfall")
        assert tables.count() == len(prediction["outcomes"])
        for k, scores in enumerate(prediction["outcomes"].values()):
            at = scores["risks"][47]
            assert "by month 48" in tables.nth(k).locator("caption").inner_text()
            shares = {s.name: s.share for s in risk_shares(at["base_value"], at["shap"], at["risk"], at["reference_risk"])}
            # Inputs left empty are folded into one row by default, their parts added up.
            folded = tables.nth(k).locator("tr[data-feature='not-provided']")
            unknown = sum(shares[name] for name in prediction["not_provided"])
            assert points_value(folded.locator("td").nth(1).text_content()) == pytest.approx(
                100 * unknown, abs=rounding(100 * unknown))
            assert f"Not provided ({len(prediction['not_provided'])} inputs)" in folded.locator("th").text_content()
        page.check("#show-unknown")
        for k, scores in enumerate(prediction["outcomes"].values()):
            at = scores["risks"][47]
            shares = {s.name: s.share for s in risk_shares(at["base_value"], at["shap"], at["risk"], at["reference_risk"])}
            rows = tables.nth(k).locator("tr[data-feature]").evaluate_all(
                "rows => rows.map(r => [r.dataset.feature, ...[...r.cells].map(c => c.textContent)])")
            assert [r[0] for r in rows] == [s.name for s in risk_shares(at["base_value"], at["shap"], at["risk"], at["reference_risk"])]
            for name, _, value, change, log_value in rows:
                assert (value == "not provided") == (name in prediction["not_provided"]), name
                assert points_value(change) == pytest.approx(100 * shares[name], abs=rounding(100 * shares[name])), name
                assert float(log_value.replace("−", "-")) == pytest.approx(at["shap"][name], abs=0.0005)
            assert sum(shares.values()) == pytest.approx(at["risk"] - at["reference_risk"], abs=1e-12)
        assert not page.locator("table.waterfall td.log").first.is_visible()
        page.check("#show-log")
        assert page.locator("table.waterfall td.log").first.is_visible()

        warnings = page.locator("#warnings").inner_text()
        assert "Extrapolated: risks at 25–60 months on interferon beta-1a" in warnings
        assert "Not provided" in warnings
        assert guard.outside == [] and guard.errors == []


def test_the_waterfall_follows_the_chosen_month(chromium, shared_server, answer):
    scores = answer["predictions"][0]["outcomes"]["thyroid"]["risks"]
    with guarded_page(chromium) as (page, guard):
        open_page(page, shared_server["url"])
        fill(page)
        submit(page)
        requests = len(guard.requests)
        page.fill("#explain-month", "12")
        caption = page.locator("table.waterfall caption").first.inner_text()
        assert "by month 12" in caption
        assert f"to {100 * scores[11]['risk']:.1f}% for this patient" in caption
        page.fill("#explain-month", "61")
        assert "from 1 to 60" in page.locator("#waterfalls").inner_text()
        assert len(guard.requests) == requests  # every month 1-60 came with the one answer
        assert guard.outside == [] and guard.errors == []


def test_bad_input_is_named_beside_its_field(chromium, shared_server):
    with guarded_page(chromium) as (page, guard):
        open_page(page, shared_server["url"])
        fill(page, {**FORM, "age_years": "400", "disease_duration_years": "2,5", "il21_assay": ""})
        page.click("#submit")
        summary = page.locator("#error-summary")
        assert summary.is_visible()
        assert page.evaluate("document.activeElement.id") == "error-summary"
        for name, text in (("age_years", "possible values are 0–120 years"), ("disease_duration_years", "not a number"),
                           ("il21_assay", "required when IL-21 is given")):
            assert text in page.locator(f"#e-{name}").inner_text(), name
            assert page.get_attribute(f"#f-{name}", "aria-invalid") == "true"
            assert "e-" + name in page.get_attribute(f"#f-{name}", "aria-describedby")
        summary.locator("a[href='#f-age_years']").click()
        assert page.evaluate("document.activeElement.id") == "f-age_years"
        assert not any(url.endswith("/predict") for url in guard.requests)  # caught before asking the server
        assert guard.outside == [] and guard.errors == []


def test_the_servers_own_checks_are_shown_beside_the_field(chromium, shared_server):
    """A page whose copy of the ranges lets a value through still names the field the server refused."""
    with guarded_page(chromium) as (page, guard):
        def looser_ranges(route):
            described = route.fetch().json()
            for feature in described["features"]:
                if feature["name"] == "edss":
                    feature["possible"]["high"] = 100
            route.fulfill(json=described)

        page.route("**/model", looser_ranges)
        open_page(page, shared_server["url"])
        fill(page, {**FORM, "edss": "12"})
        with page.expect_response("**/predict") as refused:
            page.click("#submit")
        assert refused.value.status == 400
        page.wait_for_selector("#error-summary:not([hidden])")
        assert "less than or equal to 10" in page.locator("#e-edss").inner_text()
        assert "EDSS at baseline" in page.locator("#error-list").inner_text()
        assert guard.outside == []


def test_keyboard_order_and_accessibility(chromium, shared_server):
    from axe_playwright_python.sync_playwright import Axe

    with guarded_page(chromium) as (page, guard):
        open_page(page, shared_server["url"])
        order = []
        for _ in range(len(FEATURES) + 3):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id"))
        assert order == ["skip", *(f"f-{f.name}" for f in FEATURES), "submit", "clear"]
        assert page.evaluate("document.documentElement.lang") == "en"
        unlabelled = page.evaluate("[...document.querySelectorAll('input, select')]"
                                   ".filter(e => !e.hidden && e.labels.length === 0).map(e => e.id)")
        assert unlabelled == []
        before = Axe().run(page)
        assert before.violations_count == 0, before.generate_report()
        fill(page)
        submit(page)
        page.check("#show-log")
        after = Axe().run(page)
        assert after.violations_count == 0, after.generate_report()
        assert guard.outside == [] and guard.errors == []


def test_a_phone_width_screen_needs_no_sideways_scrolling(chromium, shared_server):
    with guarded_page(chromium, width=390, height=844) as (page, guard):
        open_page(page, shared_server["url"])
        fill(page)
        submit(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for chart in page.locator("svg.chart").all():
            box = chart.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        # The waterfall is compact: no sideways scrolling inside it either, each value under its input's name.
        for region in page.locator("#waterfalls .scroll").all():
            assert region.evaluate("r => r.scrollWidth <= r.clientWidth")
        assert page.locator("table.waterfall td.value").first.is_hidden()
        assert page.locator("table.waterfall .inline-value").first.is_visible()
        from axe_playwright_python.sync_playwright import Axe

        checked = Axe().run(page)
        assert checked.violations_count == 0, checked.generate_report()
        assert guard.outside == [] and guard.errors == []


def test_the_page_asks_for_the_token_and_sends_it(chromium, token_server):
    token_server = token_server["url"]
    with guarded_page(chromium) as (page, guard):
        sent = []
        page.on("request", lambda request: sent.append(request.headers.get("authorization"))
                if request.url.endswith("/predict") else None)
        page.goto(f"{token_server}/")
        page.wait_for_selector("#token-form:not([hidden])")
        assert page.locator("#patient-form").is_hidden()
        assert "issued by whoever runs this autorisk server" in page.locator("#token-help").inner_text()
        assert "AUTORISK_API_TOKEN" in page.locator("#token-help").inner_text()
        assert page.evaluate("document.activeElement.id") == "token"
        page.fill("#token", TOKEN + "-wrong")
        page.keyboard.press("Enter")
        page.wait_for_selector("#token-error:has-text('did not accept')")
        page.fill("#token", TOKEN)
        page.keyboard.press("Enter")
        page.wait_for_selector("#f-age_years")
        fill(page)
        submit(page)
        assert sent == [f"Bearer {TOKEN}"]
        # The API docs in the same tab use the token the page was given.
        page.goto(f"{token_server}/docs")
        page.wait_for_selector(".opblock")
        assert guard.outside == []


def test_the_api_docs_load_nothing_from_outside(chromium, shared_server):
    with guarded_page(chromium) as (page, guard):
        page.goto(f"{shared_server['url']}/docs")
        page.wait_for_selector(".opblock")
        assert "/predict" in page.locator("#swagger-ui").inner_text()
        assert "autorisk" in page.locator(".info .title").inner_text()
        assert RESEARCH_NOTICE in page.locator("body").inner_text()
        assert "googletagmanager" not in page.content()
        assert all(url.startswith(shared_server["url"]) for url in guard.requests)
        assert guard.outside == [] and guard.errors == []


def test_the_page_draws_from_the_same_api_as_any_client(chromium, shared_server, answer):
    with guarded_page(chromium) as (page, guard):
        bodies = []
        page.on("request", lambda request: bodies.append(json.loads(request.post_data))
                if request.url.endswith("/predict") else None)
        open_page(page, shared_server["url"])
        fill(page)
        submit(page)
        # The treatment under consideration is always sent: the form preselects the schema's default.
        assert bodies == [{"patients": [{**PATIENT, "treatment": "alemtuzumab"}], "horizons_months": MONTHS,
                           "contrast": True}]
        thyroid = answer["predictions"][0]["outcomes"]["thyroid"]["risks"][47]
        assert math.isclose(thyroid["base_value"] + sum(thyroid["shap"].values()),
                            float(explained_value(thyroid["risk"], thyroid["scale"], thyroid.get("timing_share"))),
                            abs_tol=1e-9)
        assert guard.outside == []
