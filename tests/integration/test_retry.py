#!/usr/bin/env python3
# ctest-labels: asan
"""retry.so (plugins/retry) in a running gateway, configured as the default file does it (the seed's
RETRY_* variables, ${VAR:-default}). Scripted upstreams on free 127.0.0.1 ports (threads of this process,
each hit recorded with its arrival time): 503 twice then 200 gives the client 200 with X-Retry-Count: 2,
the upstream's gaps between attempts within the backoff's jitter bounds; a POST that reached the upstream
is not retried; a POST whose target refused the connection is retried on the healthy second target;
RETRY_MAX_RETRIES=0 disables retries; retries move from a failing target to a healthy one; a final error
still carries X-Retry-Count; during a full outage the budget caps the upstream's load near
requests * (1 + budget_ratio) + budget_min_per_second per second."""

import http.server
import os
import socket
import threading
import time
import unittest

import gwtest as g

PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(g.GW_BIN)), "plugins")
RETRY_SO = os.path.join(PLUGIN_DIR, "retry.so")

PIPELINE = """
pipeline:
  - name: retry
    max_retries: ${RETRY_MAX_RETRIES:-3}
    initial_delay_ms: ${RETRY_INITIAL_DELAY_MS:-100}
    max_delay_ms: ${RETRY_MAX_DELAY_MS:-5000}
    multiplier: ${RETRY_MULTIPLIER:-2.0}
    jitter: ${RETRY_JITTER_FACTOR:-0.1}
"""


