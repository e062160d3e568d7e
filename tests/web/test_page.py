"""The staff web page at ``/``, driven in real Chromium against real servers on loopback.

What the page shows is compared with what the JSON API says for the same question
(non-streamed ``POST /chat`` and ``GET /documents/{id}/text``), so these tests prove the
page renders the server's answer, citations and spans exactly, not just that it renders.
"""

from __future__ import annotations

import json

import httpx
import pytest

WELDING_Q = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"
DECLINED_Q = "2031년 뿌리산업 예산은 얼마야?"
FIRST_Q = "2025년 뿌리산업 예산은?"
FOLLOW_Q = "그럼 2024년에는?"


def ask(page, question: str) -> object:
    """Type ``question`` into the ask box, press Enter, wait until its turn is complete;
    returns the turn's locator (the newest turn)."""
    n = page.locator(".turn").count()
    page.fill("#question", question)
    page.press("#question", "Enter")
    turn = page.locator(".turn").nth(n)
    turn.locator(".answer").wait_for()
    page.wait_for_function("n => document.querySelectorAll('.turn.complete, .turn.failed').length > n", arg=n)
    assert "failed" not in (turn.get_attribute("class") or ""), turn.inner_text()
    return turn


def chat_requests(page) -> list[dict]:
    """Record the JSON bodies of the page's POST /chat requests (list filled as they go)."""
    bodies: list[dict] = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data))
            if r.method == "POST" and r.url.endswith("/chat") else None)
    return bodies


def assert_clean(page) -> None:
    """No request left loopback, none failed, no script error."""
    assert page.blocked == [], f"the page reached outside loopback: {page.blocked}"
    assert page.failures == [], page.failures
    assert page.errors == [], page.errors


def open_page(new_page, url: str, **size):
    page = new_page(**size)
    page.goto(url + "/")
    page.wait_for_function("() => window.__ragTimings !== undefined")
    return page


# ----------------------------------------------------------------------------- answers


def test_streamed_answer_with_citations_opens_the_exact_quote(new_page, server, api):
    expected = api.post("/chat", json={"question": WELDING_Q}).json()
    assert expected["answerable"] and expected["citations"]
    docs = {d["doc_id"]: d for d in api.get("/documents").json()}

    page = open_page(new_page, server.url)
    bodies = chat_requests(page)
    streams = []
    page.on("response", lambda r: streams.append(r.headers.get("content-type", ""))
            if r.url.endswith("/chat") else None)
    turn = ask(page, WELDING_Q)

    # streamed: one POST /chat with "stream": true, answered as an event stream
    assert bodies == [{"question": WELDING_Q, "stream": True}]
    assert streams and streams[0].startswith("text/event-stream")
    # the answer as the API gives it, in a polite live region, [n] markers as links
    answer = turn.locator(".answer")
    assert answer.get_attribute("aria-live") == "polite"
    assert answer.get_attribute("aria-busy") == "false"
    assert answer.text_content() == expected["answer"]
    refs = turn.locator(".cite-ref")
    assert refs.count() == len(expected["citations"])
    assert refs.nth(0).text_content() == "[1]"
    # each citation: title, publisher, date (from GET /documents) and section path
    items = turn.locator(".citation")
    assert items.count() == len(expected["citations"])
    for i, c in enumerate(expected["citations"]):
        item = items.nth(i)
        meta = docs[c["doc_id"]]
        assert item.locator("button.open-doc").text_content() == f"[{i + 1}] {meta['title']}"
        assert item.locator(".meta").text_content() == f"{meta['publisher']} · {meta['date']}"
        assert item.locator(".section-path").text_content() == c["section"]
        assert item.locator(".quote").text_content() == c["quote"]

    # [1] moves focus to its citation
    refs.nth(0).click()
    first = items.nth(0).locator("button.open-doc")
    assert first.evaluate("el => el === document.activeElement")

    # the citation opens the document, scrolled to the quote, highlighted by offsets
    first.click()
    mark = page.locator("#doc-text mark")
    mark.wait_for()
    c = expected["citations"][0]
    assert mark.count() == 1
    assert mark.text_content() == c["quote"]
    span = api.get(f"/documents/{c['doc_id']}/text", params={"start": c["quote_start"], "end": c["quote_end"]})
    assert mark.text_content() == span.json()["text"]
    assert (mark.get_attribute("data-start"), mark.get_attribute("data-end")) == (str(c["quote_start"]), str(c["quote_end"]))
    # the whole document is there, character for character
    whole = api.get(f"/documents/{c['doc_id']}/text").json()["text"]
    assert page.locator("#doc-text").text_content() == whole
    assert page.locator("#doc-title").text_content() == docs[c["doc_id"]]["title"]
    assert page.locator("#doc-title").evaluate("el => el === document.activeElement")  # focus moved into the pane
    # scrolled: the mark is inside the visible part of the text box
    box, text_box = mark.bounding_box(), page.locator("#doc-text").bounding_box()
    assert text_box["y"] <= box["y"] and box["y"] + box["height"] <= text_box["y"] + text_box["height"]

    # the section tree: the cited section is marked current; clicking another scrolls to it
    current = page.locator("#toc-tree [aria-current]")
    assert current.count() == 1
    assert c["section"].split(" > ")[-1] == current.text_content()
    assert page.locator("#doc-toc").evaluate("d => d.open")  # open by default on a wide screen
    target = page.locator("#toc-tree .toc-link").first
    start = int(target.get_attribute("data-start"))
    assert start < c["quote_start"]
    before = page.locator("#doc-text").evaluate("el => el.scrollTop")
    target.click()
    visible = page.locator("#doc-text").evaluate(
        """(el, offset) => {
            const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
            let pos = 0, node;
            while ((node = walker.nextNode())) {
                if (offset < pos + node.data.length) break;
                pos += node.data.length;
            }
            const r = document.createRange();
            r.setStart(node, offset - pos); r.setEnd(node, offset - pos + 1);
            const a = r.getClientRects()[0], b = el.getBoundingClientRect();
            return a.top >= b.top && a.bottom <= b.bottom;
        }""", start)
    assert visible and page.locator("#doc-text").evaluate("el => el.scrollTop") < before

    assert not page.locator("#main").evaluate("el => el.inert")  # beside the answer on a wide screen
    # Esc closes the pane and gives focus back to the citation that opened it
    page.keyboard.press("Escape")
    assert page.locator("#doc-pane").is_hidden()
    assert first.evaluate("el => el === document.activeElement")

    timings = page.evaluate("window.__ragTimings")
    assert len(timings) == 1 and timings[0]["ok"] and timings[0]["question"] == WELDING_Q
    assert_clean(page)


