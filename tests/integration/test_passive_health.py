#!/usr/bin/env python3
# ctest-labels: asan
"""Upstream health beyond the active check: passive health (live connect failures take a target out; a
cool-down or the active check brings it back), when_all_down (try | refuse), why a target is out in
/services/health, the first check at once (a late upstream comes in within about a second), health kept
over a reload, retries on another target, and the health metrics."""

import os
import re
import sys
import time

import gwtest as g


class FixedUpstream(g.Upstream):
    """upstream.py on a port chosen in advance: the gateway can be configured before it runs."""

    def __init__(self, tmpdir, port, name):
        self.name = name
        self.dir = tmpdir
        ready = os.path.join(tmpdir, "upstream-%s-%d.ready" % (name, time.monotonic_ns()))
        self.proc = g.Proc([sys.executable, "-B", os.path.join(g.HERE, "upstream.py"), "--ready", ready,
                            "--name", name, "--port", str(port)],
                           os.path.join(tmpdir, "upstream-%s.log" % name), name="upstream")
        info = g.wait_until(lambda: g._read_json(ready) if os.path.exists(ready) else None, 10 * g.SLOW,
                            interval=0.01)
        if not info:
            self.proc.stop()
            raise RuntimeError("upstream %s did not start on port %d; log:\n%s" % (name, port, self.proc.log()))
        self.port = info["port"]
        self.control_port = info["control_port"]
        self.url = "http://%s:%d" % (g.LOCALHOST, self.port)


def dead_url():
    """A target with nothing listening: connections are refused."""
    return "http://%s:%d" % (g.LOCALHOST, g.free_port())


