#!/usr/bin/env python3
# ctest-labels: asan
"""Keep-alive on both sides: client connections stay open, upstream connections are pooled and reused,
and an upstream that closes its side between requests does not break the next request."""

import random
import threading
import time

import gwtest as g


class KeepAliveTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    def gateway(self, **upstream):
        extra = {"timeouts": {"keepalive_idle": "10s"}}
        if upstream:
            extra["upstream"] = upstream
        return self.start_gateway(lambda p: g.base_config(p, [{"name": "up", "targets": [self.up.url]}],
                                                          [{"prefix": "/", "service": "up"}], **extra))

    def test_50_requests_one_client_connection(self):
        gw = self.gateway()
        with g.RawConn(gw.port) as c:
            for i in range(50):
                body = b"b%d" % i if i % 2 else b""
                c.send(g.request_bytes("POST" if body else "GET", "/echo/%d" % i, body=body))
                r = c.read_response()
                self.assertEqual(r.status, 200, "request %d: %s" % (i, r.summary()))
                self.assertEqual(r.json()["path"], "/echo/%d" % i)
                self.assertEqual(r.json()["body_length"], len(body))
        accepted = self.up.accepted()
        self.assertEqual(len(self.up.requests()), 50)
        self.assertLessEqual(accepted, 2, "upstream accepted %d connections for 50 sequential requests" % accepted)

    def test_50_requests_fresh_client_connections(self):
        gw = self.gateway()
        for i in range(50):
            r = g.simple_request(gw.port, "GET", "/echo/%d" % i)
            self.assertEqual(r.status, 200, "request %d: %s" % (i, r.summary()))
        accepted = self.up.accepted()
        self.assertLessEqual(accepted, 2, "upstream accepted %d connections for 50 sequential requests" % accepted)

    def test_http_client_keepalive(self):
        import http.client
        gw = self.gateway()
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        self.addCleanup(conn.close)
        for i in range(10):
            status, headers, body = g.http_request(gw.port, "GET", "/echo/%d" % i, conn=conn)
            self.assertEqual(status, 200)
        self.assertLessEqual(self.up.accepted(), 2)

    def test_upstream_connection_close_between_requests(self):
        gw = self.gateway()
        with g.RawConn(gw.port) as c:
            for i in range(10):
                target = "/echo/%d?close=1" % i if i % 2 == 0 else "/echo/%d" % i
                c.send(g.request_bytes("GET", target))
                r = c.read_response()
                self.assertEqual(r.status, 200, "request %d (%s): %s" % (i, target, r.summary()))
                self.assertEqual(r.json()["path"], "/echo/%d" % i)
                self.assertNotIn("close", r.tokens("connection"),
                                 "the upstream's Connection: close must not close the client connection")
        self.assertEqual(len(self.up.requests()), 10)

    def test_close_delimited_between_requests(self):
        gw = self.gateway()
        with g.RawConn(gw.port) as c:
            for i in range(6):
                target = "/close/%d" % (1000 + i) if i % 2 == 0 else "/echo/%d" % i
                c.send(g.request_bytes("GET", target))
                r = c.read_response()
                self.assertEqual(r.status, 200, "request %d (%s): %s" % (i, target, r.summary()))
                if i % 2 == 0:
                    self.assertEqual(r.body, g.pattern_bytes(1000 + i))
                else:
                    self.assertEqual(r.json()["path"], "/echo/%d" % i)

    def test_upstream_silently_closes_pooled_connection(self):
        gw = self.gateway()
        with g.RawConn(gw.port) as c:
            for i in range(5):
                c.send(g.request_bytes("GET", "/echo/%d?close_after_ms=50" % i))
                r = c.read_response()
                self.assertEqual(r.status, 200, "request %d: %s" % (i, r.summary()))
                self.assertEqual(r.json()["path"], "/echo/%d" % i)
                # wait until the upstream has closed the pooled connection
                ok = g.wait_until(lambda: all(x["closed"] for x in self.up.state()["conns"]), 3)
                self.assertTrue(ok, "upstream did not close its side")
        self.assertEqual(len([x for x in self.up.requests() if x["path"].startswith("/echo/")]), 5)

    def test_concurrent_clients_no_crosstalk(self):
        gw = self.start_gateway(lambda p: g.base_config(p, [{"name": "up", "targets": [self.up.url]}],
                                                        [{"prefix": "/", "service": "up"}], workers=2))
        errors = []

        def client(k):
            rnd = random.Random(k)
            try:
                with g.RawConn(gw.port, timeout=10) as c:
                    for i in range(10):
                        path = "/echo/c%d/r%d" % (k, i)
                        body = b"%d-%d" % (k, i) * rnd.randint(0, 50)
                        if rnd.random() < 0.3:
                            c.send(g.request_bytes("GET", "/slow?ms=%d&size=%d" % (rnd.randint(1, 40), 10 + i)))
                            r = c.read_response()
                            if r.body != g.pattern_bytes(10 + i):
                                errors.append("client %d slow %d: %r" % (k, i, r.summary(100)))
                        c.send(g.request_bytes("POST", path, body=body))
                        r = c.read_response()
                        doc = r.json()
                        if doc["path"] != path or doc["body_length"] != len(body):
                            errors.append("client %d asked %s (%d bytes), got %s (%d bytes)"
                                          % (k, path, len(body), doc["path"], doc["body_length"]))
            except Exception as e:
                errors.append("client %d: %r" % (k, e))

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "clients still running after 60s")
        self.assertEqual(errors, [])

    def test_pool_disabled(self):
        gw = self.gateway(keepalive=0)
        for i in range(5):
            r = g.simple_request(gw.port, "GET", "/echo/%d" % i)
            self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(self.up.accepted(), 5, "upstream.keepalive: 0 means one connection per request")

    def test_pool_idle_timeout(self):
        gw = self.gateway(keepalive_idle="500ms")
        r = g.simple_request(gw.port, "GET", "/echo/1")
        self.assertEqual(r.status, 200, r.summary())
        ok = g.wait_until(lambda: all(x["closed"] for x in self.up.state()["conns"]), 3)
        self.assertTrue(ok, "the pooled upstream connection should be closed after upstream.keepalive_idle")
        r = g.simple_request(gw.port, "GET", "/echo/2")
        self.assertEqual(r.status, 200, r.summary())


if __name__ == "__main__":
    g.main()
