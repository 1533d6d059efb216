#!/usr/bin/env python3
# ctest-labels: asan
"""adminauth.so (plugins/adminauth) in a running gateway, over raw HTTP: every failure kind answered 401 with
the Basic challenge and the error JSON, correct credentials reaching the upstream untouched, paths outside
/admin not protected, failures logged with the client IP and never the password, throttling (429 with
Retry-After, then back to normal; only wrong credentials count, per address and username, shared by the
workers), the gateway refusing to start without ADMIN_PASSWORD, and
ADMIN_AUTH_ENABLED=false leaving /admin open. The filter is found where the gateway looks by default
(<directory of the binary>/plugins); /admin is routed to the test upstream for now."""

import base64
import json
import os
import re
import socket
import time

import gwtest as g

PASSWORD = "Adm1n:pass-word"
CHALLENGE = 'Basic realm="API Gateway Admin", charset="UTF-8"'
REQUIRED = "adminauth: password is required when admin authentication is enabled (set ADMIN_PASSWORD)"
PLUGIN = os.path.join(os.path.dirname(os.path.abspath(g.GW_BIN)), "plugins", "adminauth.so")


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def entry(**settings):
    """The pipeline entry as a deployment writes it: everything from the environment."""
    e = {"name": "adminauth", "enabled": "${ADMIN_AUTH_ENABLED:-true}",
         "username": "${ADMIN_USERNAME:-admin}", "password": "${ADMIN_PASSWORD:-}"}
    e.update(settings)
    return e


def env(password=PASSWORD, enabled=None, username=None):
    """The gateway's environment: None removes a variable (nothing is inherited from the runner)."""
    return {"ADMIN_PASSWORD": password, "ADMIN_AUTH_ENABLED": enabled, "ADMIN_USERNAME": username}


