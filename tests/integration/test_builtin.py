#!/usr/bin/env python3
# ctest-labels: asan
"""Built-in endpoints (/health, /info) and the command line (--version, -t)."""

import json
import os
import re

import gwtest as g


def project_version():
    try:
        with open(os.path.join(g.SOURCE_DIR, "CMakeLists.txt")) as f:
            m = re.search(r"project\(\s*gateway\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+)", f.read())
            return m.group(1) if m else None
    except OSError:
        return None


class BuiltinEndpointsTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.dead_url = "http://127.0.0.1:%d" % g.free_port()
        # services deliberately not in alphabetical order: /info must keep config order
        services = [{"name": "user-service", "targets": [self.up.url]},
                    {"name": "auth-service", "targets": [self.dead_url]}]
        routes = [{"prefix": "/api/auth", "service": "auth-service"},
                  {"prefix": "/api/users", "service": "user-service"}]
        self.gw = self.start_gateway(lambda p: g.base_config(p, services, routes))

    def test_health(self):
        r = g.simple_request(self.gw.port, "GET", "/health")
        self.assertEqual(r.status, 200, r.summary())
        self.assertTrue((r.header("content-type") or "").startswith("application/json"), r.summary())
        doc = r.json()
        self.assertEqual(doc.get("status"), "ok", doc)
        self.assertEqual(doc.get("message"), "API Gateway is running", doc)
        self.assertEqual(doc.get("store"), {"type": "embedded", "status": "ok"}, doc)
        self.assertUpstreamSawNothing(self.up, settle=0)

    def test_health_head_no_body(self):
        with g.RawConn(self.gw.port) as c:
            # HEAD then GET pipelined: if the HEAD answer carried a body the GET answer would not parse
            c.send(g.request_bytes("HEAD", "/health") + g.request_bytes("GET", "/health"))
            r = c.read_response(method="HEAD")
            self.assertEqual(r.status, 200, r.summary())
            self.assertEqual(r.body, b"")
            r2 = c.read_response()
            self.assertEqual(r2.status, 200, "GET after HEAD: %s" % r2.summary())
            self.assertEqual(r2.json().get("status"), "ok")
            if r.header("content-length") is not None:
                self.assertEqual(int(r.header("content-length")), len(r2.body),
                                 "HEAD Content-Length should be the GET body length")

    def test_health_post_405(self):
        r = g.simple_request(self.gw.port, "POST", "/health", body=b"x")
        self.assertErrorJson(r, 405, "Method Not Allowed")
        self.assertEqual(set(r.tokens("allow")), {"get", "head"}, "Allow: %r" % r.header_all("allow"))

    def test_info(self):
        r = g.simple_request(self.gw.port, "GET", "/info")
        self.assertEqual(r.status, 200, r.summary())
        self.assertTrue((r.header("content-type") or "").startswith("application/json"), r.summary())
        doc = r.json()
        self.assertEqual(doc.get("status"), "ok", doc)
        self.assertRegex(str(doc.get("version")), r"^\d+\.\d+\.\d+")
        pv = project_version()
        if pv:
            self.assertEqual(doc["version"], pv, "version should be the project version")
        services = doc.get("services")
        self.assertIsInstance(services, list, doc)
        self.assertEqual([s.get("name") for s in services], ["user-service", "auth-service"],
                         "services in config order: %s" % json.dumps(doc))
        expect = {"user-service": ("/api/users", self.up.url), "auth-service": ("/api/auth", self.dead_url)}
        for s in services:
            for key in ("name", "path_prefix", "target_url", "status", "response_time_ms"):
                self.assertIn(key, s, "service entry lacks %r: %s" % (key, json.dumps(s)))
            self.assertEqual((s["path_prefix"], s["target_url"]), expect[s["name"]], json.dumps(s))
            self.assertIsInstance(s["status"], str, json.dumps(s))
            rt = s["response_time_ms"]
            self.assertTrue(rt is None or (isinstance(rt, (int, float)) and rt >= 0), json.dumps(s))
        # The loaded filters are listed once for the gateway (none are configured here).
        self.assertEqual(doc.get("filters"), [], json.dumps(doc))


def render(text):
    return text.replace("{port}", str(g.free_port()))


