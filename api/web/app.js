/* Incident Copilot web panel: vanilla JS, no build step, no third-party code.
 *
 * Everything inserted from the API goes in through textContent or attributes (never
 * innerHTML), so no incident, log or model text can become markup.
 */
(function () {
  "use strict";

  var KEY_STORAGE = "incident-copilot.api-key";

  var state = {
    key: null,
    me: null, // {name, role, permissions}
    incidentId: null,
    incident: null,
    history: [], // [{role, content}] sent with each chat question
    chatBusy: false,
    chatAbort: null,
    drafts: [],
    draft: null, // the selected Draft (with versions)
    lastFailedChecks: null,
    dialogOpener: null,
    loadSeq: 0, // guards against late answers for an incident no longer shown
  };

  // ------------------------------------------------------------------ helpers

  function $(id) { return document.getElementById(id); }

  /** Build an element: h("a", {href: "#", class: "x", dataset: {id: 1}}, "text", child). */
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name === "class") el.className = value;
        else if (name === "text") el.textContent = String(value);
        else if (name === "dataset") {
          Object.keys(value).forEach(function (k) { el.dataset[k] = String(value[k]); });
        } else if (name.slice(0, 2) === "on" && typeof value === "function") {
          el.addEventListener(name.slice(2), value);
        } else if (value === true) el.setAttribute(name, "");
        else el.setAttribute(name, String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(el, c); }); return; }
    el.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

  function show(el, visible) { el.hidden = !visible; }

  function fmtTime(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function can(permission) {
    return !!(state.me && Array.isArray(state.me.permissions) &&
              state.me.permissions.indexOf(permission) >= 0);
  }

  function roleName() { return state.me ? state.me.role : "unknown"; }

  /** Disable a control the role cannot use, and say why (title + visible note). */
  function gate(el, permission, note, why) {
    var allowed = can(permission);
    if (!allowed) {
      el.disabled = true;
      el.title = why || ("Your role (" + roleName() + ") lacks the " + permission + " permission");
      el.dataset.gated = permission;
    } else if (el.dataset.gated) {
      delete el.dataset.gated;
      el.removeAttribute("title");
    }
    if (note) {
      note.textContent = allowed ? "" : el.title;
      show(note, !allowed);
    }
    return allowed;
  }

  // ------------------------------------------------------------------ alerts

  function showError(message) {
    $("alert-text").textContent = message;
    show($("alert"), true);
  }

  function clearError() {
    $("alert-text").textContent = "";
    show($("alert"), false);
  }

  function announce(message) {
    $("status-line").textContent = message;
  }

  // ------------------------------------------------------------------ API

  function ApiError(status, message, body) {
    this.name = "ApiError";
    this.status = status;
    this.message = message;
    this.body = body || {};
  }
  ApiError.prototype = Object.create(Error.prototype);

  function headers(extra) {
    var out = { "Accept": "application/json" };
    if (state.key) out["Authorization"] = "Bearer " + state.key;
    Object.keys(extra || {}).forEach(function (k) { out[k] = extra[k]; });
    return out;
  }

  async function errorFrom(resp) {
    var body = null;
    var message = "HTTP " + resp.status;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (body && typeof body.error === "string") message = body.error;
    else if (body && typeof body.detail === "string") message = body.detail;
    else if (resp.status >= 500) message = "the server failed (HTTP " + resp.status + ")";
    return new ApiError(resp.status, message, body);
  }

  function unauthorized(message) {
    signOut("Signed out: " + (message || "the API key was refused") + ". Sign in again.");
  }

  /** fetch JSON from the API; 401 signs out; errors throw ApiError with the API's message. */
  async function api(method, path, body, opts) {
    opts = opts || {};
    var init = { method: method, headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}) };
    if (body !== undefined) init.body = JSON.stringify(body);
    if (opts.signal) init.signal = opts.signal;
    var resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      throw new ApiError(0, "the server could not be reached", null);
    }
    if (resp.status === 401 && !opts.noSignOut) {
      var err = await errorFrom(resp);
      unauthorized(err.message);
      err.handled = true;
      throw err;
    }
    if (!resp.ok) throw await errorFrom(resp);
    if (resp.status === 204) return null;
    try {
      return await resp.json();
    } catch (e) {
      throw new ApiError(resp.status, "the server sent an answer that is not JSON", null);
    }
  }

  function report(err) {
    if (err && err.handled) return;
    if (err && err.name === "AbortError") return;
    var msg = err && err.message ? err.message : String(err);
    if (err && err.status) msg += " (HTTP " + err.status + ")";
    showError(msg);
  }

  function enc(value) { return encodeURIComponent(String(value)); }

  // ------------------------------------------------------------------ sign-in

  async function signIn(key, quiet) {
    state.key = key;
    try {
      var me = await api("GET", "/v1/me", undefined, { noSignOut: true });
      state.me = me;
      sessionStorage.setItem(KEY_STORAGE, key);
      $("whoami").textContent = "Signed in as " + me.name + " (" + me.role + ")";
      show($("who"), true);
      show($("topnav"), true);
      clearError();
      return true;
    } catch (err) {
      state.key = null;
      state.me = null;
      sessionStorage.removeItem(KEY_STORAGE);
      if (!quiet) {
        var msg = err.status === 401 ? "That API key was refused: " + err.message
                                     : "Could not sign in: " + err.message;
        setSigninMessage(msg);
      }
      return false;
    }
  }

  function setSigninMessage(message) {
    var el = $("signin-message");
    el.textContent = message || "";
    show(el, !!message);
  }

  function signOut(message) {
    if (state.chatAbort) { try { state.chatAbort.abort(); } catch (e) { /* ignore */ } }
    state.key = null;
    state.me = null;
    state.history = [];
    state.incidentId = null;
    state.draft = null;
    sessionStorage.removeItem(KEY_STORAGE);
    show($("who"), false);
    show($("topnav"), false);
    $("whoami").textContent = "";
    closeSource();
    clearError();
    setSigninMessage(message || "");
    if (location.hash !== "#/signin") {
      history.replaceState(null, "", "#/signin");
    }
    renderSignin();
  }

  // ------------------------------------------------------------------ routing

  function parseRoute() {
    var hash = location.hash.replace(/^#/, "") || "/";
    var m;
    if (hash === "/" || hash === "") return { name: "list" };
    if (hash === "/signin") return { name: "signin" };
    if ((m = hash.match(/^\/incidents\/(\d+)\/sources\/(.+)$/))) {
      return { name: "incident", id: Number(m[1]), source: decodeURIComponent(m[2]) };
    }
    if ((m = hash.match(/^\/incidents\/(\d+)\/?$/))) return { name: "incident", id: Number(m[1]) };
    return { name: "notfound" };
  }

  function showView(id) {
    ["signin-view", "list-view", "incident-view", "notfound-view"].forEach(function (v) {
      show($(v), v === id);
    });
  }

  function focusHeading(id) {
    var el = $(id);
    if (el) el.focus({ preventScroll: false });
  }

  async function route() {
    // "#main" and other plain anchors (the skip link) are in-page targets, not routes
    var anchor = location.hash.length > 1 && location.hash.charAt(1) !== "/";
    if (anchor) {
      var viewShown = ["signin-view", "list-view", "incident-view", "notfound-view"]
        .some(function (v) { return !$(v).hidden; });
      if (viewShown) return;
      history.replaceState(null, "", "#/");
    }
    var r = parseRoute();
    if (!state.me) {
      var stored = sessionStorage.getItem(KEY_STORAGE);
      if (stored && await signIn(stored, true)) {
        return route();
      }
      if (stored) setSigninMessage("Your saved key is no longer valid. Sign in again.");
      renderSignin();
      return;
    }
    if (r.name === "signin") { location.hash = "#/"; return; }
    if (r.name === "list") return renderList();
    if (r.name === "incident") {
      if (state.incidentId !== r.id || $("incident-view").hidden) await renderIncident(r.id);
      if (r.source) openSource(r.source, null);
      return;
    }
    showView("notfound-view");
    document.title = "Not found · Incident Copilot";
    focusHeading("notfound-heading");
  }

  function renderSignin() {
    showView("signin-view");
    document.title = "Sign in · Incident Copilot";
    $("api-key").value = "";
    $("api-key").focus();
  }

  // ------------------------------------------------------------------ incident list

  async function renderList() {
    showView("list-view");
    document.title = "Incidents · Incident Copilot";
    state.incidentId = null;
    focusHeading("list-heading");
    var rows = clear($("incident-rows"));
    rows.appendChild(h("tr", null, h("td", { colspan: 6, text: "Loading…" })));
    try {
      var incidents = await api("GET", "/v1/incidents?open_only=false");
      clear(rows);
      show($("list-empty"), incidents.length === 0);
      incidents.forEach(function (inc) {
        var href = "#/incidents/" + inc.id;
        rows.appendChild(h("tr", { dataset: { incidentId: inc.id } },
          h("td", null, h("a", { href: href, id: "incident-link-" + inc.id,
                                 "aria-label": "Incident " + inc.id + ": " + inc.title }, "#" + inc.id)),
          h("td", null, h("span", { class: "badge sev sev-" + String(inc.severity).toLowerCase(), text: inc.severity })),
          h("td", null, h("span", { class: "badge status-" + inc.status, text: inc.status })),
          h("td", null, h("a", { href: href, class: "incident-title-link", dataset: { testid: "incident-title-" + inc.id } }, inc.title)),
          h("td", { class: "wrap" }, (inc.services || []).join(", ")),
          h("td", { class: "nowrap" }, fmtTime(inc.started_at || inc.created_at))));
      });
    } catch (err) {
      clear(rows);
      report(err);
    }
  }

  // ------------------------------------------------------------------ incident page

  async function renderIncident(id) {
    var seq = ++state.loadSeq;
    if (state.incidentId !== id) {
      state.history = [];
      state.draft = null;
      clear($("chat-log"));
      show($("draft-detail"), false);
    }
    state.incidentId = id;
    showView("incident-view");
    $("incident-title").textContent = "Incident #" + id;
    document.title = "Incident #" + id + " · Incident Copilot";
    applyPermissions();
    var detail;
    try {
      detail = await api("GET", "/v1/incidents/" + id);
    } catch (err) {
      if (err.status === 404) {
        $("incident-title").textContent = "Incident #" + id + " was not found";
      }
      report(err);
      focusHeading("incident-title");
      return;
    }
    if (seq !== state.loadSeq) return;
    state.incident = detail;
    renderHeader(detail);
    renderTimeline(detail);
    focusHeading("incident-title");
    loadSummary();
    loadRootCauses();
    loadRunbooks();
    loadDrafts();
  }

  function renderHeader(inc) {
    $("incident-title").textContent = "#" + inc.id + " " + inc.title;
    document.title = "#" + inc.id + " " + inc.title + " · Incident Copilot";
    var sev = $("incident-severity");
    sev.textContent = inc.severity;
    sev.className = "badge sev sev-" + String(inc.severity).toLowerCase();
    var st = $("incident-status");
    st.textContent = inc.status;
    st.className = "badge status-" + inc.status;
    $("incident-services").textContent = (inc.services || []).join(", ") || "—";
    $("incident-started").textContent = fmtTime(inc.started_at);
    var roles = clear($("incident-roles"));
    [["commander", "Commander"], ["tech_lead", "Tech lead"], ["comms_lead", "Comms lead"]].forEach(function (pair) {
      roles.appendChild(h("div", { class: "role" },
        h("dt", null, pair[1]),
        h("dd", { id: "incident-role-" + pair[0] }, inc[pair[0]] || "unassigned")));
    });
  }

  function renderTimeline(inc) {
    var body = clear($("timeline-body"));
    var alerts = inc.alerts || [];
    var timeline = inc.timeline || [];
    if (alerts.length) {
      body.appendChild(h("h3", null, "Alerts"));
      body.appendChild(h("ul", { class: "plain" }, alerts.map(function (a) {
        return h("li", null,
          h("span", { class: "badge status-" + a.status, text: a.status }), " ",
          citeChip("alert:" + a.id, null, a.name), " ",
          (a.service ? a.service + " · " : "") + fmtTime(a.starts_at));
      })));
    }
    body.appendChild(h("h3", null, "Timeline"));
    if (!timeline.length) body.appendChild(h("p", null, "No timeline entries."));
    body.appendChild(h("ol", { class: "timeline" }, timeline.map(function (t) {
      return h("li", null,
        h("time", { datetime: t.at }, fmtTime(t.at)), " ",
        h("span", { class: "kind" }, t.kind), " ",
        citeChip("timeline:" + t.id, null, null), " ",
        t.text, t.actor ? " — " + t.actor : "");
    })));
  }

  function applyPermissions() {
    var chatOk = gate($("chat-submit"), "chat", $("chat-perm"));
    $("chat-question").disabled = !chatOk;
    gate($("draft-generate"), "drafts", $("drafts-perm"));
    $("draft-stage").disabled = !can("drafts");
    $("draft-audience").disabled = !can("drafts");
  }

  // ------------------------------------------------------------------ citations

  /** Map citation id -> {n, source} for a result's sources, so chips read [S1] Title. */
  function sourceIndex(sources) {
    var index = {};
    (sources || []).forEach(function (s, i) { index[s.id] = { n: i + 1, source: s }; });
    return index;
  }

  function citeChip(id, index, label) {
    var entry = index ? index[id] : null;
    var n = entry ? "S" + entry.n : null;
    var src = entry && entry.source;
    var title = (src && src.title) || label || id;
    var section = src && src.meta && src.meta.section;
    if (section && title.indexOf(String(section)) < 0) title += " — " + section;
    var href = "#/incidents/" + state.incidentId + "/sources/" + enc(id);
    var text = (n ? "[" + n + "] " : "") + title;
    var a = h("a", {
      href: href, class: "cite", dataset: { sourceId: id, testid: "citation" },
      title: "Open source " + id + (title !== id ? ": " + title : ""),
    }, h("span", { class: "cite-text" }, text));
    a.addEventListener("click", function (ev) {
      if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
      ev.preventDefault();
      openSource(id, a);
    });
    return a;
  }

  function citeList(ids, index) {
    if (!ids || !ids.length) return null;
    return h("span", { class: "cites" }, ids.map(function (id) { return citeChip(id, index); }));
  }

  /** One Line: its text, then its citation chips; marked when unsupported. */
  function lineEl(tag, line, index) {
    var el = h(tag, { class: "line" + (line.supported === false ? " unsupported" : "") },
      h("span", { class: "line-text" }, line.text), " ", citeList(line.citations, index));
    if (line.supported === false) {
      el.appendChild(h("span", { class: "flag", title: "None of this line's citations was in the context" }, " (unsupported)"));
    }
    return el;
  }

  function degradedNote(result) {
    if (!result || !result.degraded) return null;
    return h("p", { class: "degraded", dataset: { testid: "degraded" } },
      h("strong", null, "degraded: "), result.reason || "no reason given");
  }

  function sourcesList(result, index) {
    var sources = (result && result.sources) || [];
    if (!sources.length) return null;
    return h("details", { class: "sources" },
      h("summary", null, "Sources (" + sources.length + ")"),
      h("ol", { class: "source-list" }, sources.map(function (s) {
        return h("li", null, citeChip(s.id, index), s.snippet ? h("span", { class: "snippet" }, " " + s.snippet) : null);
      })));
  }

  // ------------------------------------------------------------------ source viewer

  async function openSource(id, opener) {
    var dialog = $("source-dialog");
    state.dialogOpener = opener || document.activeElement;
    $("source-title").textContent = "Loading " + id + "…";
    $("source-kind").textContent = "";
    $("source-id").textContent = id;
    $("source-text").textContent = "";
    clear($("source-meta"));
    show($("source-error"), false);
    dialog.dataset.sourceId = id;
    dialog.dataset.loaded = "false";
    if (!dialog.open) dialog.showModal();
    $("source-title").focus();
    var incident = state.incidentId;
    try {
      var src = await api("GET", "/v1/incidents/" + incident + "/sources/" + enc(id));
      if (dialog.dataset.sourceId !== id) return;
      $("source-title").textContent = src.title || src.id;
      $("source-kind").textContent = src.kind || "";
      $("source-id").textContent = src.id || id;
      $("source-text").textContent = src.text || "";
      var meta = clear($("source-meta"));
      Object.keys(src.meta || {}).forEach(function (k) {
        var v = src.meta[k];
        if (v === null || v === undefined || v === "") return;
        meta.appendChild(h("div", null, h("dt", null, k),
          h("dd", null, typeof v === "object" ? JSON.stringify(v) : String(v))));
      });
      dialog.dataset.loaded = "true";
    } catch (err) {
      if (err.handled) return;
      $("source-title").textContent = "Source " + id;
      $("source-error").textContent = "Could not load this source: " + err.message;
      show($("source-error"), true);
      dialog.dataset.loaded = "error";
    }
  }

  function closeSource() {
    var dialog = $("source-dialog");
    if (dialog.open) dialog.close();
  }

  function onSourceClosed() {
    var r = parseRoute();
    if (r.name === "incident" && r.source) {
      history.replaceState(null, "", "#/incidents/" + r.id);
    }
    var opener = state.dialogOpener;
    state.dialogOpener = null;
    if (opener && document.body.contains(opener) && typeof opener.focus === "function") {
      opener.focus();
    }
  }

  // ------------------------------------------------------------------ chat

  /** Parse Server-Sent Events from a fetch() body; calls onEvent(name, data) per event. */
  async function readSSE(resp, onEvent) {
    var reader = resp.body.getReader();
    var decoder = new TextDecoder("utf-8");
    var buffer = "";
    function dispatch(block) {
      var name = "message";
      var data = [];
      block.split("\n").forEach(function (line) {
        if (!line || line.charAt(0) === ":") return;
        var colon = line.indexOf(":");
        var field = colon < 0 ? line : line.slice(0, colon);
        var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      });
      if (data.length) onEvent(name, data.join("\n"));
    }
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
      var cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim()) dispatch(buffer);
  }

  function addTurn(role, content) {
    var log = $("chat-log");
    var msg = h("div", { class: "msg msg-" + role, dataset: { role: role } },
      h("p", { class: "msg-who" }, role === "user" ? "You" : "Copilot"));
    if (content !== undefined) msg.appendChild(h("p", { class: "msg-text" }, content));
    log.appendChild(msg);
    return msg;
  }

  function renderAnswer(container, result, replaced) {
    var index = sourceIndex(result.sources);
    var body = h("div", { class: "answer-body", dataset: { testid: "chat-answer" } });
    if (replaced) {
      body.appendChild(h("p", { class: "note" }, "The streamed answer was replaced by the checked answer below."));
    }
    if (result.answered === false) {
      body.appendChild(h("p", { class: "note" }, "The incident context does not answer this."));
    }
    var lines = result.lines || [];
    if (lines.length) {
      body.appendChild(h("ul", { class: "lines" }, lines.map(function (l) { return lineEl("li", l, index); })));
    } else if (result.answer) {
      body.appendChild(h("p", null, result.answer));
    }
    append(body, degradedNote(result));
    append(body, sourcesList(result, index));
    container.appendChild(body);
  }

  async function ask(question) {
    if (state.chatBusy) return;
    if (!can("chat")) { showError("Your role (" + roleName() + ") lacks the chat permission"); return; }
    clearError();
    state.chatBusy = true;
    $("chat-submit").disabled = true;
    var incident = state.incidentId;
    var history = state.history.slice(-50).map(function (t) {
      return { role: t.role, content: t.content.slice(0, 8000) };
    });
    addTurn("user", question);
    var msg = addTurn("assistant");
    var stream = h("p", { class: "msg-text streaming", dataset: { testid: "chat-stream" } });
    msg.appendChild(stream);
    msg.dataset.state = "streaming";
    msg.dataset.tokens = "0";
    msg.setAttribute("aria-busy", "true");
    msg.scrollIntoView({ block: "nearest" });
    var tokens = 0;
    var final = null;
    var controller = new AbortController();
    state.chatAbort = controller;
    try {
      var resp = await fetch("/v1/incidents/" + incident + "/chat", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json", "Accept": "text/event-stream" }),
        body: JSON.stringify({ question: question, history: history }),
        signal: controller.signal,
      });
      if (resp.status === 401) { var e401 = await errorFrom(resp); unauthorized(e401.message); return; }
      if (!resp.ok) throw await errorFrom(resp);
      var type = resp.headers.get("content-type") || "";
      if (type.indexOf("text/event-stream") < 0) {
        final = { replace: false, result: await resp.json() };
      } else {
        await readSSE(resp, function (name, data) {
          var payload;
          try { payload = JSON.parse(data); } catch (e) { return; }
          if (name === "token") {
            tokens += 1;
            stream.appendChild(document.createTextNode(payload.text || ""));
            msg.dataset.tokens = String(tokens);
          } else if (name === "final") {
            final = payload;
            msg.dataset.tokensBeforeFinal = String(tokens);
          } else if (name === "error") {
            throw new ApiError(0, payload.error || "the answer stream failed", payload);
          }
        });
      }
      if (!final || !final.result) throw new ApiError(0, "the answer stream ended without a final answer", null);
      var result = final.result;
      if (final.replace) {
        stream.remove();
      } else {
        stream.classList.add("streamed");
        stream.hidden = true; // the rendered lines below carry the same answer, with citations
      }
      renderAnswer(msg, result, !!final.replace);
      msg.dataset.state = "final";
      state.history.push({ role: "user", content: question });
      state.history.push({ role: "assistant", content: result.answer || "" });
      announce("Answer complete.");
    } catch (err) {
      msg.dataset.state = "error";
      if (!(err && err.name === "AbortError")) {
        msg.appendChild(h("p", { class: "inline-error" }, "No answer: " + (err.message || String(err))));
        report(err);
      }
    } finally {
      msg.setAttribute("aria-busy", "false");
      state.chatBusy = false;
      state.chatAbort = null;
      if (state.me) $("chat-submit").disabled = !can("chat");
    }
  }

  // ------------------------------------------------------------------ panels

  function panelLoading(body) {
    body.setAttribute("aria-busy", "true");
    body.dataset.state = "loading";
    clear(body).appendChild(h("p", { class: "loading" }, "Loading…"));
  }

  function panelDone(body, stateName) {
    body.setAttribute("aria-busy", "false");
    body.dataset.state = stateName || "loaded";
  }

  function panelError(body, err) {
    clear(body).appendChild(h("p", { class: "inline-error" }, "Could not load: " + err.message));
    panelDone(body, "error");
  }

  async function loadPanel(bodyId, path, render, on403) {
    var body = $(bodyId);
    var incident = state.incidentId;
    panelLoading(body);
    try {
      var result = await api("GET", path);
      if (incident !== state.incidentId) return;
      clear(body);
      render(body, result);
      panelDone(body);
    } catch (err) {
      if (err.handled || incident !== state.incidentId) return;
      if (err.status === 403 && on403) {
        clear(body).appendChild(on403(err));
        panelDone(body, "forbidden");
        return;
      }
      panelError(body, err);
      report(err);
    }
  }

  var SUMMARY_SECTIONS = [
    ["status", "Status"], ["impact", "Customer impact"], ["timeline", "Timeline"],
    ["actions", "Actions taken"], ["open_questions", "Open questions"], ["owners", "Owners"],
    ["next_steps", "Next steps"],
  ];

  function summarySections(result) {
    if (Array.isArray(result.sections)) return result.sections;
    return SUMMARY_SECTIONS.filter(function (p) { return Array.isArray(result[p[0]]); })
      .map(function (p) { return { key: p[0], title: p[1], lines: result[p[0]] }; });
  }

  function loadSummary() {
    var id = state.incidentId;
    return loadPanel("summary-body", "/v1/incidents/" + id + "/summary", function (body, result) {
      var index = sourceIndex(result.sources);
      if (result.title) body.appendChild(h("p", { class: "summary-title" }, h("strong", null, result.title)));
      summarySections(result).forEach(function (sec) {
        var lines = sec.lines || [];
        body.appendChild(h("section", { class: "summary-section", dataset: { section: sec.key || sec.title } },
          h("h3", null, sec.title || sec.key),
          lines.length ? h("ul", { class: "lines" }, lines.map(function (l) { return lineEl("li", l, index); }))
                       : h("p", { class: "muted" }, "Nothing yet.")));
      });
      append(body, degradedNote(result));
      append(body, sourcesList(result, index));
    }, function () {
      return h("p", { class: "notice", dataset: { testid: "summary-forbidden" } },
        "The commander's summary needs the commander role (your role: " + roleName() + ").");
    });
  }

  function loadRootCauses() {
    var id = state.incidentId;
    return loadPanel("rootcause-body", "/v1/incidents/" + id + "/root-causes", function (body, result) {
      var index = sourceIndex(result.sources);
      var hyps = result.hypotheses || [];
      if (result.abstained || !hyps.length) {
        body.appendChild(h("p", { class: "notice" },
          "No hypothesis: " + (result.abstain_reason || "the evidence does not point to a cause yet") + "."));
      }
      if (hyps.length) {
        body.appendChild(h("ol", { class: "hypotheses" }, hyps.map(function (hyp) {
          var conf = hyp.confidence_label || "";
          if (typeof hyp.confidence === "number") conf += " (" + Math.round(hyp.confidence * 100) + "%)";
          var evidence = hyp.evidence || [];
          return h("li", { class: "hypothesis" + (hyp.supported === false ? " unsupported" : "") },
            h("p", { class: "statement" }, hyp.statement),
            h("p", { class: "hyp-meta" },
              h("span", { class: "badge conf-" + (hyp.confidence_label || "low") }, "confidence: " + conf),
              hyp.category ? h("span", { class: "muted" }, " · " + hyp.category) : null),
            citeList(hyp.citations, index),
            evidence.length ? h("div", null, h("h4", null, "Evidence"),
              h("ul", { class: "evidence" }, evidence.map(function (ev) {
                var eid = typeof ev === "string" ? ev : ev.id;
                var why = typeof ev === "string" ? "" : (ev.why || "");
                return h("li", null, citeChip(eid, index), why ? " " + why : "");
              }))) : null,
            hyp.check ? h("p", { class: "check-step" }, h("strong", null, "Check: "), hyp.check) : null);
        })));
      }
      append(body, degradedNote(result));
      append(body, sourcesList(result, index));
    });
  }

  function loadRunbooks() {
    var id = state.incidentId;
    return loadPanel("runbook-body", "/v1/incidents/" + id + "/runbooks", function (body, result) {
      var index = sourceIndex(result.sources);
      var recs = result.recommendations || [];
      if (!recs.length) body.appendChild(h("p", { class: "notice" }, "No runbook matches this incident."));
      body.appendChild(h("ol", { class: "runbooks" }, recs.map(function (rec) {
        return h("li", { class: "runbook" },
          h("h3", null, rec.title || rec.doc_id),
          h("p", { class: "muted" }, rec.doc_id + (typeof rec.score === "number" ? " · score " + rec.score.toFixed(2) : "")),
          rec.reason ? h("p", null, h("strong", null, "Why: "), rec.reason) : null,
          citeList(rec.citations, index),
          (rec.sections || []).map(function (sec) {
            return h("div", { class: "rb-section" },
              h("h4", null, sec.heading, " ", sec.chunk_id ? citeChip("chunk:" + sec.chunk_id, index, sec.heading) : null),
              (sec.steps || []).length ? h("ol", { class: "steps" }, sec.steps.map(function (s) { return h("li", null, s); })) : null);
          }));
      })));
      append(body, degradedNote(result));
      append(body, sourcesList(result, index));
    });
  }

  // ------------------------------------------------------------------ drafts

  async function loadDrafts(selectId) {
    var incident = state.incidentId;
    var list = $("draft-list");
    list.setAttribute("aria-busy", "true");
    try {
      var drafts = await api("GET", "/v1/incidents/" + incident + "/drafts");
      if (incident !== state.incidentId) return;
      state.drafts = drafts;
      renderDraftList();
      if (selectId) await selectDraft(selectId);
    } catch (err) {
      report(err);
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  }

  function renderDraftList() {
    var list = clear($("draft-list"));
    show($("draft-list-empty"), state.drafts.length === 0);
    state.drafts.forEach(function (d) {
      var selected = state.draft && state.draft.id === d.id;
      list.appendChild(h("li", null, h("button", {
        type: "button", class: "draft-item" + (selected ? " selected" : ""),
        id: "draft-item-" + d.id, "aria-pressed": selected ? "true" : "false",
        dataset: { draftId: d.id, state: d.state },
        onclick: function () { selectDraft(d.id, true); },
      },
        h("span", { class: "draft-item-title" }, "#" + d.id + " " + (d.title || "(untitled)")),
        h("span", { class: "draft-item-meta" },
          d.audience + " · " + d.stage + " · v" + d.version + " · ",
          h("span", { class: "state state-" + d.state }, d.state),
          d.passed === false && d.state === "draft" ? h("span", { class: "fails" }, " · checks failing") : null))));
    });
  }

  async function selectDraft(id, moveFocus) {
    try {
      var d = await api("GET", "/v1/drafts/" + id);
      showDraft(d);
      if (moveFocus) focusHeading("draft-detail-heading");
    } catch (err) {
      report(err);
    }
  }

  function setDraftMessage(content, kind) {
    var box = clear($("draft-message"));
    if (!content) { show(box, false); delete box.dataset.kind; return; }
    box.dataset.kind = kind || "error";
    append(box, content);
    show(box, true);
  }

  function showDraft(d, keepMessage) {
    state.draft = d;
    var idx = state.drafts.findIndex(function (x) { return x.id === d.id; });
    if (idx >= 0) state.drafts[idx] = d; else state.drafts.unshift(d);
    renderDraftList();
    show($("draft-detail"), true);
    $("draft-detail").dataset.draftId = d.id;
    $("draft-id").textContent = "#" + d.id;
    var st = $("draft-state");
    st.textContent = d.state;
    st.className = "state state-" + d.state;
    $("draft-version").textContent = String(d.version);
    $("draft-stage-audience").textContent = d.audience + " · " + d.stage;
    $("draft-title").value = d.title || "";
    $("draft-body").value = d.body || "";
    $("draft-components").value = (d.components || []).join(", ");

    var outcome = $("draft-outcome");
    var parts = [];
    if (d.state === "approved") {
      parts.push("Approved by " + (d.approved_by || "someone") +
                 (d.published_at ? ", published " + fmtTime(d.published_at) : "") + ".");
      if (d.override_reason) parts.push("Override reason: " + d.override_reason);
    } else if (d.state === "rejected") {
      parts.push("Rejected" + (d.reject_reason ? ": " + d.reject_reason : "") + ".");
    }
    outcome.textContent = parts.join(" ");
    show(outcome, parts.length > 0);

    renderChecks(d.checks || []);
    renderVersions(d);
    if (!keepMessage) setDraftMessage(null);
    show($("draft-override-form"), false);
    $("draft-override-reason").value = "";
    $("draft-reject-reason").value = "";
    applyDraftPermissions(d);
  }

  function checkItem(c) {
    var failedBlocking = !c.passed && c.blocking !== false;
    var label = c.passed ? "passed" : (c.blocking === false ? "advisory: not met" : "FAILED (blocking)");
    var cls = c.passed ? "check-passed" : (failedBlocking ? "check-failed" : "check-warn");
    return h("li", {
      class: "check " + cls,
      dataset: { check: c.name, passed: c.passed ? "true" : "false", blocking: c.blocking === false ? "false" : "true" },
    },
      h("span", { class: "check-mark", "aria-hidden": "true" }, c.passed ? "✓" : (failedBlocking ? "✗" : "!")),
      " ", h("strong", { class: "check-status" }, label), " ",
      h("span", { class: "check-name" }, c.name),
      c.detail ? h("span", { class: "check-detail" }, ": " + c.detail) : null);
  }

  function renderChecks(checks) {
    var list = clear($("draft-checks"));
    var failing = checks.filter(function (c) { return !c.passed && c.blocking !== false; });
    // failed blocking checks first, so they are seen before the passing ones
    var ordered = failing.concat(checks.filter(function (c) { return failing.indexOf(c) < 0; }));
    ordered.forEach(function (c) { list.appendChild(checkItem(c)); });
    var summary = $("draft-checks-summary");
    summary.textContent = failing.length
      ? failing.length + " blocking check" + (failing.length > 1 ? "s" : "") + " FAILED: this draft cannot be approved as it is."
      : "All blocking checks passed.";
    summary.className = "checks-summary " + (failing.length ? "check-failed" : "check-passed");
  }

  function renderVersions(d) {
    var list = clear($("draft-versions"));
    var versions = (d.versions || []).slice().sort(function (a, b) { return b.version - a.version; });
    versions.forEach(function (v) {
      list.appendChild(h("li", { dataset: { version: v.version } },
        h("details", null,
          h("summary", null, "v" + v.version + (v.version === d.version ? " (current)" : "") + " · " +
            (v.author || "copilot") + " · " + fmtTime(v.created_at) + " · " +
            (v.passed === false ? "checks failed" : v.passed === true ? "checks passed" : "")),
          h("p", { class: "version-title" }, h("strong", null, v.title || "")),
          h("pre", { class: "version-body" }, v.body || ""))));
    });
    if (!versions.length) list.appendChild(h("li", null, "v" + d.version + " (current)"));
  }

  function applyDraftPermissions(d) {
    var open = d.state === "draft";
    var closedWhy = "This draft is " + d.state + ": only open drafts can change";
    ["draft-save", "draft-approve", "draft-reject", "draft-override-approve"].forEach(function (id) {
      var el = $(id);
      el.disabled = false;
      el.removeAttribute("title");
      delete el.dataset.gated;
    });
    var allowed = gate($("draft-save"), "drafts", $("draft-perm"));
    gate($("draft-approve"), "drafts");
    gate($("draft-reject"), "drafts");
    gate($("draft-override-approve"), "override", null,
         "Only a role with the override permission (commander) can approve over failing checks");
    ["draft-title", "draft-body", "draft-components", "draft-reject-reason"].forEach(function (id) {
      $(id).readOnly = !(allowed && open);
    });
    if (allowed && !open) {
      ["draft-save", "draft-approve", "draft-reject", "draft-override-approve"].forEach(function (id) {
        $(id).disabled = true;
        $(id).title = closedWhy;
      });
      $("draft-perm").textContent = closedWhy + ".";
      show($("draft-perm"), true);
    }
  }

  async function generateDraft() {
    if (!can("drafts")) return;
    clearError();
    var btn = $("draft-generate");
    btn.disabled = true;
    btn.setAttribute("aria-busy", "true");
    try {
      var d = await api("POST", "/v1/incidents/" + state.incidentId + "/drafts", {
        stage: $("draft-stage").value, audience: $("draft-audience").value,
      });
      announce("Draft #" + d.id + " generated.");
      await loadDrafts();
      await selectDraft(d.id, true);
    } catch (err) {
      report(err);
    } finally {
      btn.setAttribute("aria-busy", "false");
      gate(btn, "drafts", $("drafts-perm"));
      if (can("drafts")) btn.disabled = false;
    }
  }

  async function saveDraft() {
    var d = state.draft;
    if (!d) return;
    clearError();
    var components = $("draft-components").value.split(",")
      .map(function (s) { return s.trim(); }).filter(Boolean);
    try {
      var saved = await api("PUT", "/v1/drafts/" + d.id, {
        title: $("draft-title").value, body: $("draft-body").value,
        components: components, base_version: d.version,
      });
      var full = saved.versions ? saved : await api("GET", "/v1/drafts/" + d.id);
      showDraft(full);
      setDraftMessage("Saved as version " + full.version + ".", "ok");
      announce("Draft saved as version " + full.version + ".");
    } catch (err) {
      if (err.handled) return;
      if (err.status === 409) {
        setDraftMessage("Not saved: " + err.message + " Reload the draft to see the current version.");
      } else {
        report(err);
      }
    }
  }

  function failedChecksFrom(err) {
    var body = err.body || {};
    var failed = body.failed_checks || body.checks || [];
    return failed.map(function (c) {
      return typeof c === "string" ? { name: c, passed: false, blocking: true, detail: "" } : c;
    });
  }

  async function approveDraft(overrideReason) {
    var d = state.draft;
    if (!d) return;
    clearError();
    var payload = {};
    if (overrideReason) payload.override_reason = overrideReason;
    try {
      var approved = await api("POST", "/v1/drafts/" + d.id + "/approve", payload);
      var full = approved.versions ? approved : await api("GET", "/v1/drafts/" + d.id);
      showDraft(full);
      setDraftMessage("Approved" + (overrideReason ? " with an override" : "") + ".", "ok");
      announce("Draft approved.");
    } catch (err) {
      if (err.handled) return;
      if (err.status === 409) {
        var failed = failedChecksFrom(err);
        var content = [h("p", null, h("strong", null, "Approval refused: "), err.message)];
        if (failed.length) {
          content.push(h("ul", { class: "checks", id: "draft-failed-checks" }, failed.map(checkItem)));
        }
        if (can("override")) {
          content.push(h("p", null, "As " + roleName() + " you may approve anyway: give a reason below."));
        } else {
          content.push(h("p", null, "Fix the draft and save a new version; only a commander can override."));
        }
        setDraftMessage(content);
        if (failed.length) {
          // mark the listed failures in the checks list too
          var names = failed.map(function (c) { return c.name; });
          Array.prototype.forEach.call($("draft-checks").children, function (li) {
            if (names.indexOf(li.dataset.check) >= 0) li.classList.add("refused");
          });
        }
        var canOverride = can("override") && d.state === "draft";
        show($("draft-override-form"), canOverride);
        if (canOverride) $("draft-override-reason").focus();
        else $("draft-message").focus();
      } else {
        report(err);
      }
    }
  }

  async function rejectDraft() {
    var d = state.draft;
    if (!d) return;
    var reason = $("draft-reject-reason").value.trim();
    if (!reason) {
      setDraftMessage("Give a reason to reject the draft.");
      $("draft-reject-reason").focus();
      return;
    }
    clearError();
    try {
      var rejected = await api("POST", "/v1/drafts/" + d.id + "/reject", { reason: reason });
      var full = rejected.versions ? rejected : await api("GET", "/v1/drafts/" + d.id);
      showDraft(full);
      setDraftMessage("Rejected.", "ok");
      announce("Draft rejected.");
    } catch (err) {
      if (err.handled) return;
      if (err.status === 409) setDraftMessage("Not rejected: " + err.message);
      else report(err);
    }
  }

  // ------------------------------------------------------------------ wiring

  function wire() {
    $("signin-form").addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var key = $("api-key").value.trim();
      if (!key) { setSigninMessage("Paste an API key first."); $("api-key").focus(); return; }
      $("signin-submit").disabled = true;
      try {
        if (await signIn(key, false)) {
          setSigninMessage("");
          if (location.hash === "#/signin" || !location.hash) location.hash = "#/";
          else route();
        } else {
          $("api-key").focus();
        }
      } finally {
        $("signin-submit").disabled = false;
      }
    });
    $("skip-link").addEventListener("click", function (ev) {
      ev.preventDefault(); // keep the route in the hash; just move focus
      $("main").focus();
      $("main").scrollIntoView();
    });
    $("signout").addEventListener("click", function () { signOut("You signed out."); });
    $("alert-dismiss").addEventListener("click", function () { clearError(); $("main").focus(); });
    $("list-refresh").addEventListener("click", function () { renderList(); });

    $("chat-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var q = $("chat-question").value.trim();
      if (!q) { $("chat-question").focus(); return; }
      $("chat-question").value = "";
      ask(q);
    });
    $("chat-clear").addEventListener("click", function () {
      state.history = [];
      clear($("chat-log"));
      $("chat-question").focus();
      announce("Conversation cleared.");
    });

    $("summary-refresh").addEventListener("click", loadSummary);
    $("rootcause-refresh").addEventListener("click", loadRootCauses);
    $("runbook-refresh").addEventListener("click", loadRunbooks);

    $("draft-generate-form").addEventListener("submit", function (ev) { ev.preventDefault(); generateDraft(); });
    $("draft-edit-form").addEventListener("submit", function (ev) { ev.preventDefault(); saveDraft(); });
    $("draft-approve").addEventListener("click", function () { approveDraft(null); });
    $("draft-override-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var reason = $("draft-override-reason").value.trim();
      if (!reason) { $("draft-override-reason").focus(); return; }
      approveDraft(reason);
    });
    $("draft-reject-form").addEventListener("submit", function (ev) { ev.preventDefault(); rejectDraft(); });

    var dialog = $("source-dialog");
    $("source-close").addEventListener("click", closeSource);
    dialog.addEventListener("close", onSourceClosed);
    dialog.addEventListener("click", function (ev) {
      if (ev.target !== dialog) return;
      var r = dialog.getBoundingClientRect();
      var inside = ev.clientX >= r.left && ev.clientX <= r.right &&
                   ev.clientY >= r.top && ev.clientY <= r.bottom;
      if (!inside) closeSource(); // a click on the backdrop
    });

    window.addEventListener("hashchange", route);
  }

  document.addEventListener("DOMContentLoaded", function () {
    wire();
    route();
  });
})();
