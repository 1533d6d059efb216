#!/usr/bin/env python3
# ctest-labels: asan
"""Connection budget (max_connections) and configured size limits."""

import os
import socket
import time

import gwtest as g


class LimitsTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    def gateway(self, **extra):
        return self.start_gateway(lambda p: g.base_config(
            p, [{"name": "up", "targets": [self.up.url]}], [{"prefix": "/", "service": "up"}], **extra))

    def test_max_connections(self):
        gw = self.gateway(max_connections=2, timeouts={"keepalive_idle": "30s"})
        # (the readiness probe's connection may still count for a moment: c1/c2 are served once it is gone)
        c1 = g.RawConn(gw.port)
        c2 = g.RawConn(gw.port)
        self.addCleanup(c1.close)
        self.addCleanup(c2.close)
        for i, c in enumerate((c1, c2)):
            c.send(g.request_bytes("GET", "/echo/c%d" % (i + 1)))
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
        c3 = g.RawConn(gw.port, connect=False)
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", gw.port))     # may complete through the backlog
        except OSError as e:
            s.close()
            self.fail("third connect failed outright (%s); the kernel backlog should hold it" % e)
        c3.sock = s
        self.addCleanup(c3.close)
        c3.send(g.request_bytes("GET", "/echo/c3"))
        try:
            early = c3.read_some(timeout=1.0)
        except socket.timeout:
            early = None
        self.assertIsNone(early, "a third connection was served while two were open (max_connections: 2): %r"
                          % (early or b"")[:200])
        self.assertFalse(c3.eof, "the third connection was accepted and closed (should wait in the backlog)")
        c1.close()
        t0 = time.monotonic()
        r = c3.read_response(timeout=5)
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json()["path"], "/echo/c3")
        self.assertLess(time.monotonic() - t0, 3, "served too late after a slot freed")
        # c2 still works
        c2.send(g.request_bytes("GET", "/echo/c2b"))
        self.assertEqual(c2.read_response().status, 200)

    def test_custom_header_limits(self):
        gw = self.gateway(limits={"header_fields": 10, "request_line": "1k", "header_block": "4k"})
        ok = g.simple_request(gw.port, "GET", "/echo", [("X-F%d" % i, "v") for i in range(8)])
        self.assertEqual(ok.status, 200, ok.summary())
        r = g.simple_request(gw.port, "GET", "/echo", [("X-F%d" % i, "v") for i in range(11)])
        self.assertErrorJson(r, 431, "Request Header Fields Too Large")
        r = g.simple_request(gw.port, "GET", "/" + "a" * 1100)
        self.assertErrorJson(r, 414, "URI Too Long")
        r = g.simple_request(gw.port, "GET", "/echo", [("X-Big", "b" * 5000)])
        self.assertErrorJson(r, 431, "Request Header Fields Too Large")
        self.assertEqual(len(self.up.requests()), 1)

    def test_body_limit_exact_boundary(self):
        gw = self.gateway(limits={"request_body": "1k"})
        r = g.simple_request(gw.port, "POST", "/echo", body=b"a" * 1024)
        self.assertEqual(r.status, 200, "a body of exactly request_body must pass:\n%s" % r.summary())
        r = g.simple_request(gw.port, "POST", "/echo", body=b"a" * 1025)
        self.assertErrorJson(r, 413, "Content Too Large")
        # regression: the status line said "Content Too Large" and the JSON "Payload Too Large"
        self.assertEqual(r.reason, "Content Too Large", "one table of titles for the status line and the JSON")

    def test_streamed_chunked_body_over_limit(self):
        # larger than body_buffer, so it is streamed; the cap must still hold mid-stream
        gw = self.gateway(limits={"request_body": "100k", "body_buffer": "16k"})
        body = os.urandom(300 * 1024)
        wire = g.chunked_encode(body, sizes=(8192,))
        with g.RawConn(gw.port, timeout=10) as c:
            c.try_send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            c.try_send(wire)
            try:
                r = c.read_response(timeout=5)
            except g.ConnClosed:
                r = None
            if r is not None:
                self.assertNotEqual(r.status, 200, "a 300 KiB body passed a 100 KiB limit:\n%s" % r.summary())
                self.assertEqual(r.status, 413, r.summary())
        for seen in self.up.requests():
            self.assertFalse(seen["body_complete"] and seen["body_length"] > 100 * 1024,
                             "upstream received a complete %d-byte body over the limit" % seen["body_length"])


if __name__ == "__main__":
    g.main()
