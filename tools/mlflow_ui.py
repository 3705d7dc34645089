"""The MLflow UI as a researcher meets it, in a real browser: screenshots for docs/mlflow-ui.md.

Starts ``mlflow ui`` on 127.0.0.1 against a store, opens it in Chromium driven by Playwright, and
saves the experiments list, two experiments' runs side by side, a family's run page and the compare
view of that family's runs in both experiments.
The browser may reach 127.0.0.1 and nothing else: every other request is aborted, so no page
loads fonts, scripts or telemetry from the internet.

Needs Playwright for Python (the ``dev`` extra) and a Chromium (Debian: ``apt-get install
chromium``; Playwright's own browser download is not used). Usage, after training both experiments
into the store::

    .venv/bin/python tools/mlflow_ui.py --store sqlite:///mlflow.db --out docs/images \\
        --experiment il21-value --compare-with il21-no-effect --family cox-xgboost
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.servers import free_port, running_server
from tools.browser import CHROMIUM, LOOPBACK, chromium, chromium_path, guarded_page

# The button beside a parent run's name in the runs table that shows its nested runs.
EXPAND_BUTTON = 'button[data-component-id*="runnamecellrenderer"]'


@contextmanager
def mlflow_ui(store: str, log: Path, timeout_s: float = 120, *, options: Sequence[str] = (), port: int | None = None,
              env: dict[str, str] | None = None) -> Iterator[str]:
    """``mlflow ui`` (MLflow's tracking server) for ``store`` on loopback, at ``port`` or a free one, with
    further server ``options``; yields its URL, stops it and its children after
    (:func:`pipelines.servers.running_server`)."""
    port = free_port(LOOPBACK) if port is None else port
    url = f"http://{LOOPBACK}:{port}"
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host", LOOPBACK,
               "--port", str(port), "--workers", "1", *options]
    with running_server(command, ready_url=f"{url}/health", log=log, env=env, timeout_s=timeout_s):
        yield url


@contextmanager
def loopback_page(width: int = 1500, height: int = 1000) -> Iterator:
    """A Playwright page in headless Chromium that can reach 127.0.0.1 only; yields ``(page, blocked)``,
    ``blocked`` the list of URLs it was refused."""
    with chromium() as launched, guarded_page(launched, width=width, height=height) as (page, guard):
        yield page, guard.outside


def close_side_panels(page) -> None:
    """Close the assistant panel the UI may open beside a page (it hides half of it)."""
    for name in ("Close", "close"):
        button = page.get_by_role("button", name=name)
        if button.count():
            button.first.click()
            return


def show(page, url: str, expect: str, timeout_s: float = 60) -> None:
    """Open ``url`` and wait until the page shows ``expect`` and has stopped changing.

    The UI polls its server, so the network never goes idle; the page is ready when the text
    asked for is there and the visible text stays the same for a second (tables and charts fill
    in after the first data arrive).
    """
    page.goto(url, wait_until="load")
    page.get_by_text(expect, exact=False).first.wait_for(timeout=timeout_s * 1000)
    previous, deadline = None, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = page.inner_text("body")
        if text == previous and "Loading" not in text:
            return
        previous = text
        page.wait_for_timeout(1000)


def model_training_view(page) -> None:
    """Switch the UI's sidebar from its GenAI view to model training (runs, charts, compare)."""
    toggle = page.get_by_text("Model training", exact=True)
    if toggle.count():
        toggle.first.click()
        page.wait_for_timeout(500)


def run_ids(store: str, experiment: str, family: str) -> tuple[str, str]:
    """``(experiment_id, run_id)`` of ``<experiment>/<family>``, the newest such run."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"no experiment {experiment!r} in {store}: train it first "
                         f"(autorisk train --config experiments/{experiment}.yaml)")
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`autorisk.family` = '{family}' "
                              "and tags.`autorisk.role` = 'model'", order_by=["attributes.start_time DESC"],
                              max_results=1)
    if not runs:
        raise SystemExit(f"no {family} run in experiment {experiment!r}")
    return found.experiment_id, runs[0].info.run_id


def tick_experiments(page, names) -> None:
    """On the experiments list, tick the experiments called ``names`` and press Compare."""
    for name in names:
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
        row.get_by_role("checkbox").check()
    page.get_by_role("button", name="Compare").click()


def screenshots(store: str, out: Path, experiment: str, compare_with: str, family: str) -> list[Path]:
    """The experiments list, the two experiments' runs (nested rows expanded), a family's run page and the
    compare view of that family's runs in both experiments, as PNG files under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    first_experiment, first_run = run_ids(store, experiment, family)
    second_experiment, second_run = run_ids(store, compare_with, family)
    written = []
    with mlflow_ui(store, out / "mlflow-ui.log") as url, loopback_page() as (page, blocked):
        def save(name: str, full_page: bool = True) -> None:
            close_side_panels(page)
            page.screenshot(path=out / name, full_page=full_page)
            written.append(out / name)

        show(page, f"{url}/#/experiments", experiment, timeout_s=180)
        model_training_view(page)
        show(page, f"{url}/#/experiments", experiment, timeout_s=180)
        save("mlflow-experiments.png", full_page=False)
        tick_experiments(page, (experiment, compare_with))
        # Each experiment's parent run lists its families when expanded (their trials one level further).
        page.locator(EXPAND_BUTTON).first.wait_for(timeout=180_000)
        expanders = page.locator(EXPAND_BUTTON)
        for index in reversed(range(expanders.count())):  # from the last: a row's children appear below it
            expanders.nth(index).click()
        page.get_by_text(f"{experiment}/{family}").first.wait_for(timeout=180_000)
        page.wait_for_timeout(2000)
        save("mlflow-two-experiments.png", full_page=False)
        show(page, f"{url}/#/experiments/{first_experiment}/runs/{first_run}", "ΔAUROC", timeout_s=180)
        more = page.get_by_text("Show more", exact=True)  # the UI folds a long description
        if more.count():
            more.first.click()
            page.wait_for_timeout(1000)
        save("mlflow-run.png")
        show(page, f'{url}/#/compare-runs?runs=["{first_run}","{second_run}"]'
                   f'&experiments=["{first_experiment}","{second_experiment}"]', "Run details", timeout_s=180)
        page.get_by_text("Show diff only").first.click()  # the parameters that differ: the simulator's IL-21 effect
        page.wait_for_timeout(1000)
        save("mlflow-compare.png")
        print(f"requests refused (not {LOOPBACK}): {len(blocked)}")
    (out / "mlflow-ui.log").unlink()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--experiment", default="il21-value")
    parser.add_argument("--compare-with", default="il21-no-effect")
    parser.add_argument("--family", default="cox-xgboost")
    args = parser.parse_args()
    if chromium_path() is None:
        raise SystemExit(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set AUTORISK_CHROMIUM)")
    for path in screenshots(args.store, args.out, args.experiment, args.compare_with, args.family):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
