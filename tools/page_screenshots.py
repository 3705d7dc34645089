"""The pictures of docs/page.md: the page before and after a submit (desktop and phone width), the page as
it prints (one A4 page), a batch report, and an ``autorisk explain`` waterfall. Run ``make screenshots`` after ``make demo``: it serves
the champion of the project's MLflow store and drives Debian's Chromium, blocking any request that is
not to 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipelines.servers import ServerError, free_port, running_server  # noqa: E402 - run as a script from the root
from tools.browser import chromium, fill_form, guarded_page  # noqa: E402 - run as a script from the root

IMAGES = ROOT / "docs" / "images"
REPORT = ROOT / "outputs" / "clinic_scores.report.html"
# A patient as a clinician might enter one: some inputs unknown, to show "not provided".
FORM = {"age_years": "34", "sex": "female", "disease_duration_years": "2.5", "relapses_prior_2y": "2",
        "il21_pg_ml": "620", "il21_assay": "legacy_elisa", "thyroid_antibodies": "true", "smoker": "false"}


def serve(port: int, log: Path):
    """``autorisk serve`` on the project's store at ``port``, one worker (:func:`pipelines.servers.running_server`)."""
    environment = {**os.environ, "AUTORISK_WORKERS": "1", "BENTOML_DO_NOT_TRACK": "true"}
    return running_server([sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port)],
                          ready_url=f"http://127.0.0.1:{port}/readyz", log=log, env=environment, cwd=ROOT,
                          stop_timeout_s=30)


def print_page(page) -> None:
    """The page as the browser prints it (A4, PDF), drawn as docs/images/page-print.png by poppler's pdftoppm."""
    import shutil
    import tempfile

    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        raise SystemExit("pdftoppm is missing (Debian: apt-get install poppler-utils; `make browser` does it)")
    with tempfile.TemporaryDirectory() as folder:
        pdf = Path(folder) / "page.pdf"
        page.pdf(path=str(pdf), format="A4", print_background=True)
        subprocess.run([pdftoppm, "-png", "-r", "80", "-singlefile", str(pdf), str(IMAGES / "page-print")], check=True)
    print("printed: the first A4 page as page-print.png (the browser test checks that there is one)")


def take_pictures(url: str) -> list[str]:
    """The page before and after a submit (desktop and phone), its print, and the batch report; returns the
    requests refused (not to 127.0.0.1)."""
    outside: list[str] = []
    with chromium() as launched:
        for name, width in (("page", 1280), ("page-phone", 390)):
            with guarded_page(launched, width=width, height=900) as (page, guard):
                page.goto(f"{url}/")
                page.wait_for_selector("#f-age_years")
                if width > 600:
                    page.screenshot(path=IMAGES / f"{name}-before.png", full_page=True)
                fill_form(page, FORM)
                page.click("#submit")
                page.wait_for_selector("body[data-drawn-ms]", state="attached")
                print(f"{name}: submit answered and drawn in {page.get_attribute('body', 'data-drawn-ms')} ms")
                page.locator("#results").screenshot(path=IMAGES / f"{name}-after.png")
                if width > 600:
                    print_page(page)
                outside += guard.outside
        with guarded_page(launched, width=1000, height=900, allow_files=True) as (page, guard):
            page.goto(REPORT.as_uri())
            page.screenshot(path=IMAGES / "batch-report.png", full_page=True)
            outside += guard.outside
    return outside


def main() -> None:
    if not REPORT.is_file():
        raise SystemExit(f"{REPORT} is missing: run `make demo` first")
    IMAGES.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pipelines.cli", "explain", "--age-years", "34", "--sex", "female",
                    "--disease-duration-years", "2.5", "--relapses-prior-2y", "2", "--il21-pg-ml", "620",
                    "--il21-assay", "legacy_elisa", "--thyroid-antibodies", "yes", "--smoker", "no",
                    "--out", str(IMAGES / "explain-waterfall.svg")], cwd=ROOT, check=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        with serve(port, ROOT / "outputs" / "screenshots-server.log"):
            outside = take_pictures(url)
    except ServerError as error:
        raise SystemExit(f"the server did not start: {error}") from error
    if outside:
        raise SystemExit(f"requests outside 127.0.0.1 were attempted: {outside}")
    for path in sorted(IMAGES.iterdir()):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
