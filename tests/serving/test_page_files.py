"""The page's files: small, referring to nothing outside the server, served with a strict policy."""

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from serving.webpage import PAGE_DIR, PAGE_FILES

PAGE = ("index.html", "export.js", "app.js", "style.css")
LIMIT_BYTES = 200 * 1024
# The one absolute URL in a script: the SVG namespace, a name rather than a place anything is loaded from.
NAMESPACES = {"http://www.w3.org/2000/svg"}


class References(HTMLParser):
    """Every src and href of a document, with the tag it is on."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href"):
                self.found.append((tag, name, value))
            if name == "style" or name.startswith("on"):
                self.found.append((tag, name, value))
        self._in_script = tag == "script" and not dict(attrs).get("src")

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag):
        self._in_script = False


def references(name: str) -> References:
    parser = References()
    parser.feed((PAGE_DIR / name).read_text(encoding="utf-8"))
    return parser


def test_the_page_its_scripts_and_styles_weigh_at_most_200_kb():
    sizes = {name: (PAGE_DIR / name).stat().st_size for name in PAGE}
    print(f"\npage files: {sizes}, {sum(sizes.values()):,} bytes together")
    assert sum(sizes.values()) <= LIMIT_BYTES


@pytest.mark.parametrize("name", ["index.html", "docs.html"])
def test_every_src_and_href_stays_on_the_server(name):
    parser = references(name)
    assert parser.found, "no references found: the parser is not reading the page"
    assert parser.inline_scripts == 0  # the policy refuses inline scripts; the page has none
    for tag, attribute, value in parser.found:
        assert attribute in ("src", "href"), f"<{tag} {attribute}>: inline styles and handlers are refused by the policy"
        parts = urlsplit(value)
        assert parts.scheme in ("", "data") and not parts.netloc, f"<{tag} {attribute}={value!r}> leaves the server"
        if parts.scheme == "" and parts.path.startswith("page/"):
            assert parts.path.removeprefix("page/") in PAGE_FILES, value


@pytest.mark.parametrize("name", ["app.js", "export.js", "style.css", "docs.js", "docs.css"])
def test_scripts_and_styles_name_no_other_server(name):
    text = (PAGE_DIR / name).read_text(encoding="utf-8")
    assert set(re.findall(r"https?://[^\s\"')]+", text)) <= NAMESPACES
    assert "@import" not in text and "url(" not in text.replace("data:", "")
    assert "eval(" not in text and "new Function" not in text


@pytest.mark.integration
def test_the_server_sends_the_page_with_a_policy_that_refuses_other_sources(shared_server):
    url = shared_server["url"]
    page = httpx.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == (PAGE_DIR / "index.html").read_bytes()
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, media_type in PAGE_FILES.items():
        served = httpx.get(f"{url}/page/{name}", timeout=30)
        assert served.status_code == 200 and served.headers["content-type"].startswith(media_type)
        assert served.content == (PAGE_DIR / name).read_bytes()
    docs = httpx.get(f"{url}/docs", timeout=30)
    assert docs.status_code == 200 and "googletagmanager" not in docs.text
    assert "script-src 'self'" in docs.headers["content-security-policy"]


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/page/index.html", "/page/missing.js", "/page/..%2Fwebpage.py", "/page/"])
def test_nothing_else_of_the_folder_is_served(shared_server, path):
    response = httpx.get(f"{shared_server['url']}{path}", timeout=30)
    assert response.status_code == 404
    assert "import" not in response.text