class Scripted:
    """An HTTP/1.1 upstream answering from a script: the first len(script) requests get those statuses in
    turn, later ones `then`. Records (monotonic time, method, path, body length) for every request."""

    def __init__(self, script=(), then=200):
        self.script = list(script)
        self.then = then
        self.hits = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with outer.lock:
                    i = len(outer.hits)
                    outer.hits.append((time.monotonic(), self.command, self.path, len(body)))
                    status = outer.script[i] if i < len(outer.script) else outer.then
                data = b'{"hit": %d}' % (i + 1)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

        self.server = http.server.ThreadingHTTPServer((g.LOCALHOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d" % (g.LOCALHOST, self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.hits)

    def times(self):
        with self.lock:
            return [h[0] for h in self.hits]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def refused_port():
    """A loopback port nobody listens on (bound, then closed)."""
    s = socket.socket()
    s.bind((g.LOCALHOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RetryCase(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(RETRY_SO):
            self.fail("%s not built" % RETRY_SO)

    def upstream(self, script=(), then=200):
        up = Scripted(script, then)
        self.addCleanup(up.stop)
        return up

    def gateway(self, targets, env=None, pipeline=PIPELINE, workers=1):
        def cfg(port):
            services = [{"name": "svc", "targets": targets}]
            routes = [{"prefix": "/api", "service": "svc"}]
            return g.to_yaml(g.base_config(port, services, routes, workers=workers)) + pipeline
        env = dict(env or {})
        for k in ("RETRY_MAX_RETRIES", "RETRY_INITIAL_DELAY_MS", "RETRY_MAX_DELAY_MS", "RETRY_MULTIPLIER",
                  "RETRY_JITTER_FACTOR"):
            env.setdefault(k, None)  # the defaults unless a test sets one
        return self.start_gateway(cfg, env=env)

    def call(self, gw, method="GET", path="/api/x", body=b"", timeout=None):
        headers = [("Content-Type", "application/json")] if body else []
        return g.simple_request(gw.port, method, path, headers, body, timeout=timeout or 10.0 * g.SLOW)

    def test_503_twice_then_200(self):
        up = self.upstream([503, 503])
        gw = self.gateway([up.url])
        t0 = time.monotonic()
        r = self.call(gw)
        took = time.monotonic() - t0
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.header("x-retry-count"), "2", r.summary())
        self.assertEqual(up.count(), 3)
        t = up.times()
        gaps = [(t[1] - t[0]) * 1000, (t[2] - t[1]) * 1000]
        # 100 ms and 200 ms, +/- 10 % jitter; a loaded machine only ever makes them later
        self.assertGreaterEqual(gaps[0], 89, gaps)
        self.assertGreaterEqual(gaps[1], 179, gaps)
        self.assertLess(gaps[0], 110 + 400 * g.SLOW, gaps)
        self.assertLess(gaps[1], 220 + 400 * g.SLOW, gaps)
        self.assertGreaterEqual(took, 0.27)
        # a request that needed no retry has no header
        r = self.call(gw)
        self.assertEqual(r.status, 200, r.summary())
        self.assertIsNone(r.header("x-retry-count"), r.summary())
        self.assertEqual(up.count(), 4)

    def test_post_sent_not_retried(self):
        up = self.upstream([503, 503])
        gw = self.gateway([up.url])
        r = self.call(gw, "POST", body=b'{"a": 1}')
        self.assertEqual(r.status, 503, r.summary())
        self.assertIsNone(r.header("x-retry-count"), r.summary())
        time.sleep(0.4)  # a retry, had there been one, would have arrived by now
        self.assertEqual(up.count(), 1)
        # PUT is idempotent: retried
        r = self.call(gw, "PUT", body=b'{"a": 1}')
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.header("x-retry-count"), "1", r.summary())
        self.assertEqual(up.count(), 3)

    def test_post_connect_failure_retried_on_second_target(self):
        up = self.upstream()
        gw = self.gateway(["http://%s:%d" % (g.LOCALHOST, refused_port()), up.url])
        retried = 0
        for i in range(6):
            r = self.call(gw, "POST", body=b'{"n": %d}' % i)
            self.assertEqual(r.status, 200, r.summary())
            retried += r.header("x-retry-count") is not None
        self.assertEqual(up.count(), 6)  # each POST reached the upstream exactly once
        self.assertGreaterEqual(retried, 1)
        self.assertTrue(all(h[1] == "POST" and h[3] > 0 for h in up.hits), up.hits)

    def test_retries_reach_healthy_target(self):
        # the budget is off here: six quick requests would spend the floor (3 retries a second); the
        # budget has a test of its own
        bad = self.upstream(then=503)
        good = self.upstream()
        gw = self.gateway([bad.url, good.url], pipeline=PIPELINE + "    budget: false\n")
        for _ in range(6):
            r = self.call(gw)
            self.assertEqual(r.status, 200, r.summary())
            # a retry goes to the other target at once, never back to the one that just failed
            self.assertIn(r.header("x-retry-count"), (None, "1"), r.summary())
        self.assertEqual(good.count(), 6)
        self.assertGreaterEqual(bad.count(), 1)
        self.assertLessEqual(bad.count(), 6)

    def test_max_retries_zero_disables(self):
        up = self.upstream([503, 503])
        gw = self.gateway([up.url], env={"RETRY_MAX_RETRIES": "0"})
        r = self.call(gw)
        self.assertEqual(r.status, 503, r.summary())
        self.assertIsNone(r.header("x-retry-count"), r.summary())
        time.sleep(0.3)
        self.assertEqual(up.count(), 1)

    def test_final_error_counts_retries(self):
        up = self.upstream(then=502)
        gw = self.gateway([up.url], env={"RETRY_MAX_RETRIES": "2", "RETRY_INITIAL_DELAY_MS": "20"})
        r = self.call(gw)
        self.assertEqual(r.status, 502, r.summary())
        self.assertEqual(r.header("x-retry-count"), "2", r.summary())
        self.assertEqual(up.count(), 3)
        # nobody listening: the gateway's own 502 JSON, also counted
        gw2 = self.gateway(["http://%s:%d" % (g.LOCALHOST, refused_port())],
                           env={"RETRY_MAX_RETRIES": "2", "RETRY_INITIAL_DELAY_MS": "20"})
        r = self.call(gw2)
        self.assertEqual(r.status, 502, r.summary())
        self.assertEqual(r.header("x-retry-count"), "2", r.summary())
        self.assertEqual(r.json()["error"], "Bad Gateway", r.summary())

    def test_open_breaker_ends_retries(self):
        # retry before breaker, as in the default pipeline: each retry asks the breaker first
        up = self.upstream(then=503)
        pipeline = PIPELINE + "  - name: breaker\n    max_failures: 2\n    reset_timeout: 30s\n"
        gw = self.gateway([up.url], env={"RETRY_INITIAL_DELAY_MS": "20"}, pipeline=pipeline)
        r = self.call(gw)
        self.assertEqual(r.status, 503, r.summary())
        self.assertEqual(r.json()["message"], "Circuit breaker is open for svc", r.summary())
        self.assertEqual(r.header("x-retry-count"), "2", r.summary())
        self.assertIsNotNone(r.header("retry-after"), r.summary())
        self.assertEqual(up.count(), 2)  # the third attempt never left the gateway

    def test_client_gone_during_backoff(self):
        up = self.upstream([503])
        gw = self.gateway([up.url], env={"RETRY_INITIAL_DELAY_MS": "600", "RETRY_JITTER_FACTOR": "0"},
                          pipeline=PIPELINE + "  - name: metrics\n")
        s = socket.create_connection((g.LOCALHOST, gw.port), timeout=5)
        s.sendall(g.request_bytes("GET", "/api/x"))
        g.wait_until(lambda: up.count() == 1, 5 * g.SLOW, what="the first attempt")
        s.close()  # during the 600 ms backoff
        time.sleep(1.0 * g.SLOW)
        self.assertEqual(up.count(), 1, "a retry was sent for a client that had gone")
        # and none is counted: the retry never began
        m = g.simple_request(gw.port, "GET", "/metrics").body.decode()
        counted = [ln for ln in m.splitlines() if ln.startswith("gateway_retries_total{")]
        self.assertTrue(all(ln.endswith(" 0") for ln in counted), counted)
        r = self.call(gw)  # the worker is fine and the next request is served
        self.assertEqual(r.status, 200, r.summary())

    def test_budget_caps_outage(self):
        up = self.upstream(then=503)
        pipeline = PIPELINE + "    budget_ratio: 0.2\n    budget_min_per_second: 3\n    budget_window: 10s\n"
        gw = self.gateway([up.url], env={"RETRY_INITIAL_DELAY_MS": "1", "RETRY_MAX_DELAY_MS": "5"},
                          pipeline=pipeline, workers=2)
        n = 100
        results = [None] * n

        def worker(k):
            for i in range(k, n, 4):
                try:
                    results[i] = self.call(gw).status
                except Exception as e:  # noqa: BLE001 - reported below
                    results[i] = e

        t0 = time.monotonic()
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        seconds = time.monotonic() - t0 + 1  # every second it touched may have had its floor
        self.assertEqual(results, [503] * n)
        hits = up.count()
        cap = n + 0.2 * n + 3 * seconds + 4  # two workers deciding at the same moment may each say yes
        self.assertLessEqual(hits, cap, "hits %d, %.1f s" % (hits, seconds))
        self.assertGreaterEqual(hits, n + 3)  # the floor let some through
        self.assertLess(hits, n * 4)  # without a budget: n * (1 + max_retries)


if __name__ == "__main__":
    unittest.main()
