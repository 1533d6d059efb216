#!/usr/bin/env python3
# ctest-labels: asan
"""breaker.so (plugins/breaker) in a running gateway, configured as conf/gateway.yaml writes it (the seed's
CB_* variables with their defaults), against real upstream servers: every service listed before traffic; an
upstream answering 500 opens its breaker after exactly CB_MAX_FAILURES requests, then the 503 JSON comes at
once with Retry-After and the upstream sees nothing more; after the reset timeout it half-opens, admits
exactly CB_HALF_OPEN_MAX_REQUESTS concurrent probes (held by a hanging upstream; clients that reset their
connections free their slots) and closes after CB_SUCCESS_THRESHOLD successes; reset one / all / 404 behind adminauth; with
two workers the failures are counted and the state reported alike whichever worker answers; the state
survives SIGHUP; per-service and per-route overrides; a per-service override naming an unknown service refuses to start."""

import base64
import json
import os
import socket
import statistics
import struct
import sys
import threading
import time
import unittest

import gwtest as g

CONFIG = """\
listeners:
  - address: 127.0.0.1
    port: {port}
workers: {workers}
timeouts:
  shutdown: 3s
services:
  - name: auth-service
    targets:
      - {auth_url}
  - name: user-service
    targets:
      - {user_url}
routes:
  - prefix: /api/auth
    service: auth-service
    strip_prefix: true
  - prefix: /api/users
    service: user-service
    strip_prefix: true
{routes}log:
  level: info
pipeline:
{adminauth}  - name: breaker
    max_failures: ${{CB_MAX_FAILURES:-5}}
    reset_timeout: ${{CB_RESET_TIMEOUT_SECONDS:-30}}
    half_open_max_requests: ${{CB_HALF_OPEN_MAX_REQUESTS:-3}}
    success_threshold: ${{CB_SUCCESS_THRESHOLD:-2}}
{extra}"""

ADMINAUTH = """\
  - name: adminauth
    username: admin
    password: s3cret-pass
"""
AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret-pass").decode()}


