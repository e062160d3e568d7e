"""Fixtures of the browser tests: real servers on loopback, real Chromium through Playwright.

- Two ``rag serve``-equivalent servers (``tests/live_server.py``, shared with tests/api)
  on the session's index: one open, one with ``RAG_API_KEY`` set. Started once
  for the session, on first use.
- Debian's Chromium (``/usr/bin/chromium``; ``RAGTEST_CHROMIUM`` overrides the path),
  driven by Playwright's Python API. Playwright's own browser downloads are never used.
  A missing browser or a missing playwright package FAILS the tests (no skip): the page's
  tests must not pass by not running. ``.ci/run`` installs Chromium on a fresh machine.
- Every page gets a network with nothing but loopback: any other request is aborted and
  recorded (``page.blocked``), and Chromium runs with a proxy that does not exist, so a
  CDN asset can neither load nor slip by unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from live_server import ROOT, running
from live_server import LiveServer as Server

CHROMIUM = os.environ.get("RAGTEST_CHROMIUM", "/usr/bin/chromium")
#: Playwright's wait for an answer or an element (ms): generous, the machine is shared.
UI_TIMEOUT_MS = 90_000
API_KEY = "웹-테스트-키-42"  # non-ASCII on purpose: the page must send it as UTF-8 bytes
#: Screenshots of the browser tests (git-ignored).
ARTIFACTS = ROOT / "tests" / "artifacts"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="session")
def web_servers(tmp_path_factory, project_index) -> Iterator[dict[str, Server]]:
    """``{"open": Server, "keyed": Server}``, started in parallel, stopped at the end."""
    with running(tmp_path_factory.mktemp("web-logs"), open={}, keyed={"RAG_API_KEY": API_KEY}) as started:
        yield started


@pytest.fixture(scope="session")
def server(web_servers) -> Server:
    """The open server."""
    return web_servers["open"]


@pytest.fixture(scope="session")
def keyed_server(web_servers) -> Server:
    """The server started with ``RAG_API_KEY``."""
    return web_servers["keyed"]


@pytest.fixture(scope="session")
def api_key() -> str:
    """The key the keyed server wants."""
    return API_KEY


@pytest.fixture(scope="session")
def api(server) -> Iterator[httpx.Client]:
    """An HTTP client on the open server, to compare the page with the JSON API."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _require_browser() -> None:
    """Fail (never skip) when the browser tests cannot run, saying how to fix it."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the browser tests need the playwright package: scripts/setup-venv.sh test "
                    "(it is in the test extra of pyproject.toml)", pytrace=False)
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"the browser tests need Debian's Chromium at {CHROMIUM}: "
                    "apt-get install -y chromium (.ci/run does this), or set RAGTEST_CHROMIUM", pytrace=False)


@pytest.fixture(scope="module")
def browser():
    """Chromium launched by Playwright (one per test module: Playwright's sync API keeps
    its own event loop, so it is not left open across other modules' tests)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            # nothing but loopback can be reached: every other host goes to a proxy that
            # does not exist (Playwright's own proxy option would send loopback there too)
            args=["--disable-dev-shm-usage", "--proxy-server=http://127.0.0.1:9",
                  "--proxy-bypass-list=127.0.0.1;localhost;[::1]"],
        )
        try:
            yield b
        finally:
            b.close()


def is_loopback(url: str) -> bool:
    """Whether ``url`` is served by this machine (or is a data:/blob: URL)."""
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or (parts.hostname or "") in LOOPBACK


@pytest.fixture()
def new_page(browser) -> Iterator[Callable[..., object]]:
    """A factory of pages in fresh contexts (Korean locale); each page has ``blocked``
    (URLs it tried outside loopback, aborted), ``failures`` (HTTP >= 400 responses and
    failed requests, as strings) and ``errors`` (uncaught script errors)."""
    contexts = []

    def make(width: int = 1280, height: int = 860):
        ctx = browser.new_context(viewport={"width": width, "height": height}, locale="ko-KR")
        ctx.set_default_timeout(UI_TIMEOUT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        page.blocked, page.failures, page.errors = [], [], []

        def guard(route) -> None:
            if is_loopback(route.request.url):
                route.continue_()
            else:
                page.blocked.append(route.request.url)
                route.abort("internetdisconnected")

        ctx.route("**/*", guard)
        page.on("response", lambda r: page.failures.append(f"{r.status} {r.request.method} {r.url}")
                if r.status >= 400 else None)
        page.on("requestfailed", lambda r: page.failures.append(f"failed {r.method} {r.url}: {r.failure}"))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        return page

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """tests/artifacts/ (git-ignored), where the browser tests leave screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
