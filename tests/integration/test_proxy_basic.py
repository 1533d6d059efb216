#!/usr/bin/env python3
# ctest-labels: asan
"""Plain proxying: routing, path normalisation, bodies, forwarded headers, hop-by-hop removal, 404/405."""

import hashlib
import os
import re

import gwtest as g


class ProxyBasicTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.auth = self.start_upstream("auth")
        self.users = self.start_upstream("users")
        services = [{"name": "auth-service", "targets": [self.auth.url]},
                    {"name": "user-service", "targets": [self.users.url]}]
        routes = [
            {"prefix": "/api/auth", "service": "auth-service"},
            {"prefix": "/api/users", "service": "user-service"},
            {"prefix": "/api/strip/", "service": "user-service", "strip_prefix": True},
            {"prefix": "/api/only", "service": "user-service", "methods": ["GET", "POST"]},
            {"prefix": "/api/keephost", "service": "user-service", "preserve_host": True},
        ]
        self.gw = self.start_gateway(lambda p: g.base_config(p, services, routes))
        self.port = self.gw.port

    def one(self, method, target, headers=(), body=b"", up=None, host="gw.test"):
        """Sends one request, returns (response, the single request the upstream saw)."""
        up = up or self.users
        r = g.simple_request(self.port, method, target, headers, body, host=host)
        self.assertEqual(r.status, 200, "%s %s: expected 200 from the upstream, got:\n%s"
                         % (method, target, r.summary()))
        reqs = up.wait_requests(1)
        self.assertEqual(len(reqs), 1, "upstream %s should have seen exactly one request, saw %r"
                         % (up.name, [x["head"] for x in reqs]))
        return r, reqs[0]

    # -- routing and paths ---------------------------------------------------------------------------
    def test_get_reaches_upstream_with_path_and_query(self):
        r, seen = self.one("GET", "/api/users/1?x=1&y=a%20b")
        self.assertEqual(seen["method"], "GET")
        self.assertEqual(seen["target"], "/api/users/1?x=1&y=a%20b")
        self.assertEqual(seen["version"], "HTTP/1.1")
        self.assertEqual(r.json()["server"], "users", r.summary())
        self.assertEqual(self.auth.requests(), [])

    def test_path_normalised_before_routing_and_forwarding(self):
        _, seen = self.one("GET", "/api/users/../auth/x", up=self.auth)
        self.assertEqual(seen["path"], "/api/auth/x")
        self.assertEqual(self.users.requests(), [], "the users upstream must not see the request")
        self.auth.reset()
        _, seen = self.one("GET", "//api///auth/./a/b/../c?q=/../x", up=self.auth)
        self.assertEqual(seen["target"], "/api/auth/a/c?q=/../x",
                         "dot-segments and repeated slashes removed, query unchanged")

    def test_percent_encoded_unreserved_decoded(self):
        # router.h: unreserved escapes decoded, others kept with upper-case hex
        _, seen = self.one("GET", "/api/users/%7Ejo%41/%2f%3a")
        self.assertEqual(seen["path"], "/api/users/~joA/%2F%3A")

    def test_segment_boundary(self):
        r = g.simple_request(self.port, "GET", "/api/authz")
        self.assertErrorJson(r, 404, "Not Found")
        for target in ("/api/auth", "/api/auth/", "/api/auth?q=1", "/api/auth/deeper/x"):
            r = g.simple_request(self.port, "GET", target)
            self.assertEqual(r.status, 200, "%s should route to auth:\n%s" % (target, r.summary()))
            self.assertEqual(r.json()["server"], "auth", target)
        self.assertEqual(len(self.auth.requests()), 4)
        self.assertEqual(self.users.requests(), [])

    def test_no_route_404_json(self):
        r = g.simple_request(self.port, "GET", "/nothing/here")
        doc = self.assertErrorJson(r, 404, "Not Found")
        self.assertEqual(r.header("x-request-id"), doc["request_id"],
                         "request_id in the body should match the X-Request-Id header")
        self.assertUpstreamSawNothing(self.auth, settle=0)
        self.assertUpstreamSawNothing(self.users, settle=0)

    def test_strip_prefix(self):
        _, seen = self.one("GET", "/api/strip/a/b?q=1")
        self.assertEqual(seen["target"], "/a/b?q=1")
        self.users.reset()
        _, seen = self.one("GET", "/api/strip")
        self.assertEqual(seen["target"], "/")
        self.users.reset()
        _, seen = self.one("GET", "/api/strip/?k=v")
        self.assertEqual(seen["target"], "/?k=v")

    def test_methods_405_with_allow(self):
        self.one("GET", "/api/only/x")
        self.users.reset()
        for method in ("DELETE", "PUT"):
            r = g.simple_request(self.port, method, "/api/only/x")
            self.assertErrorJson(r, 405, "Method Not Allowed")
            allow = set(r.tokens("allow"))
            self.assertTrue({"get", "post"} <= allow and not ({"delete", "put"} & allow),
                            "Allow should list GET and POST only, got %r" % r.header_all("allow"))
        self.assertUpstreamSawNothing(self.users)

    def test_host_is_target_authority_by_default(self):
        _, seen = self.one("GET", "/api/users/h", host="client.example:8443")
        hosts = g.hall(seen["headers"], "host")
        self.assertEqual(hosts, ["127.0.0.1:%d" % self.users.port])
        self.assertEqual(g.hall(seen["headers"], "x-forwarded-host"), ["client.example:8443"])

    def test_preserve_host(self):
        _, seen = self.one("GET", "/api/keephost/h", host="client.example:8443")
        self.assertEqual(g.hall(seen["headers"], "host"), ["client.example:8443"])

    # -- bodies -------------------------------------------------------------------------------------
    def test_post_content_length_body(self):
        body = os.urandom(10000)
        r, seen = self.one("POST", "/api/users/upload", [("Content-Type", "application/octet-stream")], body)
        self.assertEqual(seen["body_sha256"], hashlib.sha256(body).hexdigest())
        self.assertEqual(seen["body_length"], len(body))
        self.assertEqual(g.hall(seen["headers"], "content-length"), ["10000"])
        self.assertEqual(g.hall(seen["headers"], "transfer-encoding"), [])
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(body).hexdigest())

    def check_chunked_upload(self, size):
        body = os.urandom(size)
        wire = g.chunked_encode(body, sizes=(1, 100, 7000, 16384), ext=True)
        r, seen = self.one("POST", "/api/users/upload", [("Transfer-Encoding", "chunked")], wire)
        self.assertEqual((seen["body_length"], seen["body_sha256"]), (size, hashlib.sha256(body).hexdigest()))
        cl = g.hall(seen["headers"], "content-length")
        te = g.hall(seen["headers"], "transfer-encoding")
        self.assertTrue(bool(cl) != bool(te),
                        "upstream must see exactly one of Content-Length / Transfer-Encoding, saw CL=%r TE=%r"
                        % (cl, te))
        if cl:
            self.assertEqual(cl, [str(size)])
        else:
            self.assertEqual([t.strip().lower() for t in te], ["chunked"])

    def test_chunked_upload_small(self):
        self.check_chunked_upload(3000)        # fits body_buffer: may be re-framed with Content-Length

    def test_chunked_upload_large(self):
        self.check_chunked_upload(300000)      # over body_buffer (64 KiB): streamed

    def test_empty_post(self):
        _, seen = self.one("POST", "/api/users/empty", [("Content-Length", "0")])
        self.assertEqual(seen["body_length"], 0)

    # -- forwarded headers ----------------------------------------------------------------------------
    def test_x_forwarded_headers(self):
        _, seen = self.one("GET", "/api/users/xff", host="front.example")
        h = seen["headers"]
        self.assertEqual(", ".join(g.hall(h, "x-forwarded-for")), "127.0.0.1")
        self.assertEqual(g.hall(h, "x-forwarded-proto"), ["http"])
        self.assertEqual(g.hall(h, "x-forwarded-host"), ["front.example"])
        self.users.reset()
        _, seen = self.one("GET", "/api/users/xff", [("X-Forwarded-For", "10.1.2.3, 10.0.0.9")])
        xff = ", ".join(g.hall(seen["headers"], "x-forwarded-for"))
        self.assertEqual(re.sub(r"\s+", "", xff), "10.1.2.3,10.0.0.9,127.0.0.1",
                         "existing X-Forwarded-For kept, peer appended; got %r" % xff)

    def test_request_id_generated_and_returned(self):
        r, seen = self.one("GET", "/api/users/rid")
        up_ids = g.hall(seen["headers"], "x-request-id")
        self.assertEqual(len(up_ids), 1, "upstream should see one generated X-Request-Id, saw %r" % up_ids)
        self.assertTrue(up_ids[0].strip())
        self.assertEqual(r.header_all("x-request-id"), up_ids, "the response carries the same id")
        self.users.reset()
        r2, _ = self.one("GET", "/api/users/rid")
        self.assertNotEqual(r2.header("x-request-id"), r.header("x-request-id"), "ids must differ per request")

    def test_request_id_kept(self):
        r, seen = self.one("GET", "/api/users/rid", [("X-Request-Id", "client-id-123")])
        self.assertEqual(g.hall(seen["headers"], "x-request-id"), ["client-id-123"])
        self.assertEqual(r.header_all("x-request-id"), ["client-id-123"])
        # whole up to 128 characters (not cut: two ids sharing a prefix stay two ids); longer ones replaced
        for n in (39, 40, 64, 128):
            rid = ("%d-" % n) + "r" * (n - len("%d-" % n))
            self.users.reset()
            r, seen = self.one("GET", "/api/users/rid", [("X-Request-Id", rid)])
            self.assertEqual(g.hall(seen["headers"], "x-request-id"), [rid])
            self.assertEqual(r.header_all("x-request-id"), [rid])
        self.users.reset()
        r, seen = self.one("GET", "/api/users/rid", [("X-Request-Id", "x" * 129)])
        self.assertNotEqual(r.header("x-request-id"), "x" * 129)
        self.assertEqual(g.hall(seen["headers"], "x-request-id"), [r.header("x-request-id")])
        r = g.simple_request(self.gw.port, "GET", "/nowhere", [("X-Request-Id", "n" * 100)])
        self.assertEqual(r.json()["request_id"], "n" * 100, r.summary())

    # -- hop-by-hop ---------------------------------------------------------------------------------
    def test_hop_by_hop_request_headers_removed(self):
        hdrs = [("Connection", "keep-alive, X-Foo"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
                ("Trailer", "X-Checksum"), ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"),
                ("X-Foo", "1"), ("X-Keep", "yes")]
        _, seen = self.one("GET", "/api/users/hop", hdrs)
        h = seen["headers"]
        names = {n.lower() for n, _ in h}
        for gone in ("keep-alive", "te", "trailer", "upgrade", "proxy-connection", "x-foo"):
            self.assertNotIn(gone, names, "hop-by-hop %r forwarded; upstream head:\n%s" % (gone, seen["head"]))
        self.assertEqual(g.hall(h, "x-keep"), ["yes"])
        conn_tokens = {t.strip().lower() for v in g.hall(h, "connection") for t in v.split(",") if t.strip()}
        self.assertTrue(conn_tokens <= {"keep-alive", "close"},
                        "client's Connection tokens leaked upstream: %r" % conn_tokens)

    def test_upgrade_other_than_websocket_not_forwarded(self):
        _, seen = self.one("GET", "/api/users/h2c", [("Connection", "Upgrade, HTTP2-Settings"),
                                                     ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
        names = {n.lower() for n, _ in seen["headers"]}
        self.assertFalse({"upgrade", "http2-settings"} & names, "upstream head:\n%s" % seen["head"])
        conn_tokens = {t.strip().lower() for v in g.hall(seen["headers"], "connection") for t in v.split(",")}
        self.assertNotIn("upgrade", conn_tokens)

    def test_hop_by_hop_response_headers_removed(self):
        q = "hdr=Connection:X-Bar&hdr=X-Bar:1&hdr=Keep-Alive:timeout=9&hdr=Proxy-Connection:x&hdr=X-Ok:2"
        r, _ = self.one("GET", "/api/users/resp?" + q)
        names = {n.lower() for n, _ in r.headers}
        self.assertFalse({"x-bar", "keep-alive", "proxy-connection"} & names, r.summary())
        self.assertEqual(r.header("x-ok"), "2")
        self.assertNotIn("x-bar", set(r.tokens("connection")))


class TargetsAndListenersTest(g.GatewayTestCase):
    def test_round_robin_targets(self):
        a, b = self.start_upstream("a"), self.start_upstream("b")
        gw = self.start_gateway(lambda p: g.base_config(p, [{"name": "pair", "targets": [a.url, b.url]}],
                                                        [{"prefix": "/", "service": "pair"}]))
        servers = []
        for i in range(10):
            r = g.simple_request(gw.port, "GET", "/echo/%d" % i)
            self.assertEqual(r.status, 200, r.summary())
            servers.append(r.json()["server"])
        self.assertTrue(4 <= servers.count("a") <= 6, "round-robin over two targets gave %r" % servers)

    def test_workers_auto(self):
        up = self.start_upstream()
        gw = self.start_gateway(lambda p: g.base_config(p, [{"name": "up", "targets": [up.url]}],
                                                        [{"prefix": "/", "service": "up"}], workers="auto"))
        for i in range(20):
            r = g.simple_request(gw.port, "GET", "/echo/%d" % i)
            self.assertEqual((r.status, r.json()["path"]), (200, "/echo/%d" % i), r.summary())

    def test_ipv6_listener(self):
        try:
            s = g.socket.socket(g.socket.AF_INET6)
            s.bind(("::1", 0))
            s.close()
        except OSError:
            self.skipTest("no ::1 on this machine")
        up = self.start_upstream()
        port = g.free_port()

        def cfg(p):
            c = g.base_config(p, [{"name": "up", "targets": [up.url]}], [{"prefix": "/", "service": "up"}])
            c["listeners"] = [{"address": "::1", "port": p}]
            return c

        gw = g.Gateway(self.tmp, cfg(port), port=port, wait=False)
        self._gateways.append(gw)
        ok = g.wait_until(lambda: g.port_accepts(port, host="::1") or not gw.alive(), 10 * g.SLOW)
        self.assertTrue(ok and gw.alive(), "gateway not listening on [::1]:%d; log:\n%s" % (port, gw.log()))
        with g.RawConn(port, host="::1") as c:
            c.send(g.request_bytes("GET", "/echo/v6"))
            r = c.read_response()
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(g.hall(up.requests()[0]["headers"], "x-forwarded-for"), ["::1"])


if __name__ == "__main__":
    g.main()