class AdminAuthTestCase(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(PLUGIN):
            self.fail("%s not built" % PLUGIN)
        self.up = self.start_upstream()

    def config(self, port, pipeline):
        return g.base_config(port, [{"name": "up", "targets": [self.up.url]}],
                             [{"prefix": "/", "service": "up"}], pipeline=pipeline)

    def start(self, pipeline, **env_kw):
        return self.start_gateway(lambda p: self.config(p, pipeline), env=env(**env_kw))

    def get(self, gw, target, authorization=None, method="GET", body=b""):
        headers = [("Authorization", authorization)] if authorization is not None else []
        return g.simple_request(gw.port, method, target, headers, body=body, timeout=5.0 * g.SLOW)

    def assert401(self, resp, message):
        doc = self.assertErrorJson(resp, 401, "Unauthorized")
        self.assertEqual(doc["message"], message, resp.summary())
        self.assertEqual(resp.header_all("www-authenticate"), [CHALLENGE], resp.summary())
        self.assertIsNone(resp.header("retry-after"), resp.summary())
        self.assertNotIn(PASSWORD, resp.body.decode("latin-1"))

    def assert429(self, resp, retry_after):
        doc = self.assertErrorJson(resp, 429, "Too Many Requests")
        self.assertEqual(doc["message"], "Too many failed authentication attempts; retry later")
        self.assertIn(resp.header("retry-after"), retry_after, resp.summary())
        self.assertIsNone(resp.header("www-authenticate"), resp.summary())

    def assertPassed(self, resp, authorization=None):
        """200 from the upstream's echo, which saw the request's Authorization exactly as sent."""
        self.assertEqual(resp.status, 200, resp.summary())
        doc = resp.json()
        self.assertIn("headers", doc, resp.summary())
        self.assertEqual(g.hall(doc["headers"], "authorization"), [authorization] if authorization else [],
                         resp.summary())
        self.assertIsNone(resp.header("www-authenticate"), resp.summary())
        return doc


class AdminAuthTest(AdminAuthTestCase):
    def test_every_failure_kind(self):
        gw = self.start([entry(max_failures=1000)])
        cases = [
            (None, "Authentication required: missing Authorization header", "no Authorization header"),
            ("Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "Authentication required: unsupported authorization scheme "
             "(use Basic)", "authorization scheme is not Basic"),
            ("Digest username=\"admin\"", "Authentication required: unsupported authorization scheme "
             "(use Basic)", "authorization scheme is not Basic"),
            ("Basic !!notbase64!!", "Invalid Basic credentials: not valid base64", "credentials are not valid base64"),
            ("Basic " + base64.b64encode(b"admin:x").decode().rstrip("="), "Invalid Basic credentials: not valid "
             "base64", "credentials are not valid base64"),
            ("Basic", "Invalid Basic credentials: not valid base64", "credentials are not valid base64"),
            ("Basic " + "QUFB" * 1200, "Invalid Basic credentials: too long", "credentials too long"),
            ("Basic " + base64.b64encode(b"admin-without-colon").decode(),
             "Invalid Basic credentials: expected username:password", "no ':' in the decoded credentials"),
            (basic("admin", "wrong"), "Invalid username or password", "wrong username or password"),
            (basic("root", PASSWORD), "Invalid username or password", "wrong username or password"),
            (basic("admin", PASSWORD + "x"), "Invalid username or password", "wrong username or password"),
        ]
        # more than 110 ms apart: the warnings are limited to 10 a second, and each case is to be seen logged
        for auth, message, _ in cases:
            with self.subTest(authorization=(auth or "")[:60]):
                self.assert401(self.get(gw, "/admin/apikeys", auth), message)
            time.sleep(0.11)
        self.assert401(self.get(gw, "/admin", None, method="POST", body=b"{}"),
                       "Authentication required: missing Authorization header")
        self.assertUpstreamSawNothing(self.up)

        # one warning per failure, with the client's address and the kind; the password never
        for _, _, kind in cases:
            self.assertTrue(gw.wait_log(r"\[filter:adminauth\] admin authentication failed: %s \(client 127\.0\.0\.1, "
                                        r"GET /admin/apikeys\)" % re.escape(kind), timeout=5.0),
                            "no log line for %r:\n%s" % (kind, gw.log(6000)))
        fails = g.wait_until(lambda: (lambda n: n if n >= len(cases) + 1 else None)(
            len(re.findall(r"admin authentication failed", gw.log(200000)))), 5 * g.SLOW)
        self.assertEqual(fails, len(cases) + 1, gw.log(6000))
        self.assertNotIn(PASSWORD, gw.log(200000))

    def test_success_reaches_upstream(self):
        gw = self.start([entry()])
        auth = basic("admin", PASSWORD)
        doc = self.assertPassed(self.get(gw, "/admin/apikeys?limit=5", auth), auth)
        self.assertEqual(doc.get("target"), "/admin/apikeys?limit=5")
        self.assertPassed(self.get(gw, "/admin", auth), auth)
        doc = self.assertPassed(self.get(gw, "/admin/apikeys", auth, method="POST", body=b'{"name":"k"}'), auth)
        self.assertEqual(doc.get("method"), "POST")
        # the scheme is case-insensitive; blanks around the credentials are allowed
        lower = "basic  " + auth.split(" ", 1)[1] + " "
        self.assertPassed(self.get(gw, "/admin/x", lower), lower.strip())
        # with curl's -u form (the same header) on a kept-alive connection, two requests
        with g.RawConn(gw.port, timeout=5.0 * g.SLOW) as c:
            for _ in range(2):
                c.send(g.request_bytes("GET", "/admin/circuit-breakers", [("Authorization", auth)]))
                self.assertPassed(c.read_response(), auth)

    def test_authenticated_admin_not_rate_limited(self):
        # ratelimit after adminauth, as in conf/gateway.yaml: an admin script is not counted against the
        # client's bucket, the same client's other requests are
        gw = self.start([entry(), {"name": "ratelimit", "rpm": 1, "burst": 2}])
        auth = basic("admin", PASSWORD)
        for _ in range(12):
            r = self.get(gw, "/admin/apikeys", auth)
            self.assertEqual(r.status, 200, r.summary())
            self.assertIsNone(r.header("x-ratelimit-remaining"), r.summary())
        self.assertEqual([self.get(gw, "/api/x").status for _ in range(3)], [200, 200, 429])
        # with limit_admin: true they share the bucket again
        gw2 = self.start([entry(), {"name": "ratelimit", "rpm": 1, "burst": 2, "limit_admin": True}])
        self.assertEqual([self.get(gw2, "/admin/apikeys", auth).status for _ in range(3)], [200, 200, 429])

    def test_only_admin_prefix_protected(self):
        gw = self.start([entry(max_failures=0)])  # no throttling here
        for path in ("/administrator", "/adminx", "/api/users/1", "/health-check", "/api/admin"):
            with self.subTest(path=path):
                self.assertPassed(self.get(gw, path))
        for path in ("/admin", "/admin/", "/admin/x/y", "/admin?x=1", "/x/../admin/y", "/%61dmin/x"):
            with self.subTest(path=path):
                self.assert401(self.get(gw, path), "Authentication required: missing Authorization header")

    def test_unserved_admin_paths_need_credentials_too(self):
        # Nothing routes /admin here: only the filters' endpoints live there. Without credentials every
        # path under the prefix is 401, served or not, any method (no mapping the admin API); with them,
        # what is not served is 404 and a wrong method 405 with Allow.
        cfg = lambda p: g.base_config(p, [{"name": "up", "targets": [self.up.url]}],
                                      [{"prefix": "/api", "service": "up"}],
                                      pipeline=[entry(max_failures=0), {"name": "apikey"}],
                                      store={"type": "embedded", "path": os.path.join(self.tmp, "store")})
        gw = self.start_gateway(cfg, env=env())
        auth = basic("admin", PASSWORD)
        for method, path in (("GET", "/admin/console"), ("GET", "/admin/nothing/here"), ("GET", "/admin"),
                             ("DELETE", "/admin/apikeys"), ("PUT", "/admin/apikeys"), ("GET", "/admin/apikeys")):
            with self.subTest(method=method, path=path):
                self.assert401(self.get(gw, path, method=method),
                               "Authentication required: missing Authorization header")
        r = self.get(gw, "/admin/nothing/here", auth)
        self.assertErrorJson(r, 404, "Not Found")
        r = self.get(gw, "/admin/apikeys", auth, method="DELETE")
        self.assertErrorJson(r, 405, "Method Not Allowed")
        self.assertIn("GET", r.header("allow") or "", r.summary())
        self.assertEqual(self.get(gw, "/admin/apikeys", auth).status, 200)
        # outside the prefix nothing changed: an unrouted path is a plain 404
        self.assertErrorJson(self.get(gw, "/elsewhere"), 404, "Not Found")

    def test_throttling(self):
        gw = self.start([entry(max_failures=3, block="2s")])
        auth = basic("admin", PASSWORD)
        for _ in range(3):
            self.assert401(self.get(gw, "/admin/apikeys", basic("admin", "guess")), "Invalid username or password")
        t_last = time.monotonic()
        self.assertTrue(gw.wait_log(r"\[filter:adminauth\] client 127\.0\.0\.1 throttled for 2000 ms after 3 failed",
                                    timeout=5.0), gw.log(6000))

        # the blocked (address, username) is refused whatever its password, the right one included
        for a in (auth, basic("admin", "guess")):
            self.assert429(self.get(gw, "/admin/apikeys", a), ("1", "2"))
        # a request that names no username is not throttled: a plain 401, not counted either
        self.assert401(self.get(gw, "/admin/apikeys"), "Authentication required: missing Authorization header")
        # paths outside /admin are not throttled
        self.assertPassed(self.get(gw, "/api/x"))
        time.sleep(0.2)
        self.assertEqual([q["path"] for q in self.up.requests()], ["/api/x"])
        self.assertEqual(len(re.findall(r"admin authentication failed", gw.log(200000))), 4, gw.log(6000))
        self.assertEqual(len(re.findall(r"throttled", gw.log(200000))), 1, gw.log(6000))  # logged once

        # block (2s) after the last failure: checked again
        time.sleep(max(0.0, t_last + 2.2 - time.monotonic()))
        self.assertPassed(self.get(gw, "/admin/apikeys", auth), auth)

        # a success clears the count: 2 failures, success, 2 failures is not throttled
        for _ in range(2):
            self.assert401(self.get(gw, "/admin", basic("admin", "guess")), "Invalid username or password")
        self.assertPassed(self.get(gw, "/admin", auth), auth)
        for _ in range(2):
            self.assert401(self.get(gw, "/admin", basic("admin", "guess")), "Invalid username or password")
        self.assertPassed(self.get(gw, "/admin", auth), auth)

    def test_anonymous_requests_do_not_lock_the_admin_out(self):
        # two workers; every request on a new connection, so they land on both
        gw = self.start_gateway(lambda p: g.base_config(
            p, [{"name": "up", "targets": [self.up.url]}], [{"prefix": "/", "service": "up"}], workers=2,
            pipeline=[entry()]), env=env())
        auth = basic("admin", PASSWORD)
        for _ in range(12):
            self.assert401(self.get(gw, "/admin/apikeys"), "Authentication required: missing Authorization header")
        for bad in ("Bearer x.y.z", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
            for _ in range(3):
                self.assertEqual(self.get(gw, "/admin/apikeys", bad).status, 401)
        self.assertPassed(self.get(gw, "/admin/apikeys", auth), auth)
        self.assertNotIn("throttled", gw.log(200000))
        # wrong passwords are still throttled (default max_failures 5, block 60s)
        for _ in range(5):
            self.assert401(self.get(gw, "/admin/apikeys", basic("admin", "guess")), "Invalid username or password")
        self.assert429(self.get(gw, "/admin/apikeys", auth), ("60", "59"))

    def test_failures_shared_by_workers(self):
        """max_failures wrong passwords, each on a new connection (spread over both workers by SO_REUSEPORT),
        block at exactly max_failures: with a count per worker, up to 2 x max_failures got through."""
        max_failures = 6
        gw = self.start_gateway(lambda p: g.base_config(
            p, [{"name": "up", "targets": [self.up.url]}], [{"prefix": "/", "service": "up"}], workers=2,
            pipeline=[entry(max_failures=max_failures, block="30s")]), env=env())
        auth = basic("admin", PASSWORD)
        statuses = []
        for _ in range(3 * max_failures):
            r = self.get(gw, "/admin/apikeys", basic("admin", "guess"))
            statuses.append(r.status)
            if r.status == 429:
                break
        self.assertEqual(statuses, [401] * max_failures + [429], gw.log(6000))
        # and every later attempt, on whichever worker, is refused: the right password included
        for _ in range(12):
            self.assert429(self.get(gw, "/admin/apikeys", auth), ("30", "29"))
        self.assertEqual(len(re.findall(r"client 127\.0\.0\.1 throttled for 30000 ms after %d failed attempts "
                                        r"with the configured username" % max_failures, gw.log(200000))), 1,
                         gw.log(6000))
        self.assertUpstreamSawNothing(self.up)

    def pipelined(self, gw, auths, src=g.LOCALHOST, batch=100):
        """The requests (one per Authorization value, None = none) pipelined on one connection from the
        address `src`, in batches; returns the statuses."""
        statuses = []
        c = g.RawConn(gw.port, timeout=10.0 * g.SLOW, connect=False)
        c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with c:
            c.sock.settimeout(10.0 * g.SLOW)
            c.sock.bind((src, 0))
            c.sock.connect((g.LOCALHOST, gw.port))
            for i in range(0, len(auths), batch):
                part = auths[i:i + batch]
                c.send(b"".join(g.request_bytes("GET", "/admin/apikeys",
                                                [("Authorization", a)] if a is not None else [])
                                for a in part))
                statuses += [c.read_response().status for _ in part]
        return statuses

    def test_rotating_usernames_does_not_evict_a_block(self):
        """Blocked for admin, the client fails with 3,000 other usernames (which evicted its block from the
        table, so that every one was counted as a 401 and the password worked again). Now the address is
        blocked after 4 x max_failures wrong attempts, for every username; another address is not."""
        gw = self.start([entry()])
        auth = basic("admin", PASSWORD)
        auths = [basic("admin", "guess")] * 5 + [basic("u%d" % i, "x") for i in range(3000)] + [auth]
        statuses = self.pipelined(gw, auths)
        self.assertEqual(statuses, [401] * 20 + [429] * (len(auths) - 20), gw.log(6000))
        self.assertTrue(gw.wait_log(r"client 127\.0\.0\.1 throttled for 60000 ms after 20 failed attempts "
                                    r"across usernames", timeout=5.0), gw.log(6000))
        # the admin at another address is not locked out by this client
        self.assertEqual(self.pipelined(gw, [auth, basic("admin", "guess"), auth], src="127.0.0.2"),
                         [200, 401, 200])
        self.assert429(self.get(gw, "/admin/apikeys", auth), ("60", "59", "58", "57"))

    def test_failure_warnings_rate_limited(self):
        """5,000 pipelined anonymous requests: every one a 401, but the log grows by a bounded number of
        lines (each was a warning line before), and what was left out is summed up in one line."""
        gw = self.start([entry()])
        offset = gw.log_size()
        t0 = time.monotonic()
        self.assertEqual(self.pipelined(gw, [None] * 5000, batch=500), [401] * 5000)
        elapsed = time.monotonic() - t0
        lines = gw.log_since(offset).splitlines()
        # 10 warnings a second plus one summary a second at most
        self.assertLessEqual(len(lines), 11 * (int(elapsed) + 2), "\n".join(lines[:40]))
        self.assertLess(len(lines), 500)
        # the next failure in a later second logs the summary (bounded: 50 tries 0.1 s apart)
        pattern = re.compile(r"\[filter:adminauth\] (\d+) more admin auth failures \(last from 127\.0\.0\.1\)")
        accounted = 0
        for _ in range(50):
            self.assert401(self.get(gw, "/admin/apikeys"), "Authentication required: missing Authorization header")
            log = gw.log_since(offset)
            accounted = sum(int(m) for m in pattern.findall(log)) + len(
                re.findall(r"admin authentication failed: no Authorization header", log))
            if accounted >= 5000:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(accounted, 5000, gw.log(6000))

    def test_username_from_environment(self):
        gw = self.start([entry()], username="ops")
        self.assert401(self.get(gw, "/admin", basic("admin", PASSWORD)), "Invalid username or password")
        auth = basic("ops", PASSWORD)
        self.assertPassed(self.get(gw, "/admin", auth), auth)


class AdminAuthConfigTest(AdminAuthTestCase):
    def refused(self, **env_kw):
        port = g.free_port()
        gw = g.Gateway(self.tmp, self.config(port, [entry()]), port=port, wait=False, env=env(**env_kw),
                       name="refused%d" % len(self._gateways))
        gw.expect_exit = True
        self._gateways.append(gw)
        rc = gw.proc.wait(10 * g.SLOW)
        if rc is None:
            self.fail("the gateway should refuse to start without a password; log:\n%s" % gw.log())
        self.assertEqual(rc, 1, gw.log())
        self.assertFalse(g.port_accepts(port))
        return gw

    def test_refuses_to_start_without_password(self):
        for password in (None, ""):
            with self.subTest(ADMIN_PASSWORD=password):
                gw = self.refused(password=password)
                with open(gw.config_path) as f:
                    line = 1 + [i for i, ln in enumerate(f.read().splitlines()) if "name: adminauth" in ln][0]
                self.assertRegex(gw.log(), r"%s:%d:\d+: %s" % (re.escape(os.path.basename(gw.config_path)), line,
                                                               re.escape(REQUIRED)), gw.log())
        # explicitly enabled: the same
        self.refused(password=None, enabled="true")
        self.assertUpstreamSawNothing(self.up)

    def test_check_mode_reports_missing_password(self):
        path = os.path.join(self.tmp, "check.yaml")
        g.write_config(path, self.config(g.free_port(), [entry()]))
        rc, out, err = g.run_gateway_cli(["-t", "-c", path], env=env(password=None), cwd=self.tmp)
        self.assertEqual(rc, 1, out + err)
        self.assertIn(REQUIRED, out + err)
        rc, out, err = g.run_gateway_cli(["-t", "-c", path], env=env(), cwd=self.tmp)
        self.assertEqual(rc, 0, out + err)

    def test_disabled_by_environment(self):
        gw = self.start([entry()], password=None, enabled="false")
        self.assertPassed(self.get(gw, "/admin/apikeys"))
        self.assertPassed(self.get(gw, "/admin/x", "Basic !!!"), "Basic !!!")
        filters = [f.get("name") for f in gw.info().get("filters", [])]
        self.assertNotIn("adminauth", filters)
        self.assertNotIn("[filter:adminauth]", gw.log())  # the filter itself says nothing: it is not loaded
        # the gateway says it at start
        self.assertRegex(gw.log(), r"\[warn\] .*filter 'adminauth' is disabled", gw.log())

    def test_enabled_listed_in_info(self):
        gw = self.start([entry()])
        filters = [(f.get("name"), f.get("version")) for f in gw.info().get("filters", [])]
        self.assertIn(("adminauth", "1.0.0"), filters, json.dumps(filters))


if __name__ == "__main__":
    g.main()