class PassiveHealthTest(g.GatewayTestCase):
    def gateway(self, services, workers=1, pipeline=None, **extra):
        routes = [{"prefix": "/api/%s" % s["name"], "service": s["name"]} for s in services]
        extra = dict(extra, workers=workers)
        if pipeline:
            extra["pipeline"] = pipeline
        return self.start_gateway(lambda p: g.base_config(p, services, routes, **extra))

    def start_upstream_at(self, port, name):
        up = FixedUpstream(self.tmp, port, name)
        self._upstreams.append(up)
        return up

    def statuses(self, gw, path, n):
        out = []
        for _ in range(n):
            out.append(g.simple_request(gw.port, "GET", path, timeout=10 * g.SLOW).status)
        return out

    def instance(self, gw, service, url):
        _, _, body = g.http_request(gw.port, "GET", "/services/health")
        doc = __import__("json").loads(body)
        for s in doc["services"]:
            if s["name"] == service:
                for i in s["instances"]:
                    if i["url"] == url:
                        return i
        self.fail("no instance %s of %s in /services/health: %s" % (url, service, body[:2000]))

    def wait_status(self, gw, service, url, status, timeout):
        got = g.wait_until(lambda: (lambda i: i if i["status"] == status else None)(self.instance(gw, service, url)),
                           timeout * g.SLOW, interval=0.05)
        self.assertIsNotNone(got, "%s %s did not become %s within %ss: %r"
                             % (service, url, status, timeout * g.SLOW, self.instance(gw, service, url)))
        return got

    def fail_until_ejected(self, gw, path, failures, limit=40):
        """Sends requests until `failures` of them failed (502); returns the statuses."""
        seen = []
        while seen.count(502) < failures and len(seen) < limit:
            seen.append(g.simple_request(gw.port, "GET", path, timeout=10 * g.SLOW).status)
        self.assertEqual(seen.count(502), failures, "statuses: %r" % seen)
        return seen

    # -- passive health without active checks ---------------------------------------------------------
    def test_dead_target_out_after_three_failures(self):
        live, dead = self.start_upstream("live"), dead_url()
        gw = self.gateway([{"name": "svc", "targets": [live.url, dead],
                            "passive_health": {"failures": 3, "cooldown": "60s"}}], workers=2)
        first = self.statuses(gw, "/api/svc/x", 40)
        self.assertEqual(sorted(set(first)), [200, 502], first)
        self.assertEqual(first.count(502), 3, "exactly three requests may fail, across both workers: %r" % first)
        last_fail = max(i for i, s in enumerate(first) if s == 502)
        self.assertTrue(all(s == 200 for s in first[last_fail + 1:]), first)
        self.assertEqual(self.statuses(gw, "/api/svc/y", 20), [200] * 20, "the dead target is still chosen")
        inst = self.instance(gw, "svc", dead)
        self.assertEqual(inst["status"], "unhealthy", inst)
        self.assertRegex(inst["reason"] or "", r"^passive: 3 consecutive failed requests \(last: connect failure\)")
        self.assertRegex(inst["since"] or "", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        ok = self.instance(gw, "svc", live.url)
        self.assertNotEqual(ok["status"], "unhealthy", ok)
        self.assertIsNone(ok["reason"], ok)
        # a reload with the same targets keeps the ejection
        self.assertTrue(gw.reload()[0])
        self.assertEqual(self.instance(gw, "svc", dead)["status"], "unhealthy")
        self.assertEqual(self.statuses(gw, "/api/svc/z", 6), [200] * 6)

    def test_cooldown_lets_one_trial_through(self):
        live = self.start_upstream("live")
        port = g.free_port()
        back = "http://%s:%d" % (g.LOCALHOST, port)
        cool = 2.0 * g.SLOW
        gw = self.gateway([{"name": "svc", "targets": [live.url, back],
                            "passive_health": {"failures": 2, "cooldown": "%dms" % int(cool * 1000)}}])
        self.fail_until_ejected(gw, "/api/svc/a", 2)
        self.assertEqual(self.statuses(gw, "/api/svc/b", 6), [200] * 6)
        time.sleep(cool + 0.3)
        trial = self.statuses(gw, "/api/svc/c", 6)
        self.assertEqual(trial.count(502), 1, "one trial request after the cool-down: %r" % trial)
        self.assertEqual(self.statuses(gw, "/api/svc/d", 4), [200] * 4, "a failed trial: out again")
        revived = self.start_upstream_at(port, "revived")
        time.sleep(cool + 0.3)
        after = self.statuses(gw, "/api/svc/e", 10)
        self.assertEqual(after, [200] * 10)
        self.assertGreaterEqual(len(revived.requests()), 4, "the target is back in the rotation")
        self.assertEqual(self.instance(gw, "svc", back)["status"], "healthy")

    # -- passive health with active checks ----------------------------------------------------------
    def test_active_check_brings_ejected_target_back(self):
        a = self.start_upstream("a")
        port = g.free_port()
        b = self.start_upstream_at(port, "b")
        svc = {"name": "svc", "targets": [a.url, b.url],
               "health_check": {"path": "/health", "interval": "300ms", "timeout": "250ms",
                                "healthy_threshold": 2, "unhealthy_threshold": 100},
               "passive_health": {"failures": 3}}
        gw = self.gateway([svc])
        self.wait_status(gw, "svc", b.url, "healthy", 5)
        b.stop()
        self.fail_until_ejected(gw, "/api/svc/x", 3)
        self.assertEqual(self.statuses(gw, "/api/svc/y", 10), [200] * 10)
        inst = self.instance(gw, "svc", b.url)
        self.assertEqual(inst["status"], "unhealthy")
        self.assertTrue((inst["reason"] or "").startswith("passive: 3 consecutive"), inst)
        b2 = self.start_upstream_at(port, "b2")
        self.wait_status(gw, "svc", b.url, "healthy", 10)
        self.assertEqual(self.statuses(gw, "/api/svc/z", 10), [200] * 10)
        self.assertTrue(any(r["path"] == "/api/svc/z" for r in b2.requests()), "b is back in the rotation")

    # -- when every target is out ---------------------------------------------------------------------
    def test_when_all_down_refuse_and_try(self):
        dead1, dead2 = dead_url(), dead_url()
        check = {"path": "/health", "interval": "10s", "timeout": "1s"}
        gw = self.gateway([{"name": "refuser", "targets": [dead1], "health_check": check, "when_all_down": "refuse"},
                           {"name": "trier", "targets": [dead2], "health_check": check}])
        inst = self.wait_status(gw, "refuser", dead1, "unhealthy", 3)
        self.assertEqual(inst["reason"], "active check failed: connect: Connection refused", inst)
        self.wait_status(gw, "trier", dead2, "unhealthy", 3)
        t0 = time.monotonic()
        r = g.simple_request(gw.port, "GET", "/api/refuser/x")
        self.assertLess(time.monotonic() - t0, 3 * g.SLOW)
        doc = self.assertErrorJson(r, 503, "Service Unavailable")
        self.assertEqual(doc["message"], "No healthy target for service refuser")
        self.assertTrue(1 <= int(r.header("retry-after")) <= 10, r.summary())
        self.assertErrorJson(g.simple_request(gw.port, "GET", "/api/trier/x"), 502, "Bad Gateway")

    def test_when_all_down_refuse_passive_only(self):
        dead = dead_url()
        gw = self.gateway([{"name": "svc", "targets": [dead], "when_all_down": "refuse",
                            "passive_health": {"failures": 2, "cooldown": "30s"}}])
        self.assertEqual(self.statuses(gw, "/api/svc/x", 2), [502, 502])
        r = g.simple_request(gw.port, "GET", "/api/svc/x")
        self.assertErrorJson(r, 503, "Service Unavailable")
        self.assertTrue(1 <= int(r.header("retry-after")) <= 30, r.summary())

    # -- the first check at once, and reloads -------------------------------------------------------
    def test_late_upstream_and_reload(self):
        port = g.free_port()
        url = "http://%s:%d" % (g.LOCALHOST, port)
        check = {"path": "/health", "interval": "10s", "timeout": "1s", "healthy_threshold": 2}
        svc = {"name": "svc", "targets": [url], "health_check": check}
        gw = self.gateway([svc])
        self.wait_status(gw, "svc", url, "unhealthy", 3)  # the first check ran at once
        self.start_upstream_at(port, "late")
        t0 = time.monotonic()
        self.wait_status(gw, "svc", url, "healthy", 5)
        took = time.monotonic() - t0
        self.assertLess(took, 5 * g.SLOW, "a late upstream should come in at its first check")
        # a reload that keeps the target and adds one: the kept one stays healthy, the new one is checked now
        other = self.start_upstream("other")
        svc2 = dict(svc, targets=[url, other.url])
        routes = [{"prefix": "/api/svc", "service": "svc"}]
        ok, _ = gw.reload(g.base_config(gw.port, [svc2], routes, workers=1))
        self.assertTrue(ok)
        self.assertEqual(self.instance(gw, "svc", url)["status"], "healthy", "health lost over the reload")
        self.wait_status(gw, "svc", other.url, "healthy", 3)

    # -- retries and metrics ------------------------------------------------------------------------
    def test_retry_avoids_the_failed_target(self):
        # One worker, one round-robin cursor: [dead, live]. The first request's attempt goes to the dead
        # target and waits 300 ms before its retry; meanwhile a second request takes the live target, so
        # the cursor points at the dead one again. The retry must still go to the live one.
        live, dead = self.start_upstream("live"), dead_url()
        pipeline = [{"name": "retrier", "file": g.fixture_path("retrier")}]
        gw = self.gateway([{"name": "svc", "targets": [dead, live.url], "passive_health": {"failures": 0}}],
                          pipeline=pipeline)
        with g.RawConn(gw.port, timeout=10 * g.SLOW) as first:
            first.send(g.request_bytes("GET", "/api/svc/first", headers=[("X-Retry-Delay-Ms", "%d" % (300 * g.SLOW))]))
            time.sleep(0.05 * g.SLOW)
            second = g.simple_request(gw.port, "GET", "/api/svc/second")
            self.assertEqual((second.status, second.header("x-attempts")), (200, "1"), second.summary())
            r = first.read_response()
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.header("x-attempts"), "2", "the retry went back to the target that had failed")


    def test_retry_goes_elsewhere_and_metrics(self):
        live, dead = self.start_upstream("live"), dead_url()
        pipeline = [{"name": "retrier", "file": g.fixture_path("retrier")}]
        gw = self.gateway([{"name": "svc", "targets": [dead, live.url],
                            "passive_health": {"failures": 3, "cooldown": "60s"}}], pipeline=pipeline)
        attempts = []
        for i in range(12):
            r = g.simple_request(gw.port, "GET", "/api/svc/%d" % i)
            self.assertEqual(r.status, 200, r.summary())
            attempts.append(int(r.header("x-attempts")))
        self.assertEqual(attempts.count(2), 3, "three requests met the dead target first: %r" % attempts)
        self.assertTrue(set(attempts) <= {1, 2}, attempts)

        def metrics():
            _, _, body = g.http_request(gw.port, "GET", "/test/metrics")
            return body.decode()
        m = g.wait_until(lambda: (lambda t: t if re.search(
            r'gateway_upstream_target_healthy\{service="svc",target="%s"\} 0' % re.escape(dead), t) else None)(
            metrics()), 5 * g.SLOW, interval=0.1)
        self.assertIsNotNone(m, metrics())
        self.assertRegex(m, r'gateway_upstream_target_healthy\{service="svc",target="%s"\} 1' % re.escape(live.url))
        self.assertRegex(m, r'gateway_upstream_passive_ejections_total\{service="svc"\} 1\b')


if __name__ == "__main__":
    g.main()