class CommandLineTest(g.GatewayTestCase):
    GOOD = """\
listeners:
  - address: 127.0.0.1
    port: {port}
workers: 1
services:
  - name: auth-service
    targets:
      - http://127.0.0.1:9
routes:
  - prefix: /api/auth
    service: auth-service
"""

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_version(self):
        rc, out, err = g.run_gateway_cli(["--version"])
        self.assertEqual(rc, 0, "stdout %r stderr %r" % (out, err))
        m = re.search(r"gateway (\d+\.\d+\.\d+)", out + err)
        self.assertTrue(m, "expected 'gateway X.Y.Z', got stdout %r stderr %r" % (out, err))
        pv = project_version()
        if pv:
            self.assertEqual(m.group(1), pv)

    def test_check_good_config(self):
        path = self.write("good.yaml", render(self.GOOD))
        rc, out, err = g.run_gateway_cli(["-t", "-c", path])
        self.assertEqual(rc, 0, "stdout %r stderr %r" % (out, err))
        self.assertIn("%s: ok" % path, out + err)

    def test_check_good_config_with_env_defaults(self):
        text = self.GOOD.replace("port: {port}", "port: ${GW_TEST_PORT_UNSET_X:-8081}").replace(
            "http://127.0.0.1:9", "${GW_TEST_URL_UNSET_X:-http://localhost:8080}")
        path = self.write("envdef.yaml", text)
        rc, out, err = g.run_gateway_cli(["-t", "-c", path],
                                         env={"GW_TEST_PORT_UNSET_X": None, "GW_TEST_URL_UNSET_X": None})
        self.assertEqual(rc, 0, "stdout %r stderr %r" % (out, err))

    # (name, replace-this, with-this, expected line, words one of which the message must contain)
    BAD = [
        ("unknown_key", "workers: 1\n", "workers: 1\nbogus_key: 3\n", 5, ["bogus_key"]),
        ("unknown_nested_key", "    port: {port}\n", "    port: {port}\n    colour: blue\n", 4, ["colour"]),
        ("bad_port", "port: {port}", "port: 70000", 3, ["port"]),
        ("port_not_int", "port: {port}", "port: eighty", 3, ["port"]),
        ("bad_duration", "workers: 1\n", "workers: 1\ntimeouts:\n  request_head: 10 parsecs\n", 6,
         ["request_head"]),
        ("bad_workers", "workers: 1", "workers: many", 4, ["workers"]),
        ("unknown_service", "    service: auth-service", "    service: nosuch-service", 11,
         ["nosuch-service", "service"]),
        ("bad_yaml_syntax", "workers: 1\n", "workers: 1: 2\n", 4, []),
        ("unset_env_var", "port: {port}", "port: ${GW_TEST_SURELY_UNSET_VAR}", 3, ["GW_TEST_SURELY_UNSET_VAR"]),
        # docs/configuration.md "Rules"
        ("duplicate_key", "workers: 1\n", "workers: 1\nworkers: 2\n", 5, ["workers"]),
        ("duplicate_prefix", "    service: auth-service",
         "    service: auth-service\n  - prefix: /api/auth/\n    service: auth-service", 12, ["prefix"]),
        ("empty_methods", "    service: auth-service", "    service: auth-service\n    methods: []", 12,
         ["methods"]),
        ("lowercase_method", "    service: auth-service", "    service: auth-service\n    methods: [get]", 12,
         ["methods"]),
        ("target_with_path", "http://127.0.0.1:9", "http://127.0.0.1:9/base", 8, ["target"]),
        ("fractional_duration", "workers: 1\n", "workers: 1\ntimeouts:\n  shutdown: 1.5s\n", 6, ["shutdown"]),
        ("tls_cert_missing", "    port: {port}\n",
         "    port: {port}\n    tls:\n      cert: /nonexistent-dir/cert.pem\n      key: /nonexistent-dir/key.pem\n",
         5, ["cert"]),
    ]

    def check_bad(self, name, old, new, line, words):
        text = render(self.GOOD.replace(old, new))
        self.assertNotEqual(self.GOOD.replace(old, new), self.GOOD, "test table error")
        path = self.write(name + ".yaml", text)
        rc, out, err = g.run_gateway_cli(["-t", "-c", path], env={"GW_TEST_SURELY_UNSET_VAR": None})
        both = out + err
        self.assertEqual(rc, 1, "exit code; stdout %r stderr %r\nconfig:\n%s" % (out, err, text))
        m = re.search(re.escape(path) + r":(\d+):(\d+):?\s*(.*)", both)
        self.assertTrue(m, "expected '%s:LINE:COL: message', got stdout %r stderr %r" % (path, out, err))
        self.assertEqual(int(m.group(1)), line, "line number in %r\nconfig:\n%s" % (m.group(0), text))
        self.assertGreaterEqual(int(m.group(2)), 1, m.group(0))
        if words:
            self.assertTrue(any(w.lower() in m.group(3).lower() for w in words),
                            "message %r should name one of %r" % (m.group(0), words))

    def test_run_with_bad_config_fails(self):
        path = self.write("bad.yaml", render(self.GOOD.replace("workers: 1", "workers: 1\nbogus_key: 1")))
        rc, out, err = g.run_gateway_cli(["-c", path], timeout=10)
        self.assertNotEqual(rc, 0, "gateway started with a bad config; stdout %r stderr %r" % (out, err))
        self.assertIn(path + ":5:", out + err)


def _make_bad(case):
    def t(self):
        self.check_bad(*case)
    t.__name__ = "test_check_bad_" + case[0]
    return t


for _case in CommandLineTest.BAD:
    setattr(CommandLineTest, "test_check_bad_" + _case[0], _make_bad(_case))


if __name__ == "__main__":
    g.main()
