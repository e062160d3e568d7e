"""``/docs`` (Swagger UI) and ``/redoc`` render in real Chromium with nothing but loopback
reachable: every asset is served by the app (``rag/api/static/vendor``), none by a CDN.
Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "rag" / "api" / "static"


def _offline_clean(page) -> None:
    assert page.blocked == [], f"the docs reached outside loopback: {page.blocked}"
    assert page.failures == [], page.failures
    assert page.errors == [], page.errors


def test_swagger_ui_renders_offline(new_page, keyed_server, artifacts):
    page = new_page()
    page.goto(keyed_server.url + "/docs")  # public, even on a server with a key
    page.locator(".swagger-ui .opblock").first.wait_for()
    ops = page.locator(".swagger-ui .opblock")
    assert ops.count() >= 6  # /chat, /search, /health, /documents, /documents/{id}, /documents/{id}/text
    paths = page.locator(".swagger-ui .opblock-summary-path").all_text_contents()
    assert {"/chat", "/search", "/health", "/documents"} <= {p.replace("\u200b", "") for p in paths}
    assert "한국어 정책문서 Q&A API" in page.locator(".swagger-ui .info .title").text_content()
    assert not any(p.replace("\u200b", "") in ("/", "/docs", "/redoc") for p in paths)  # the page is not an API
    page.screenshot(path=str(artifacts / "docs-swagger.png"), full_page=True)
    _offline_clean(page)


def test_redoc_renders_offline(new_page, keyed_server, artifacts):
    page = new_page()
    page.goto(keyed_server.url + "/redoc")
    page.get_by_role("heading", name="한국어 정책문서 Q&A API").first.wait_for()
    page.get_by_role("heading", name="문서 근거가 있는 답변 (대화·스트리밍 지원)").wait_for()  # /chat, in Korean
    assert page.locator("[data-section-id]").count() >= 6
    page.screenshot(path=str(artifacts / "docs-redoc.png"))
    _offline_clean(page)


@pytest.mark.parametrize("path, kind", [
    ("/static/vendor/swagger-ui/swagger-ui-bundle.js", "text/javascript"),
    ("/static/vendor/swagger-ui/swagger-ui.css", "text/css"),
    ("/static/vendor/swagger-ui/favicon-32x32.png", "image/png"),
    ("/static/vendor/redoc/redoc.standalone.js", "text/javascript"),
    ("/static/favicon.svg", "image/svg+xml"),
])
def test_vendored_assets_are_served_with_their_types(keyed_server, path, kind):
    r = httpx.get(keyed_server.url + path, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert r.content == (STATIC / path.removeprefix("/static/")).read_bytes()


def test_docs_html_points_only_at_the_app():
    """No CDN anywhere in what the app serves as HTML, nor in the page's files."""
    from fastapi.testclient import TestClient

    from rag.api import create_app

    client = TestClient(create_app())
    for path in ("/", "/docs", "/redoc"):
        html = client.get(path).text
        assert "http://" not in html and "https://" not in html, path
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, name


def test_package_data_ships_every_static_file():
    """A non-editable install carries the page and the vendored assets: every file under
    rag/api/static matches a package-data glob of pyproject.toml."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["rag"]
    covered = {p for g in globs for p in (ROOT / "rag").glob(g) if p.is_file()}
    files = {p for p in STATIC.rglob("*") if p.is_file()}
    assert files and files <= covered, sorted(str(p.relative_to(ROOT)) for p in files - covered)
    for must in ("index.html", "app.js", "app.css", "vendor/swagger-ui/LICENSE", "vendor/redoc/LICENSE"):
        assert (STATIC / must).is_file(), must
