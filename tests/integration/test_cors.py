#!/usr/bin/env python3
# ctest-labels: asan
"""cors.so (plugins/cors) in a running gateway, configured as the default file does it
(`allow_origins: ${CORS_ALLOW_ORIGINS:-*}`), first in a pipeline with adminauth and apikey behind it and a
real upstream: an allowed origin gets Access-Control-Allow-Origin on the upstream's answers and on the
gateway's own (adminauth's 401, apikey's 401); a disallowed origin gets none and the upstream's own CORS
headers are removed; a preflight from an allowed origin is answered 204 before authentication and never
reaches the upstream, one from a disallowed origin 403 JSON; CORS_ALLOW_ORIGINS with a comma-separated list;
credentials; a route of its own; `gateway -t` refusing credentials with "*" at file:line:col."""

import os
import unittest

import gwtest as g

PIPELINE = """
pipeline:
  - name: cors
    allow_origins: ${CORS_ALLOW_ORIGINS:-*}
%s  - name: adminauth
    password: s3cret
  - name: apikey
"""

ORIGIN_A = "https://app.example.com"
ORIGIN_B = "http://localhost:3000"


class CorsCase(g.GatewayTestCase):
    def gateway(self, origins=None, extra="", routes_extra=None):
        up = self.start_upstream()
        self.up = up

        def cfg(port):
            services = [{"name": "svc", "targets": [up.url]}]
            routes = [{"prefix": "/api", "service": "svc"},
                      {"prefix": "/locked", "service": "svc", "filters": {"apikey": {"require": True}}}]
            routes += routes_extra or []
            return g.to_yaml(g.base_config(port, services, routes)) + PIPELINE % extra
        env = {"CORS_ALLOW_ORIGINS": origins}
        return self.start_gateway(cfg, env=env)

    def req(self, gw, method, path, headers=()):
        """(status, [(name, value)] in order, body) of one request on a fresh connection."""
        r = g.simple_request(gw.port, method, path, list(dict(headers).items()), timeout=10.0 * g.SLOW)
        return r.status, r.headers, r.body

    def upstream_saw(self, method):
        return [r for r in self.up.requests() if r["method"] == method]

    def test_star_by_default(self):
        gw = self.gateway()
        st, h, _ = self.req(gw, "GET", "/api/x", {"Origin": "https://anyone.example"})
        self.assertEqual(st, 200)
        self.assertEqual(g.hget(h, "access-control-allow-origin"), "*")
        self.assertIn("X-RateLimit-Remaining", g.hget(h, "access-control-expose-headers"))
        self.assertEqual(g.hget(h, "vary"), "Origin")
        st, h, _ = self.req(gw, "GET", "/api/x")  # no Origin: no CORS headers
        self.assertEqual(st, 200)
        self.assertIsNone(g.hget(h, "access-control-allow-origin"))
        self.assertEqual(g.hget(h, "vary"), "Origin")
        # preflight: 204 at the edge, before adminauth, not forwarded
        st, h, body = self.req(gw, "OPTIONS", "/admin/apikeys", {
            "Origin": "https://anyone.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        self.assertEqual(st, 204, body)
        self.assertEqual(g.hget(h, "access-control-allow-origin"), "*")
        self.assertIn("POST", g.hget(h, "access-control-allow-methods"))
        self.assertIn("Authorization", g.hget(h, "access-control-allow-headers"))
        self.assertEqual(g.hget(h, "access-control-max-age"), "600")
        self.assertEqual(self.upstream_saw("OPTIONS"), [])

    def test_listed_origins_from_the_environment(self):
        gw = self.gateway(ORIGIN_A + ", " + ORIGIN_B)
        for origin in (ORIGIN_A, ORIGIN_B):
            st, h, _ = self.req(gw, "GET", "/api/x?hdr=Vary:Accept-Encoding", {"Origin": origin})
            self.assertEqual(st, 200)
            self.assertEqual(g.hget(h, "access-control-allow-origin"), origin)
            self.assertEqual(sorted(v.lower() for v in g.hall(h, "vary")), ["accept-encoding", "origin"])
        # disallowed: forwarded, no CORS headers, the upstream's own taken away
        st, h, _ = self.req(gw, "GET", "/api/x?hdr=Access-Control-Allow-Origin:*",
                            {"Origin": "https://evil.example"})
        self.assertEqual(st, 200)
        self.assertIsNone(g.hget(h, "access-control-allow-origin"))
        self.assertEqual(g.hget(h, "vary"), "Origin")
        n_get = len(self.upstream_saw("GET"))
        self.assertEqual(n_get, 3)
        # preflights: allowed 204, refused 403 JSON; the upstream sees neither
        st, h, _ = self.req(gw, "OPTIONS", "/api/x", {"Origin": ORIGIN_B, "Access-Control-Request-Method": "PUT",
                                                      "Access-Control-Request-Headers": "X-API-Key"})
        self.assertEqual(st, 204)
        self.assertEqual(g.hget(h, "access-control-allow-origin"), ORIGIN_B)
        self.assertIn(g.hget(h, "content-length"), (None, "0"))
        st, h, body = self.req(gw, "OPTIONS", "/api/x", {"Origin": "https://evil.example",
                                                         "Access-Control-Request-Method": "GET"})
        self.assertEqual(st, 403)
        self.assertIn("origin https://evil.example is not allowed", body.decode())
        self.assertIsNone(g.hget(h, "access-control-allow-origin"))
        st, _, body = self.req(gw, "OPTIONS", "/api/x", {"Origin": ORIGIN_A, "Access-Control-Request-Method": "GET",
                                                         "Access-Control-Request-Headers": "X-Secret"})
        self.assertEqual(st, 403)
        self.assertIn("header X-Secret is not allowed", body.decode())
        self.assertEqual(self.upstream_saw("OPTIONS"), [])
        # an OPTIONS that is no preflight goes to the upstream
        st, h, _ = self.req(gw, "OPTIONS", "/api/x", {"Origin": ORIGIN_A})
        self.assertEqual(st, 200)
        self.assertEqual(len(self.upstream_saw("OPTIONS")), 1)

    def test_gateway_answers_carry_cors(self):
        gw = self.gateway(ORIGIN_A)
        # adminauth's 401 (the console's fetch can read it) and apikey's 401 on a route that needs a key
        for path in ("/admin/apikeys", "/locked/x"):
            st, h, body = self.req(gw, "GET", path, {"Origin": ORIGIN_A})
            self.assertEqual(st, 401, body)
            self.assertEqual(g.hget(h, "access-control-allow-origin"), ORIGIN_A, path)
            self.assertIn("Origin", g.hget(h, "vary"))
        # the built-in endpoints too
        st, h, _ = self.req(gw, "GET", "/health", {"Origin": ORIGIN_A})
        self.assertEqual(st, 200)
        self.assertEqual(g.hget(h, "access-control-allow-origin"), ORIGIN_A)
        self.assertEqual(self.up.requests(), [])

    def test_credentials_and_a_route_of_its_own(self):
        routes = [{"prefix": "/partner", "service": "svc",
                   "filters": {"cors": {"allow_origins": ["https://partner.example"], "allow_credentials": True}}},
                  {"prefix": "/raw", "service": "svc", "filters": {"cors": {"disabled": True}}}]
        gw = self.gateway(ORIGIN_A, routes_extra=routes)
        st, h, _ = self.req(gw, "GET", "/partner/x", {"Origin": "https://partner.example"})
        self.assertEqual(g.hget(h, "access-control-allow-origin"), "https://partner.example")
        self.assertEqual(g.hget(h, "access-control-allow-credentials"), "true")
        st, h, _ = self.req(gw, "GET", "/partner/x", {"Origin": ORIGIN_A})
        self.assertIsNone(g.hget(h, "access-control-allow-origin"))
        st, h, _ = self.req(gw, "GET", "/api/x", {"Origin": ORIGIN_A})
        self.assertIsNone(g.hget(h, "access-control-allow-credentials"))
        # disabled: the upstream's CORS stands and preflights reach it
        st, h, _ = self.req(gw, "GET", "/raw/x?hdr=Access-Control-Allow-Origin:https://up.example",
                            {"Origin": ORIGIN_A})
        self.assertEqual(g.hget(h, "access-control-allow-origin"), "https://up.example")
        self.req(gw, "OPTIONS", "/raw/x", {"Origin": ORIGIN_A, "Access-Control-Request-Method": "GET"})
        self.assertEqual(len(self.upstream_saw("OPTIONS")), 1)

    def test_credentials_with_star_refused(self):
        path = os.path.join(self.tmp, "bad.yaml")
        cfg = g.to_yaml(g.base_config(g.free_port(), [{"name": "svc", "targets": ["http://127.0.0.1:9"]}],
                                      [{"prefix": "/", "service": "svc"}]))
        cfg += "pipeline:\n  - name: cors\n    allow_origins: '*'\n    allow_credentials: true\n"
        with open(path, "w") as f:
            f.write(cfg)
        rc, out, err = g.run_gateway_cli(["-t", "-c", path])
        self.assertEqual(rc, 1, out + err)
        line = cfg.splitlines().index("    allow_credentials: true") + 1
        self.assertIn("bad.yaml:%d:24: cors.allow_credentials: true cannot go with allow_origins '*'" % line,
                      out + err)
        # a bad origin from the environment names the key too
        rc, out, err = g.run_gateway_cli(["-t", "-c", os.path.join(g.SOURCE_DIR, "conf", "gateway.yaml")],
                                         env={"CORS_ALLOW_ORIGINS": "https://a.example/path", "ADMIN_PASSWORD": "x"})
        with open(os.path.join(g.SOURCE_DIR, "conf", "gateway.yaml")) as f:
            shipped = "name: cors" in f.read()
        if shipped:
            self.assertEqual(rc, 1, out + err)
            self.assertIn("cors.allow_origins: 'https://a.example/path': an origin has no path", out + err)


if __name__ == "__main__":
    unittest.main()