def test_decline_shows_the_reason_and_the_closest_passages(new_page, server, api):
    expected = api.post("/chat", json={"question": DECLINED_Q}).json()
    assert expected["answerable"] is False and expected["reason"] and expected["related"]

    page = open_page(new_page, server.url)
    turn = ask(page, DECLINED_Q)
    assert turn.get_attribute("data-answerable") == "false"
    assert "declined" in turn.get_attribute("class")
    assert turn.locator(".answer").text_content() == expected["answer"]
    assert turn.locator(".reason").text_content() == "까닭: " + expected["reason"]
    assert turn.locator(".citation").count() == 0
    related = turn.locator(".related-item")
    assert related.count() == len(expected["related"])
    for i, p in enumerate(expected["related"]):
        assert related.nth(i).locator(".section-path").text_content() == p["section"]
        assert related.nth(i).locator("button.open-doc").get_attribute("data-start") == str(p["start"])

    # a related passage opens in the pane, highlighted exactly
    related.nth(0).locator("button.open-doc").click()
    mark = page.locator("#doc-text mark")
    mark.wait_for()
    p = expected["related"][0]
    assert mark.text_content() == p["text"]
    assert_clean(page)


def test_followup_keeps_the_conversation_and_shows_how_it_was_understood(new_page, server, api):
    page = open_page(new_page, server.url)
    bodies = chat_requests(page)
    first = ask(page, FIRST_Q)
    assert first.locator(".query-note").is_hidden()  # understood as typed: nothing to say
    second = ask(page, FOLLOW_Q)

    # the follow-up was sent as the conversation so far
    assert bodies[0] == {"question": FIRST_Q, "stream": True}
    sent = bodies[-1]
    assert "question" not in sent and sent["stream"] is True
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][0]["content"] == FIRST_Q
    assert sent["messages"][1]["content"] == first.locator(".answer").text_content()
    assert sent["messages"][2]["content"] == FOLLOW_Q

    # and the page shows the query the server searched with
    expected = api.post("/chat", json={"messages": sent["messages"]}).json()
    assert expected["query"] != FOLLOW_Q and "2024" in expected["query"]
    note = second.locator(".query-note")
    assert note.is_visible()
    assert note.text_content() == "검색한 질문: " + expected["query"]
    assert second.get_attribute("data-query") == expected["query"]
    assert second.locator(".answer").text_content() == expected["answer"]

    # 새 대화 clears the conversation: the next question goes alone
    page.get_by_role("button", name="새 대화").click()
    assert page.locator(".turn").count() == 0
    assert page.locator("#question").evaluate("el => el === document.activeElement")
    ask(page, FOLLOW_Q)
    assert bodies[-1] == {"question": FOLLOW_Q, "stream": True}
    assert page.locator(".turn .query-note").is_hidden()
    assert_clean(page)