class BreakerTest(g.GatewayTestCase):
    def start(self, env=None, workers=1, adminauth=False, extra="", routes=""):
        self.users = self.start_upstream("users")
        self.auth = self.start_upstream("auth")
        self.admin_headers = AUTH if adminauth else {}

        def cfg(port):
            return CONFIG.format(port=port, workers=workers, auth_url=self.auth.url, user_url=self.users.url,
                                 adminauth=ADMINAUTH if adminauth else "", extra=extra, routes=routes)
        self.cfg_text = cfg
        self.gw = self.start_gateway(cfg, env=env)
        return self.gw

    def get(self, path, headers=None):
        return g.http_request(self.gw.port, "GET", path, headers=headers)

    def breakers(self):
        st, _, body = g.http_request(self.gw.port, "GET", "/admin/circuit-breakers", headers=self.admin_headers)
        self.assertEqual(st, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["status"], "success")
        return doc["data"]

    def breaker(self, name):
        for b in self.breakers():
            if b["name"] == name:
                return b
        self.fail("no breaker %s" % name)

    def post(self, path):
        return g.http_request(self.gw.port, "POST", path, headers=self.admin_headers)

    def hits(self):
        return len(self.users.requests())

    def assertBreaker503(self, status, headers, body, service="user-service"):
        self.assertEqual(status, 503, body)
        self.assertTrue(headers.get("content-type", "").startswith("application/json"))
        doc = json.loads(body)
        self.assertEqual(list(doc), ["error", "message", "request_id"])
        self.assertEqual(doc["error"], "Service unavailable")
        self.assertEqual(doc["message"], "Circuit breaker is open for %s" % service)
        self.assertEqual(doc["request_id"], headers.get("x-request-id"))
        return int(headers["retry-after"])

    def test_seed_walkthrough(self):
        self.start(env={"CB_RESET_TIMEOUT_SECONDS": "1"})
        self.assertEqual(self.breakers(), [
            {"name": "auth-service", "state": "closed", "failures": 0, "consecutive_successes": 0},
            {"name": "user-service", "state": "closed", "failures": 0, "consecutive_successes": 0}])
        for i in range(4):
            self.assertEqual(self.get("/api/users/status/500")[0], 500)
        b = self.breaker("user-service")
        self.assertEqual((b["state"], b["failures"]), ("closed", 4))
        self.assertRegex(b["last_failure"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(self.get("/api/users/status/500")[0], 500)  # the fifth opens it
        self.assertEqual(self.hits(), 5)
        b = self.breaker("user-service")
        self.assertEqual((b["state"], b["failures"], b["consecutive_successes"]), ("open", 5, 0))
        took = []
        for i in range(20):
            t0 = time.monotonic()
            st, h, body = self.get("/api/users/echo")
            took.append(time.monotonic() - t0)
            self.assertEqual(self.assertBreaker503(st, h, body), 1)
        self.assertEqual(self.hits(), 5, "the upstream was contacted while the breaker was open")
        self.assertLess(max(took), 1.0)
        sys.stderr.write("breaker 503: median %.2f ms, max %.2f ms over 20 fresh connections\n"
                         % (1000 * statistics.median(took), 1000 * max(took)))
        self.assertEqual(self.get("/api/auth/echo")[0], 200)  # the other service is untouched
        self.assertEqual(self.breaker("auth-service")["state"], "closed")
        self.assertIsNotNone(self.gw.wait_log(r"circuit breaker for user-service: closed -> open "
                                              r"\(5 consecutive failures, last: upstream 500\)", timeout=5))

        time.sleep(1.1)
        self.assertEqual(self.breaker("user-service")["state"], "half-open")
        self.assertEqual(self.get("/api/users/echo")[0], 200)
        self.assertEqual(self.breaker("user-service")["state"], "half-open")
        self.assertEqual(self.get("/api/users/echo")[0], 200)
        b = self.breaker("user-service")
        self.assertEqual((b["state"], b["failures"], b["consecutive_successes"]), ("closed", 0, 2))
        self.assertEqual(self.hits(), 7)
        self.assertIsNotNone(self.gw.wait_log(r"user-service: half-open -> closed \(2 successes\)", timeout=5))
        log = self.gw.log()
        self.assertEqual(log.count("user-service: closed -> open"), 1)
        self.assertEqual(log.count("user-service: open -> half-open"), 1)

    def test_half_open_admits_exactly_the_probes(self):
        self.half_open_probes(rst=True)

    def test_probes_whose_clients_close_free_their_slots(self):
        # a plain close (FIN) while the upstream has not answered is a client gone too, not a half-close
        # to answer later: the slot is free at once and the late answer closes nothing
        self.half_open_probes(rst=False)

    def half_open_probes(self, rst):
        self.start(env={"CB_MAX_FAILURES": "2", "CB_RESET_TIMEOUT_SECONDS": "1", "CB_HALF_OPEN_MAX_REQUESTS": "3"})
        for i in range(2):
            self.assertEqual(self.get("/api/users/status/502")[0], 502)
        self.assertEqual(self.breaker("user-service")["state"], "open")
        time.sleep(1.1)
        probes = []
        try:
            for i in range(3):
                c = g.RawConn(self.gw.port, timeout=10)
                c.send(g.request_bytes("GET", "/api/users/hang"))
                probes.append(c)
            got = self.users.wait_requests(5, timeout=10)
            self.assertEqual(len(got), 5, "the three probes did not reach the upstream")
            for i in range(4):  # slots full: answered at once, the upstream sees nothing
                st, h, body = self.get("/api/users/echo")
                self.assertEqual(self.assertBreaker503(st, h, body), 1)
            time.sleep(0.2)
            self.assertEqual(self.hits(), 5)
            self.assertEqual(self.breaker("user-service")["state"], "half-open")
        finally:
            for c in probes:  # the clients go away: their slots are freed, no outcome recorded
                if rst:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
        ok = g.wait_until(lambda: self.get("/api/users/echo")[0] == 200, 10, interval=0.05,
                          what="a probe slot freed by the clients that left")
        self.assertTrue(ok)
        self.assertEqual(self.get("/api/users/echo")[0], 200)
        self.assertEqual(self.breaker("user-service")["state"], "closed")

    def test_two_workers_concurrent_probes(self):
        """Many clients at once on two workers: one transition each way, exactly the configured probes."""
        self.start(env={"CB_MAX_FAILURES": "3", "CB_RESET_TIMEOUT_SECONDS": "1", "CB_HALF_OPEN_MAX_REQUESTS": "3"},
                   workers=2)
        results = []
        lock = threading.Lock()

        def hammer():
            for _ in range(20):
                st = self.get("/api/users/status/500")[0]
                with lock:
                    results.append(st)
                if st == 503:
                    return
        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertIn(503, results)
        self.assertGreaterEqual(results.count(500), 3)
        self.assertEqual(self.hits(), results.count(500))
        self.assertEqual(self.gw.log().count("user-service: closed -> open"), 1)
        time.sleep(1.1)
        self.users.reset()
        conns, answers = [], []

        def probe():
            c = g.RawConn(self.gw.port, timeout=10)
            with lock:
                conns.append(c)
            c.send(g.request_bytes("GET", "/api/users/hang"))
            try:
                r = c.read_response(timeout=3)
                with lock:
                    answers.append(r.status)
            except (g.NoResponse, g.ConnClosed, OSError):
                pass  # a probe held by the hanging upstream
        try:
            threads = [threading.Thread(target=probe) for _ in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            self.assertEqual(sorted(answers), [503] * 9)
            self.assertEqual(len(self.users.requests()), 3)
        finally:
            for c in conns:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
        self.assertTrue(g.wait_until(lambda: self.get("/api/users/echo")[0] == 200, 10, interval=0.05))
        self.assertEqual(self.get("/api/users/echo")[0], 200)
        self.assertEqual({self.breaker("user-service")["state"] for _ in range(10)}, {"closed"})
        log = self.gw.log()
        self.assertEqual(log.count("user-service: open -> half-open"), 1)
        self.assertEqual(log.count("user-service: half-open -> closed"), 1)

    def test_probe_failure_reopens(self):
        self.start(env={"CB_MAX_FAILURES": "1", "CB_RESET_TIMEOUT_SECONDS": "1"})
        self.assertEqual(self.get("/api/users/status/500")[0], 500)
        time.sleep(1.1)
        self.assertEqual(self.get("/api/users/status/503")[0], 503)  # the probe fails
        st, h, body = self.get("/api/users/echo")
        self.assertBreaker503(st, h, body)
        self.assertEqual(self.breaker("user-service")["state"], "open")
        self.assertEqual(self.hits(), 2)
        self.assertIsNotNone(self.gw.wait_log(r"half-open -> open \(probe failed: upstream 503\)", timeout=5))

    def test_connect_failures_count(self):
        self.start(env={"CB_MAX_FAILURES": "3"})
        self.users.stop()  # its port now refuses connections
        for i in range(3):
            self.assertEqual(self.get("/api/users/echo")[0], 502)
        st, h, body = self.get("/api/users/echo")
        self.assertEqual(self.assertBreaker503(st, h, body), 30)
        self.assertIsNotNone(self.gw.wait_log(r"\(3 consecutive failures, last: connect\)", timeout=5))

    def test_reset_endpoints_behind_adminauth(self):
        self.start(env={"CB_MAX_FAILURES": "2"}, adminauth=True)
        self.assertEqual(g.http_request(self.gw.port, "GET", "/admin/circuit-breakers")[0], 401)
        self.assertEqual(g.http_request(self.gw.port, "POST", "/admin/circuit-breakers/reset")[0], 401)
        for path in ("/api/users/status/500", "/api/auth/status/500"):
            for i in range(2):
                self.assertEqual(self.get(path)[0], 500)
        self.assertEqual([b["state"] for b in self.breakers()], ["open", "open"])
        st, _, body = self.post("/admin/circuit-breakers/user-service/reset")
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body), {"status": "success", "message": "Circuit breaker for user-service reset"})
        self.assertEqual([b["state"] for b in self.breakers()], ["open", "closed"])
        self.assertEqual(self.get("/api/users/echo")[0], 200)
        st, h, body = self.post("/admin/circuit-breakers/billing-service/reset")
        self.assertEqual(st, 404, body)
        doc = json.loads(body)
        self.assertEqual(doc["message"], "Circuit breaker not found")
        self.assertEqual(sorted(doc), ["error", "message", "request_id"])
        st, _, body = self.post("/admin/circuit-breakers/reset")
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body), {"status": "success", "message": "All circuit breakers reset"})
        self.assertEqual([b["state"] for b in self.breakers()], ["closed", "closed"])
        self.assertEqual(self.get("/api/auth/echo")[0], 200)
        self.assertIsNotNone(self.gw.wait_log(r"auth-service: open -> closed \(reset by admin\)", timeout=5))

    def test_two_workers_share_one_state(self):
        self.start(env={"CB_MAX_FAILURES": "6"}, workers=2)
        # fresh connections land on either worker (SO_REUSEPORT): the count is one for the process
        for i in range(5):
            self.assertEqual(self.get("/api/users/status/500")[0], 500)
        seen = set()
        for i in range(30):
            b = self.breaker("user-service")
            seen.add((b["state"], b["failures"]))
        self.assertEqual(seen, {("closed", 5)})
        self.assertEqual(self.get("/api/users/status/500")[0], 500)
        seen = set()
        for i in range(30):
            b = self.breaker("user-service")
            seen.add((b["state"], b["failures"]))
        self.assertEqual(seen, {("open", 6)})
        for i in range(40):
            st, h, body = self.get("/api/users/echo")
            self.assertBreaker503(st, h, body)
        self.assertEqual(self.hits(), 6)
        self.assertEqual(self.gw.log().count("user-service: closed -> open"), 1)

    def test_state_survives_sighup(self):
        self.start(env={"CB_MAX_FAILURES": "2", "CB_RESET_TIMEOUT_SECONDS": "2"})
        for i in range(2):
            self.assertEqual(self.get("/api/users/status/500")[0], 500)
        self.assertEqual(self.get("/api/auth/status/500")[0], 500)
        ok, _ = self.gw.reload()
        self.assertTrue(ok)
        b = self.breaker("user-service")
        self.assertEqual((b["state"], b["failures"]), ("open", 2))
        self.assertEqual(self.breaker("auth-service")["failures"], 1)
        st, h, body = self.get("/api/users/echo")
        self.assertBreaker503(st, h, body)
        self.assertEqual(self.get("/api/auth/status/500")[0], 500)  # counted on from 1
        self.assertEqual(self.breaker("auth-service")["state"], "open")
        time.sleep(2.1)
        for i in range(2):
            self.assertEqual(self.get("/api/users/echo")[0], 200)
        self.assertEqual(self.breaker("user-service")["state"], "closed")

    def test_service_and_route_overrides(self):
        routes = ("  - prefix: /api/fragile\n    service: user-service\n    strip_prefix: true\n"
                  "    filters:\n      breaker: {max_failures: 1}\n")
        self.start(extra="    services:\n      auth-service: {max_failures: 2, reset_timeout: 7s}\n", routes=routes)
        self.assertEqual(self.get("/api/auth/status/500")[0], 500)
        self.assertEqual(self.breaker("auth-service")["state"], "closed")
        self.assertEqual(self.get("/api/auth/status/500")[0], 500)
        st, h, body = self.get("/api/auth/echo")
        self.assertEqual(self.assertBreaker503(st, h, body, "auth-service"), 7)
        self.assertEqual(self.get("/api/users/status/500")[0], 500)  # the pipeline's 5 on this route
        self.assertEqual(self.breaker("user-service")["state"], "closed")
        self.assertEqual(self.get("/api/fragile/status/500")[0], 500)  # this route's 1: the service opens
        self.assertEqual(self.breaker("user-service")["state"], "open")
        st, h, body = self.get("/api/users/echo")
        self.assertEqual(self.assertBreaker503(st, h, body), 30)

    def test_unknown_service_override_refused(self):
        self.users = self.start_upstream("users")
        extra = "    services:\n      billing-service: {max_failures: 3}\n"
        text = CONFIG.format(port=g.free_port(), workers=1, auth_url=self.users.url, user_url=self.users.url,
                             adminauth="", extra=extra, routes="")
        gw = self.start_gateway(text, wait=False)
        gw.expect_exit = True
        rc = gw.proc.wait(15 * g.SLOW)
        self.assertIsNotNone(rc, "the gateway started with an unknown service in breaker.services")
        self.assertNotEqual(rc, 0)
        self.assertRegex(gw.log(), r"gateway0\.yaml:\d+:\d+: breaker\.services\.billing-service: no service of "
                                   r"that name is configured")


if __name__ == "__main__":
    g.main()
