/*
 * The staff chat page: plain JavaScript, no build step, no third-party code.
 *
 * - POST /chat with "stream": true, read as server-sent events over fetch:
 *   citations → delta* → answer → done (or error). Older servers send no delta and only
 *   {answer, answerable} in `answer`; then the reason and related passages of a decline
 *   come from one non-streamed POST /chat.
 * - Follow-ups: once there is history the request carries `messages`; the `query` of the
 *   done event says how the question was understood.
 * - Citations open a document pane with the whole normalised text, the quote highlighted
 *   by offsets (text nodes and a <mark>, never innerHTML with document text).
 * - API key: on 401 the page asks for it, keeps it in sessionStorage and retries.
 * - window.__ragTimings gets one entry per answer: ms from submit to the first answer text
 *   put on the page (firstTextMs) and to the complete answer (completeMs), by
 *   performance.now(); the server's own timing_ms (serverMs) and the number of delta
 *   events (read by benchmarks/bench_page_ttft.py).
 */
(function () {
  "use strict";

  var KEY_STORAGE = "rag.apiKey";
  var MAX_MESSAGES = 50;          // rag/api/models.py MAX_MESSAGES
  var MAX_MESSAGE_CHARS = 8000;   // rag/api/models.py MAX_MESSAGE_CHARS

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    form: $("ask-form"), question: $("question"), askButton: $("ask-button"), askStatus: $("ask-status"),
    conversation: $("conversation"), emptyHint: $("empty-hint"), newChat: $("new-chat"),
    keyPanel: $("key-panel"), keyForm: $("key-form"), keyInput: $("api-key"), keyError: $("key-error"),
    pane: $("doc-pane"), paneClose: $("pane-close"), docTitle: $("doc-title"), docMeta: $("doc-meta"),
    docToc: $("doc-toc"), tocTree: $("toc-tree"), docLocation: $("doc-location"), docText: $("doc-text"),
    layout: $("layout"), main: $("main"), header: document.querySelector("header.top")
  };
  var wide = window.matchMedia("(min-width: 1000px)");

  var state = {
    history: [],            // [{role, content}] of completed turns
    busy: false,
    controller: null,       // AbortController of the request in flight
    docsMeta: {},           // doc_id -> {title, publisher, date, ...}
    docCache: {},           // doc_id -> Promise<{text, detail}>
    paneOpener: null,       // element to refocus when the pane closes
    keyWaiters: [],         // resolvers waiting for an API key
    turnSeq: 0
  };
  window.__ragTimings = [];

  // ------------------------------------------------------------------ API key & fetch

  function storedKey() {
    try { return window.sessionStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
  }

  /** The key as a header value: its UTF-8 bytes, one per character (fetch sends a ByteString). */
  function headerKey(key) {
    var bytes = new TextEncoder().encode(key);
    var out = "";
    for (var i = 0; i < bytes.length; i++) { out += String.fromCharCode(bytes[i]); }
    return out;
  }

  function askForKey(message) {
    els.keyPanel.hidden = false;
    els.keyError.textContent = message || "";
    if (document.activeElement !== els.keyInput) { els.keyInput.focus(); }
    return new Promise(function (resolve) { state.keyWaiters.push(resolve); });
  }

  els.keyForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var key = els.keyInput.value.trim();
    if (!key) { return; }
    try { window.sessionStorage.setItem(KEY_STORAGE, key); } catch (e) { /* private mode: kept for this request only */ }
    state.sessionKey = key;
    els.keyInput.value = "";
    els.keyError.textContent = "";
    els.keyPanel.hidden = true;
    var waiters = state.keyWaiters;
    state.keyWaiters = [];
    waiters.forEach(function (resolve) { resolve(); });
    els.question.focus();
  });

  function currentKey() { return storedKey() || state.sessionKey || ""; }

  /**
   * fetch() with the API key header; on 401 asks for the key and tries again (as often as
   * a wrong key is entered). Other statuses are returned to the caller.
   */
  async function apiFetch(url, options) {
    options = options || {};
    for (;;) {
      var headers = Object.assign({}, options.headers || {});
      var key = currentKey();
      if (key) { headers.Authorization = "Bearer " + headerKey(key); }
      var resp = await fetch(url, Object.assign({}, options, { headers: headers }));
      if (resp.status !== 401) { return resp; }
      var why = "";
      try { why = (await resp.json()).error.message; } catch (e) { /* not our JSON */ }
      var hadKey = Boolean(key);
      try { window.sessionStorage.removeItem(KEY_STORAGE); } catch (e) { /* ignore */ }
      state.sessionKey = "";
      await askForKey(hadKey ? "키가 맞지 않습니다. 다시 입력하세요. (" + why + ")" : "");
    }
  }

  async function errorMessage(resp) {
    try {
      var body = await resp.json();
      if (body && body.error && body.error.message) { return body.error.message; }
    } catch (e) { /* fall through */ }
    return "HTTP " + resp.status;
  }

  // ------------------------------------------------------------------ documents

  var docsReady = apiFetch("/documents").then(async function (resp) {
    if (!resp.ok) { throw new Error(await errorMessage(resp)); }
    (await resp.json()).forEach(function (d) { state.docsMeta[d.doc_id] = d; });
  }).catch(function (err) { console.warn("문서 목록을 읽지 못했습니다:", err); });

  function loadDocument(docId) {
    if (!state.docCache[docId]) {
      var enc = encodeURIComponent(docId);
      state.docCache[docId] = Promise.all([
        apiFetch("/documents/" + enc + "/text"), apiFetch("/documents/" + enc)
      ]).then(async function (rs) {
        for (var i = 0; i < rs.length; i++) {
          if (!rs[i].ok) { throw new Error(await errorMessage(rs[i])); }
        }
        return { text: (await rs[0].json()).text, detail: await rs[1].json() };
      });
      state.docCache[docId].catch(function () { delete state.docCache[docId]; });
    }
    return state.docCache[docId];
  }

  function sectionPath(p) {
    return Array.isArray(p.section) ? p.section.join(" > ") : (p.section || p.section_path || "");
  }

  function docInfo(p) {
    var meta = state.docsMeta[p.doc_id] || {};
    return {
      title: meta.title || p.doc_title || p.title || p.doc_id,
      publisher: meta.publisher || p.publisher || "",
      date: meta.date || p.date || ""
    };
  }

  // ------------------------------------------------------------------ DOM helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; }
      else if (k === "className") { node.className = attrs[k]; }
      else if (k === "hidden") { node.hidden = attrs[k]; }
      else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); } });
    return node;
  }

  /** The answer text with its [n] markers as links to the turn's citations (text nodes only). */
  function renderAnswer(target, text, turn) {
    var frag = document.createDocumentFragment();
    var re = /\[(\d+)\]/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      var n = Number(m[1]);
      if (m.index > last) { frag.appendChild(document.createTextNode(text.slice(last, m.index))); }
      if (n >= 1 && n <= turn.citations.length) {
        var link = el("a", { href: "#" + turn.id + "-cite-" + n, className: "cite-ref",
                             "aria-label": "근거 " + n + " 보기" }, ["[" + n + "]"]);
        link.addEventListener("click", jumpToCitation.bind(null, turn, n));
        frag.appendChild(link);
      } else {
        frag.appendChild(document.createTextNode(m[0]));
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) { frag.appendChild(document.createTextNode(text.slice(last))); }
    target.replaceChildren(frag);
  }

  function jumpToCitation(turn, n, ev) {
    ev.preventDefault();
    var item = document.getElementById(turn.id + "-cite-" + n);
    if (!item) { return; }
    item.scrollIntoView({ block: "nearest" });
    var button = item.querySelector("button.open-doc");
    if (button) { button.focus(); }
    item.classList.remove("flash");
    void item.offsetWidth;  // restart the animation
    item.classList.add("flash");
  }

  function passageLabel(p) {
    var info = docInfo(p);
    return [info.title, info.publisher, info.date].filter(Boolean).join(" · ");
  }

  function citationItem(turn, c, n) {
    var path = sectionPath(c);
    var button = el("button", { type: "button", className: "open-doc link-button",
                                "data-doc-id": c.doc_id, "data-quote-start": String(c.quote_start),
                                "data-quote-end": String(c.quote_end) },
                    ["[" + n + "] " + docInfo(c).title]);
    button.addEventListener("click", function () {
      openDocument(c.doc_id, { start: c.start, end: c.end, markStart: c.quote_start, markEnd: c.quote_end,
                               section: path, opener: button });
    });
    var info = docInfo(c);
    return el("li", { id: turn.id + "-cite-" + n, className: "citation", tabindex: "-1" }, [
      button,
      el("p", { className: "meta" }, [[info.publisher, info.date].filter(Boolean).join(" · ")]),
      path ? el("p", { className: "section-path" }, [path]) : null,
      el("blockquote", { className: "quote" }, [c.quote || c.text || ""])
    ]);
  }

  function relatedItem(p) {
    var path = sectionPath(p);
    var button = el("button", { type: "button", className: "open-doc link-button", "data-doc-id": p.doc_id,
                                "data-start": String(p.start), "data-end": String(p.end) },
                    [docInfo(p).title]);
    button.addEventListener("click", function () {
      openDocument(p.doc_id, { start: p.start, end: p.end, markStart: p.start, markEnd: p.end,
                               section: path, opener: button });
    });
    var info = docInfo(p);
    var text = p.text || "";
    return el("li", { className: "related-item" }, [
      button,
      el("p", { className: "meta" }, [[info.publisher, info.date].filter(Boolean).join(" · ")]),
      path ? el("p", { className: "section-path" }, [path]) : null,
      text ? el("p", { className: "excerpt" }, [text.length > 240 ? text.slice(0, 240) + "…" : text]) : null
    ]);
  }

  // ------------------------------------------------------------------ a turn

  function newTurn(question) {
    state.turnSeq += 1;
    var id = "turn-" + state.turnSeq;
    var answer = el("div", { className: "answer", id: id + "-answer", "aria-live": "polite", "aria-busy": "true" });
    var turn = {
      id: id, question: question, citations: [], text: "", answerable: null,
      node: null, answerEl: answer,
      statusEl: el("p", { className: "turn-status", text: "답변을 찾는 중…" }),
      queryEl: el("p", { className: "query-note", hidden: true }),
      extraEl: el("div", { className: "turn-extra" })
    };
    turn.node = el("li", { className: "turn", id: id }, [
      el("div", { className: "bubble user" }, [el("p", { className: "who visually-hidden", text: "질문" }),
                                                el("p", { className: "question-text", text: question })]),
      turn.queryEl,
      el("div", { className: "bubble assistant" }, [el("p", { className: "who visually-hidden", text: "답변" }),
                                                     answer, turn.statusEl, turn.extraEl])
    ]);
    els.conversation.appendChild(turn.node);
    els.emptyHint.hidden = true;
    turn.node.scrollIntoView({ block: "nearest" });
    return turn;
  }

  function showCitations(turn) {
    var old = turn.extraEl.querySelector(".citations");
    if (old) { old.remove(); }
    if (!turn.citations.length) { return; }
    var list = el("ol", { className: "citation-list" });
    turn.citations.forEach(function (c, i) { list.appendChild(citationItem(turn, c, i + 1)); });
    turn.extraEl.prepend(el("section", { className: "citations", "aria-label": "근거" }, [
      el("h3", { text: "근거" }), list]));
  }

  function showDecline(turn, reason, related) {
    turn.node.classList.add("declined");
    if (reason) {
      turn.extraEl.appendChild(el("p", { className: "reason" }, [el("strong", { text: "까닭: " }), reason]));
    }
    if (related && related.length) {
      var list = el("ol", { className: "related-list" });
      related.forEach(function (p) { list.appendChild(relatedItem(p)); });
      turn.extraEl.appendChild(el("section", { className: "related", "aria-label": "가장 가까운 구절" }, [
        el("h3", { text: "가장 가까운 구절" }), list]));
    }
  }

  function showError(turn, message) {
    turn.statusEl.textContent = "";
    turn.answerEl.setAttribute("aria-busy", "false");
    turn.extraEl.appendChild(el("p", { className: "error", role: "alert", text: "오류: " + message }));
    turn.node.classList.add("failed");
  }

  /** Split an SSE byte stream (decoded) into {event, data} objects. */
  function sseParser(onEvent) {
    var buffer = "";
    return function (chunk, flush) {
      buffer += chunk;
      buffer = buffer.replace(/\r\n?/g, "\n");
      var cut;
      while ((cut = buffer.indexOf("\n\n")) !== -1 || (flush && buffer.trim())) {
        var block = cut === -1 ? buffer : buffer.slice(0, cut);
        buffer = cut === -1 ? "" : buffer.slice(cut + 2);
        var name = "message", data = [];
        block.split("\n").forEach(function (line) {
          if (line.startsWith(":")) { return; }
          var colon = line.indexOf(":");
          var field = colon === -1 ? line : line.slice(0, colon);
          var value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") { name = value; } else if (field === "data") { data.push(value); }
        });
        if (data.length) { onEvent(name, data.join("\n")); }
        if (cut === -1) { break; }
      }
    };
  }

  function requestBody(question) {
    if (!state.history.length) { return { question: question, stream: true }; }
    var messages = state.history.concat([{ role: "user", content: question }]).map(function (m) {
      return { role: m.role, content: m.content.slice(0, MAX_MESSAGE_CHARS) };
    });
    return { messages: messages.slice(-MAX_MESSAGES), stream: true };
  }

  async function ask(question) {
    var t0 = performance.now();
    var timing = { question: question, firstTextMs: null, completeMs: null, serverMs: null, deltas: 0, ok: false };
    var turn = newTurn(question);
    var body = requestBody(question);
    var controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    var final = null, done = null, failed = null;

    function markFirstText() {
      if (timing.firstTextMs === null && turn.text) {
        timing.firstTextMs = performance.now() - t0;
        turn.node.dataset.firstTextMs = timing.firstTextMs.toFixed(1);
        turn.answerEl.scrollIntoView({ block: "nearest" });
      }
    }

    function onEvent(name, raw) {
      var data;
      try { data = JSON.parse(raw); } catch (e) { failed = "응답을 읽을 수 없습니다 (" + name + ")"; return; }
      if (name === "citations") {
        turn.citations = Array.isArray(data) ? data : [];
        showCitations(turn);
      } else if (name === "delta") {
        timing.deltas += 1;
        turn.text += data.text || "";
        renderAnswer(turn.answerEl, turn.text, turn);
        turn.statusEl.textContent = "";
        markFirstText();
      } else if (name === "answer") {
        final = data;
        turn.text = data.answer || "";
        turn.answerable = Boolean(data.answerable);
        renderAnswer(turn.answerEl, turn.text, turn);
        turn.statusEl.textContent = "";
        markFirstText();
      } else if (name === "done") {
        done = data;
        if (typeof data.timing_ms === "number") { timing.serverMs = data.timing_ms; }
      } else if (name === "error") {
        failed = (data.error && data.error.message) || "알 수 없는 오류";
      }
    }

    try {
      await docsReady;
      var resp = await apiFetch("/chat", {
        method: "POST", headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify(body), signal: controller.signal
      });
      if (!resp.ok) { throw new Error(await errorMessage(resp)); }
      var reader = resp.body.getReader();
      var decoder = new TextDecoder("utf-8");
      var feed = sseParser(onEvent);
      for (;;) {
        var r = await reader.read();
        if (r.done) { feed(decoder.decode(), true); break; }
        feed(decoder.decode(r.value, { stream: true }), false);
      }
      if (failed) { throw new Error(failed); }
      if (!final) { throw new Error("답변 없이 응답이 끝났습니다"); }
      if (!turn.answerable) {
        var reason = final.reason, related = final.related;
        if (!("reason" in final) || !("related" in final)) {  // older server: ask once more, without streaming
          var again = Object.assign({}, body, { stream: false });
          var r2 = await apiFetch("/chat", { method: "POST", headers: { "Content-Type": "application/json" },
                                             body: JSON.stringify(again), signal: controller.signal });
          if (r2.ok) { var full = await r2.json(); reason = full.reason; related = full.related; }
        }
        showDecline(turn, reason || "", related || []);
      }
      if (done && done.query && done.query.trim() !== question.trim()) {
        turn.queryEl.replaceChildren(el("span", { className: "label", text: "검색한 질문: " }), done.query);
        turn.queryEl.hidden = false;
      }
      turn.node.dataset.query = (done && done.query) || question;
      turn.node.dataset.answerable = String(turn.answerable);
      state.history.push({ role: "user", content: question }, { role: "assistant", content: turn.text });
      timing.completeMs = performance.now() - t0;
      timing.ok = true;
      turn.node.dataset.completeMs = timing.completeMs.toFixed(1);
      turn.node.classList.add("complete");
    } catch (err) {
      if (err && err.name === "AbortError") {
        turn.node.remove();
        return;
      }
      showError(turn, (err && err.message) || String(err));
    } finally {
      turn.answerEl.setAttribute("aria-busy", "false");
      if (state.controller === controller) { state.controller = null; setBusy(false); }
      window.__ragTimings.push(timing);
    }
  }

  function setBusy(busy) {
    state.busy = busy;
    els.askButton.disabled = busy;
    els.form.setAttribute("aria-busy", String(busy));
    els.askStatus.textContent = busy ? "답변을 기다리는 중입니다…" : "";
  }

  els.form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var q = els.question.value.trim();
    if (!q || state.busy) { return; }
    els.question.value = "";
    ask(q);
  });

  els.question.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      els.form.requestSubmit();
    }
  });

  els.newChat.addEventListener("click", function () {
    if (state.controller) { state.controller.abort(); state.controller = null; setBusy(false); }
    state.history = [];
    els.conversation.replaceChildren();
    els.emptyHint.hidden = false;
    closePane(false);
    els.askStatus.textContent = "새 대화를 시작했습니다.";
    els.question.focus();
  });

  // ------------------------------------------------------------------ document pane

  var paneToken = 0;

  /**
   * Open the pane on a document, scrolled to [markStart, markEnd) which is highlighted;
   * [start, end) (the whole passage) gets a lighter tint when it contains the mark.
   */
  async function openDocument(docId, where) {
    var token = ++paneToken;
    state.paneOpener = where.opener || document.activeElement;
    var info = docInfo({ doc_id: docId });
    els.docTitle.textContent = info.title;
    els.docMeta.textContent = [info.publisher, info.date].filter(Boolean).join(" · ");
    els.docLocation.textContent = "불러오는 중…";
    els.docText.replaceChildren();
    els.tocTree.replaceChildren();
    els.pane.hidden = false;
    els.layout.classList.add("with-pane");
    document.body.classList.add("pane-open");
    els.docToc.open = wide.matches;
    syncInert();
    els.docTitle.focus();
    var doc;
    try { doc = await loadDocument(docId); } catch (err) {
      if (token === paneToken) { els.docLocation.textContent = "문서를 불러오지 못했습니다: " + err.message; }
      return;
    }
    if (token !== paneToken) { return; }
    els.docLocation.textContent = where.section ? "위치: " + where.section + " [" + where.markStart + ":" + where.markEnd + "]" : "";
    renderDocText(doc.text, where);
    renderToc(doc.detail.sections, where.markStart);
    scrollToMark();
  }

  function renderDocText(text, where) {
    var ms = where.markStart, me = where.markEnd, ps = where.start, pe = where.end;
    var mark = el("mark", { id: "doc-mark", "data-start": String(ms), "data-end": String(me) },
                  [text.slice(ms, me)]);
    var frag = document.createDocumentFragment();
    if (ps <= ms && me <= pe && (ps < ms || me < pe)) {
      frag.appendChild(document.createTextNode(text.slice(0, ps)));
      frag.appendChild(el("span", { className: "passage" }, [text.slice(ps, ms), mark, text.slice(me, pe)]));
      frag.appendChild(document.createTextNode(text.slice(pe)));
    } else {
      frag.appendChild(document.createTextNode(text.slice(0, ms)));
      frag.appendChild(mark);
      frag.appendChild(document.createTextNode(text.slice(me)));
    }
    els.docText.replaceChildren(frag);
    els.docText.dataset.docLength = String(text.length);
  }

  /** The text node and offset inside it of document offset `offset`. */
  function locate(offset) {
    var walker = document.createTreeWalker(els.docText, NodeFilter.SHOW_TEXT);
    var pos = 0, node;
    while ((node = walker.nextNode())) {
      var len = node.data.length;
      if (offset <= pos + len) { return { node: node, offset: offset - pos }; }
      pos += len;
    }
    return null;
  }

  function scrollTextTo(rectTop) {
    var box = els.docText.getBoundingClientRect();
    els.docText.scrollTop += rectTop - box.top - Math.min(80, box.height / 4);
  }

  function scrollToMark() {
    var mark = document.getElementById("doc-mark");
    if (mark) { scrollTextTo(mark.getBoundingClientRect().top); }
  }

  function scrollToOffset(offset) {
    var at = locate(offset);
    if (!at) { return; }
    var range = document.createRange();
    range.setStart(at.node, at.offset);
    range.setEnd(at.node, Math.min(at.node.data.length, at.offset + 1));
    var rects = range.getClientRects();
    var top = rects.length ? rects[0].top : range.getBoundingClientRect().top;
    scrollTextTo(top);
  }

  function renderToc(root, markStart) {
    var current = null;
    function build(node, depth) {
      var ul = el("ul", {});
      node.children.forEach(function (child) {
        var button = el("button", { type: "button", className: "toc-link", "data-start": String(child.start),
                                    "data-end": String(child.end) }, [child.title || "(제목 없음)"]);
        button.addEventListener("click", function () {
          scrollToOffset(child.start);
          els.docText.focus({ preventScroll: true });
        });
        if (child.start <= markStart && markStart < child.end) { current = button; }
        var li = el("li", {}, [button]);
        if (child.children.length) { li.appendChild(build(child, depth + 1)); }
        ul.appendChild(li);
      });
      return ul;
    }
    if (!root || !root.children || !root.children.length) {
      els.tocTree.replaceChildren(el("li", { text: "이 문서에는 절 구조가 없습니다." }));
      return;
    }
    els.tocTree.replaceChildren.apply(els.tocTree, Array.from(build(root, 0).children));
    if (current) {
      current.setAttribute("aria-current", "location");
      var nav = els.tocTree.parentElement;  // positioned: offsetTop is relative to it
      nav.scrollTop = Math.max(0, current.offsetTop - nav.clientHeight / 3);
    }
  }

  function closePane(restoreFocus) {
    if (els.pane.hidden) { return; }
    paneToken++;
    els.pane.hidden = true;
    els.layout.classList.remove("with-pane");
    document.body.classList.remove("pane-open");
    syncInert();
    var opener = state.paneOpener;
    state.paneOpener = null;
    if (restoreFocus !== false && opener && document.contains(opener)) { opener.focus(); }
  }

  /** On a narrow screen the open pane covers the page: what is under it is inert (modal). */
  function syncInert() {
    var covered = !els.pane.hidden && !wide.matches;
    els.main.inert = covered;
    els.header.inert = covered;
  }
  wide.addEventListener("change", syncInert);

  els.paneClose.addEventListener("click", function () { closePane(true); });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && !els.pane.hidden) { ev.preventDefault(); closePane(true); }
  });

  // focus the question box on load (unless the key form asked first)
  if (!els.keyPanel.hidden) { els.keyInput.focus(); } else { els.question.focus(); }
})();