# ----------------------------------------------------------------------------- small screens


def _no_horizontal_overflow(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide at a 360 px viewport"


def _in_viewport(locator, page) -> bool:
    box = locator.bounding_box()
    vp = page.viewport_size
    return (box is not None and box["x"] >= 0 and box["x"] + box["width"] <= vp["width"]
            and box["y"] >= 0 and box["y"] + box["height"] <= vp["height"])


def test_360_px_wide_page_fits_and_the_pane_covers_the_screen(new_page, server, artifacts):
    page = open_page(new_page, server.url, width=360, height=740)
    _no_horizontal_overflow(page)
    assert _in_viewport(page.locator("#question"), page)
    assert _in_viewport(page.locator("#ask-button"), page)
    turn = ask(page, WELDING_Q)
    _no_horizontal_overflow(page)
    assert turn.locator(".answer").is_visible()
    assert _in_viewport(page.locator("#question"), page)  # the ask box stays on screen
    turn.locator(".answer").scroll_into_view_if_needed()
    assert _in_viewport(turn.locator(".answer"), page)
    page.screenshot(path=str(artifacts / "page-360-answer.png"), full_page=True)

    turn.locator("button.open-doc").first.click()
    mark = page.locator("#doc-text mark")
    mark.wait_for()
    pane = page.locator("#doc-pane").bounding_box()
    assert (pane["x"], pane["y"], pane["width"], pane["height"]) == (0, 0, 360, 740)  # an overlay
    assert _in_viewport(page.locator("#pane-close"), page)
    assert _in_viewport(mark, page)
    _no_horizontal_overflow(page)
    page.screenshot(path=str(artifacts / "page-360-pane.png"))
    assert page.locator("#main").evaluate("el => el.inert")  # a modal overlay: the page under it is out of reach
    page.locator("#pane-close").click()
    assert page.locator("#doc-pane").is_hidden()
    assert not page.locator("#main").evaluate("el => el.inert")
    assert turn.locator("button.open-doc").first.evaluate("el => el === document.activeElement")
    assert_clean(page)


# ----------------------------------------------------------------------------- API key


def test_page_asks_for_the_api_key_and_keeps_it_for_the_tab(new_page, keyed_server, api_key):
    page = new_page()
    page.goto(keyed_server.url + "/")  # the page itself is public
    key_field = page.get_by_label("API 키", exact=True)
    key_field.wait_for()  # GET /documents answered 401: the page asks
    assert key_field.evaluate("el => el === document.activeElement")

    # a wrong key: asked again, with the reason
    key_field.fill("틀린-키")
    page.get_by_role("button", name="확인").click()
    page.wait_for_function("() => document.getElementById('key-error').textContent.includes('wrong API key')")
    assert page.locator("#key-panel").is_visible()

    key_field.fill(api_key)
    page.get_by_role("button", name="확인").click()
    page.locator("#key-panel").wait_for(state="hidden")
    turn = ask(page, WELDING_Q)
    assert "광주" in turn.locator(".answer").text_content()
    assert turn.locator(".citation").count() > 0
    assert "관계부처 합동" in turn.locator(".citation .meta").first.text_content()  # /documents came too
    assert page.evaluate("sessionStorage.getItem('rag.apiKey')") == api_key
    assert page.evaluate("localStorage.length") == 0

    # the same tab after a reload: no question asked, the key is sent again
    page.reload()
    page.wait_for_function("() => window.__ragTimings !== undefined")
    turn = ask(page, WELDING_Q)
    assert page.locator("#key-panel").is_hidden()
    assert "광주" in turn.locator(".answer").text_content()
    assert page.blocked == [] and page.errors == []
    assert all(f.startswith("401 ") for f in page.failures), page.failures  # only the asks for the key


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/app.css"])
def test_page_files_are_public_and_utf8(keyed_server, path):
    r = httpx.get(keyed_server.url + path, timeout=30)
    assert r.status_code == 200
    assert "charset=utf-8" in r.headers["content-type"]
    kind = {"/": "text/html", "/static/app.js": "text/javascript", "/static/app.css": "text/css"}[path]
    assert r.headers["content-type"].startswith(kind)
    if path != "/static/app.css":
        assert "질문" in r.text  # Korean as UTF-8, not mangled
    assert httpx.get(keyed_server.url + "/documents", timeout=30).status_code == 401  # data stays keyed
