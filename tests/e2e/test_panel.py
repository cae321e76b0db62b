"""End-to-end test of the web panel (api/web) in a real headless Chromium, driven by
Playwright, against the real app served on loopback over the demo data.

Needs the `playwright` Python package and a Chromium binary (the Debian package,
/usr/bin/chromium, or COPILOT_CHROMIUM); never `playwright install`. Without them the tests
skip, unless COPILOT_REQUIRE_BROWSER=1, when they fail. Screenshots go to $COPILOT_SCREENSHOTS
(default: the test's tmp_path), never into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

QUESTION = "What changed before the first alert?"
INTERNAL_HOST = "db-7.lumenfield.internal"
VIEWPORT = {"width": 1366, "height": 768}
TIMEOUT_MS = 20_000


def _chromium() -> str | None:
    explicit = os.environ.get("COPILOT_CHROMIUM")
    candidates = [explicit] if explicit else ["/usr/bin/chromium", shutil.which("chromium") or ""]
    for path in candidates:
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return None


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if _chromium() is None:
        where = os.environ.get("COPILOT_CHROMIUM") or "/usr/bin/chromium"
        return f"no Chromium binary at {where} (apt-get install chromium, or set COPILOT_CHROMIUM)"
    return None


MISSING = _missing()
REQUIRED = os.environ.get("COPILOT_REQUIRE_BROWSER") == "1"
if MISSING and not REQUIRED:
    # decided at collection, so a machine without a browser does not build the demo first
    pytestmark = pytest.mark.skip(reason=MISSING)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if MISSING:
        pytest.fail(f"COPILOT_REQUIRE_BROWSER=1 but {MISSING}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), headless=True,
                              args=["--no-proxy-server", "--disable-gpu"])
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str, key: str | None = None) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with _NO_PROXY.open(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def server(demo_env, demo_copilot) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The real app (create_app over the demo copilot) on a loopback port, with one fresh API
    key per role."""
    import uvicorn

    from api.app import create_app
    from copilot.auth import create_key

    settings, _retriever, incident_id = demo_env
    keys: dict[str, str] = {}
    key_ids: dict[str, int] = {}
    with demo_copilot.store.session() as s:
        for role in ("responder", "commander", "comms"):
            row, keys[role] = create_key(s, name=f"e2e-{role}-{uuid.uuid4().hex[:6]}", role=role)
            key_ids[role] = row.id
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(settings, copilot=demo_copilot),
                                       host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            _get_json(f"{base}/healthz")
            break
        except OSError:
            if not thread.is_alive() or time.monotonic() > deadline:
                srv.should_exit = True
                pytest.fail("the app did not start on loopback")
            time.sleep(0.1)
    try:
        yield {"base": base, "keys": keys, "key_ids": key_ids, "incident": incident_id,
               "store": demo_copilot.store}
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("COPILOT_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def page(browser, server) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=VIEWPORT, base_url=server["base"])
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the panel: {errors}"


def wait_js(page: Any, expression: str, timeout_ms: int = TIMEOUT_MS) -> None:
    """Poll a JavaScript condition. (Playwright's wait_for_function compiles its predicate
    with eval, which the panel's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
        page.wait_for_timeout(100)


def snap(page: Any, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def sign_in(page: Any, key: str) -> None:
    page.goto("/")
    page.fill("#api-key", key)
    page.press("#api-key", "Enter")  # Enter submits the form
    page.wait_for_selector("#whoami:not(:empty)")


def open_incident(page: Any, incident_id: int) -> None:
    page.click(f"#incident-link-{incident_id}")
    page.wait_for_selector("#incident-view:not([hidden])")
    wait_js(page, "document.getElementById('incident-title').textContent.length > 12")


def no_horizontal_scroll(page: Any) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"horizontal scroll at 1366x768: {widths}"


def generate_draft(page: Any, audience: str = "customers") -> int:
    page.select_option("#draft-stage", "investigating")
    page.select_option("#draft-audience", audience)
    with page.expect_response(lambda r: r.request.method == "POST"
                              and r.url.endswith("/drafts")) as info:
        page.click("#draft-generate")
    resp = info.value
    assert resp.status == 201, resp.text()
    draft_id = resp.json()["id"]
    page.wait_for_selector(f'#draft-detail[data-draft-id="{draft_id}"]:not([hidden])')
    assert page.text_content("#draft-version") == "1"
    return int(draft_id)


def edit_body(page: Any, body: str) -> None:
    page.fill("#draft-body", body)
    with page.expect_response(lambda r: r.request.method == "PUT" and "/v1/drafts/" in r.url) as info:
        page.click("#draft-save")
    assert info.value.status == 200, info.value.text()
    wait_js(page, "document.getElementById('draft-version').textContent === '2'")


def test_chat_streams_cited_answer_and_source_viewer(page, server, shots) -> None:  # type: ignore[no-untyped-def]
    # a refused key: the sign-in screen says why
    page.goto("/")
    page.wait_for_selector("#signin-view:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.fill("#api-key", "icp_not-a-real-key")
    page.click("#signin-submit")
    page.wait_for_selector("#signin-message:not([hidden])")
    assert "refused" in page.text_content("#signin-message")

    sign_in(page, server["keys"]["commander"])
    assert "(commander)" in page.text_content("#whoami")
    page.wait_for_selector(f"#incident-link-{server['incident']}")
    row = page.locator(f'#incident-rows tr[data-incident-id="{server["incident"]}"]')
    assert "checkout-api" in row.inner_text()
    no_horizontal_scroll(page)
    snap(page, shots, "01-incident-list")
    # keyboard: the first Tab stop is the skip link, and it lands in the main region
    page.focus("#brand-link")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    open_incident(page, server["incident"])
    # the commander's summary, root causes and runbooks load, with citation links
    for body in ("#summary-body", "#rootcause-body", "#runbook-body"):
        page.wait_for_selector(f'{body}[data-state="loaded"]')
        assert page.locator(f"{body} a.cite").count() >= 1, body
    assert page.locator("#rootcause-body .hypothesis").count() >= 1
    assert page.locator("#runbook-body .runbook").count() >= 1

    # watch the live region: count token text landing before the final answer renders
    page.evaluate("""() => {
        // in mutation order: token text landing in the live region, then the final answer
        window.__e2e = {tokens: 0, finalAt: null};
        const log = document.getElementById('chat-log');
        new MutationObserver(records => {
            for (const r of records) {
                if (r.type !== 'childList') continue;
                const inStream = r.target.closest && r.target.closest('[data-testid=chat-stream]');
                for (const n of r.addedNodes) {
                    if (inStream && n.nodeType === Node.TEXT_NODE) window.__e2e.tokens += 1;
                    if (n.classList && n.classList.contains('answer-body')) {
                        window.__e2e.finalAt ??= window.__e2e.tokens;
                    }
                }
            }
        }).observe(log, {childList: true, subtree: true});
    }""")
    page.fill("#chat-question", QUESTION)
    page.press("#chat-question", "Enter")
    answer = page.locator("#chat-log .msg-assistant").last
    page.wait_for_selector('#chat-log .msg-assistant[data-state="final"]')
    assert page.get_attribute("#chat-log", "aria-live") == "polite"
    before_final = int(answer.get_attribute("data-tokens-before-final") or 0)
    assert before_final >= 3, f"only {before_final} token events arrived before the final"
    shown = page.evaluate("window.__e2e.finalAt")
    assert shown is not None and shown >= before_final, f"{shown} tokens shown before the final"
    assert answer.locator("[data-testid=chat-stream]").text_content().strip(), "no streamed text"
    chips = answer.locator("a.cite")
    assert chips.count() >= 1, "the answer has no citation link"
    text = answer.inner_text()
    assert "[S1]" in text or "[S" in text
    assert "2.84.0" in text or "deploy" in text.lower(), text
    snap(page, shots, "02-chat-answer")

    # a citation opens the source viewer, focus moves into it, Escape closes it and returns focus
    chip = chips.first
    source_id = chip.get_attribute("data-source-id")
    chip.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector('#source-dialog[open][data-loaded="true"]')
    assert page.text_content("#source-id") == source_id
    assert page.text_content("#source-text").strip(), "the source viewer shows no text"
    assert page.evaluate("document.getElementById('source-dialog').contains(document.activeElement)")
    no_horizontal_scroll(page)
    snap(page, shots, "03-source-viewer")
    page.keyboard.press("Escape")
    page.wait_for_selector("#source-dialog:not([open])", state="attached")
    assert page.evaluate("document.activeElement.dataset.sourceId") == source_id

    # a follow-up question carries the history
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/chat")) as req:
        page.fill("#chat-question", "Which alerts fired?")
        page.press("#chat-question", "Enter")
    sent = json.loads(req.value.post_data or "{}")
    assert [t["role"] for t in sent["history"]] == ["user", "assistant"]
    assert sent["history"][0]["content"] == QUESTION
    wait_js(page, "document.querySelectorAll('#chat-log .msg-assistant[data-state=final]').length === 2")

    # a commander may override a draft whose blocking check fails: the field is offered
    generate_draft(page)
    edit_body(page, f"We are investigating errors at checkout. Host {INTERNAL_HOST} is down.")
    page.click("#draft-approve")
    page.wait_for_selector("#draft-override-form:not([hidden])")
    assert page.locator("#draft-failed-checks li.check-failed").count() >= 1
    page.fill("#draft-reject-reason", "names an internal host")
    page.click("#draft-reject")
    wait_js(page, "document.getElementById('draft-state').textContent === 'rejected'")
    assert page.is_disabled("#draft-approve")

    # sign out: back to the sign-in screen
    page.click("#signout")
    page.wait_for_selector("#signin-view:not([hidden])")


def test_comms_drafts_review_approve_and_publish(page, server, shots) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, server["keys"]["comms"])
    assert "(comms)" in page.text_content("#whoami")
    page.wait_for_selector(f"#incident-link-{server['incident']}")
    open_incident(page, server["incident"])

    # what comms may not do is disabled, and says why
    assert page.is_disabled("#chat-submit")
    assert "chat" in (page.get_attribute("#chat-submit", "title") or "")
    page.wait_for_selector('#summary-body[data-state="forbidden"]')
    assert "needs the commander role" in page.text_content("#summary-body")
    assert page.is_hidden("#alert"), page.text_content("#alert")

    # generate a customer draft, edit it (version 2), approve it
    draft_id = generate_draft(page, "customers")
    original = page.input_value("#draft-body")
    assert original.strip()
    edited = original.rstrip() + "\n\nWe are sorry for the trouble and will update again soon."
    edit_body(page, edited)
    assert page.locator("#draft-versions li").count() == 2
    assert page.locator("#draft-checks li.check-failed").count() == 0
    snap(page, shots, "04-draft-edited")
    with page.expect_response(lambda r: r.url.endswith(f"/v1/drafts/{draft_id}/approve")) as info:
        page.click("#draft-approve")
    assert info.value.status == 200, info.value.text()
    wait_js(page, "document.getElementById('draft-state').textContent === 'approved'")
    assert page.is_disabled("#draft-save") and page.is_disabled("#draft-approve")
    assert page.locator(f'#draft-item-{draft_id}[data-state="approved"]').count() == 1

    feed = _get_json(f"{server['base']}/v1/feed/status.json")
    published = [u for u in feed["updates"] if u["id"] == draft_id]
    assert published, feed
    assert "will update again soon" in published[0]["body"]

    # a draft naming an internal host: its failed check is highlighted, approval refused
    bad_id = generate_draft(page, "customers")
    edit_body(page, f"Checkout is failing. The database {INTERNAL_HOST} is refusing connections.")
    failed = page.locator("#draft-checks li.check-failed")
    assert failed.count() >= 1
    assert "FAILED" in failed.first.inner_text()
    colour = failed.first.evaluate("el => getComputedStyle(el).backgroundColor")
    passed = page.locator("#draft-checks li.check-passed")
    if passed.count():
        assert passed.first.evaluate("el => getComputedStyle(el).backgroundColor") != colour
    with page.expect_response(lambda r: r.url.endswith(f"/v1/drafts/{bad_id}/approve")) as info:
        page.click("#draft-approve")
    assert info.value.status == 409
    page.wait_for_selector("#draft-message:not([hidden]) #draft-failed-checks li.check-failed")
    assert "Approval refused" in page.text_content("#draft-message")
    assert page.is_hidden("#draft-override-form"), "comms may not override"
    assert page.text_content("#draft-state") == "draft"
    no_horizontal_scroll(page)
    snap(page, shots, "05-draft-refused")
    feed = _get_json(f"{server['base']}/v1/feed/status.json")
    assert all(u["id"] != bad_id for u in feed["updates"]), "a refused draft was published"


def test_unauthorized_returns_to_sign_in(page, server) -> None:  # type: ignore[no-untyped-def]
    from copilot.auth import revoke

    sign_in(page, server["keys"]["responder"])
    page.wait_for_selector(f"#incident-link-{server['incident']}")
    with server["store"].session() as s:
        revoke(s, server["key_ids"]["responder"])
    page.click("#list-refresh")  # the next call gets 401: back to sign-in, with the reason
    page.wait_for_selector("#signin-view:not([hidden])")
    assert "revoked" in page.text_content("#signin-message")
    assert page.evaluate("sessionStorage.getItem('incident-copilot.api-key')") is None
    page.reload()  # nothing kept: still signed out
    page.wait_for_selector("#signin-view:not([hidden])")


def test_panel_is_served_under_a_strict_content_security_policy(server) -> None:  # type: ignore[no-untyped-def]
    with urllib.request.urlopen(server["base"] + "/", timeout=10) as res:
        csp = res.headers["Content-Security-Policy"]
        html = res.read().decode()
    assert "default-src 'self'" in csp and "unsafe" not in csp
    assert "<script>" not in html and " style=" not in html  # nothing inline for CSP to block
