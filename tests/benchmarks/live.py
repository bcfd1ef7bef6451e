"""Live-update latency: from a committed signature to the websocket frame in a real browser.

The real web server, real Postgres and Redis channel layer, Debian's chromium driven by Playwright on a batch page.
Each sample posts one real signature to the intake (its 202 is sent after the commit) and waits for the browser to
receive the matching ``signature.accepted`` frame. Measured in the same run: one plain HTTP round trip (GET
/healthz) and the intake POST's own round trip.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import requests

from tests.benchmarks.serve import served

CHROMIUM = "/usr/bin/chromium"

# Records every websocket frame's arrival time (ms since the epoch, the browser's clock = this machine's clock).
FRAME_RECORDER = """
(() => {
  window.__frames = [];
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const socket = new Native(...args);
    socket.addEventListener("message", (event) => {
      try { window.__frames.push({at: Date.now(), message: JSON.parse(event.data)}); } catch (e) {}
    });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""


def _frame_for(page: Any, signature_id: int, timeout: float = 10.0) -> float:
    """The arrival time (s since the epoch) of the signature.accepted frame for ``signature_id``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = page.evaluate(
            """(id) => {
                const f = window.__frames.find((f) => f.message.type === "change"
                    && f.message.kind === "signature.accepted" && f.message.data
                    && f.message.data.signature_id === id);
                return f ? f.at : null;
            }""",
            signature_id,
        )
        if found is not None:
            return float(found) / 1000.0
        time.sleep(0.005)
    seen = page.evaluate(
        "window.__frames.map((f) => [f.message.type, f.message.seq, f.message.kind,"
        " (f.message.data || {}).signature_id])"
    )
    raise TimeoutError(f"no frame for signature {signature_id} within {timeout:g} s; frames: {seen}")


def bench_live(*, env: dict[str, str], bodies: list[dict[str, Any]], page_path: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    child_env = {**env, "PUBLIC_DASHBOARD": "1", "LOG_LEVEL": "WARNING"}
    session = requests.Session()
    with served(env=child_env) as base:
        http_rtt = []
        for _ in range(30):
            started = time.perf_counter()
            assert session.get(base + "/healthz", timeout=5).status_code == 200
            http_rtt.append(time.perf_counter() - started)
        post_rtt: list[float] = []
        from_commit: list[float] = []
        from_post: list[float] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page()
            page.add_init_script(FRAME_RECORDER)
            page.goto(base + page_path)
            page.wait_for_function(
                "window.__frames.some((f) => f.message.type === 'snapshot')", timeout=15000
            )
            for body in bodies:
                sent_at = time.time()
                answer = session.post(
                    base + "/api/v1/signatures",
                    data=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                    timeout=10,
                )
                acked_at = time.time()
                assert answer.status_code == 202, answer.text
                signature_id = answer.json()["signatureId"]
                arrived = _frame_for(page, signature_id)
                post_rtt.append(acked_at - sent_at)
                from_commit.append(arrived - acked_at)
                from_post.append(arrived - sent_at)
            browser.close()
    return {
        "http_rtt_ms": statistics.median(http_rtt) * 1000,
        "post_rtt_ms": statistics.median(post_rtt) * 1000,
        "frame_after_ack_ms": statistics.median(from_commit) * 1000,
        "frame_after_post_ms": statistics.median(from_post) * 1000,
        "frame_after_post_p95_ms": sorted(from_post)[int(len(from_post) * 0.95) - 1] * 1000,
        "samples": float(len(bodies)),
    }


def bench_live_report(result: dict[str, float]) -> None:
    post_to_frame = result["frame_after_post_ms"]
    print(f"live updates: {int(result['samples'])} signatures of one batch, its page open in chromium")
    print(f"  plain HTTP round trip (GET /healthz):             {result['http_rtt_ms']:7.1f} ms (median)")
    print(f"  intake POST round trip (202 sent after commit):   {result['post_rtt_ms']:7.1f} ms (median)")
    print(
        f"  POST sent -> frame in the browser:                {post_to_frame:7.1f} ms "
        f"(median; p95 {result['frame_after_post_p95_ms']:.1f} ms)"
    )
    print(
        f"  frame vs the 202 reaching the client:             {result['frame_after_ack_ms']:+7.1f} ms "
        "(negative: the frame arrives first)"
    )
    print(
        f"  ratio: POST->frame / plain HTTP round trip = {post_to_frame / result['http_rtt_ms']:.2f}; "
        f"/ intake POST round trip = {post_to_frame / result['post_rtt_ms']:.2f}"
    )
