#!/usr/bin/env python3
# ctest-labels: asan
"""Checks of the test harness itself: the upstream server and the raw HTTP client, with no gateway.
If these fail, failures in the other files say nothing about the gateway."""

import hashlib
import json
import os
import socket
import time
import unittest

import gwtest as g


class HarnessTest(unittest.TestCase):
    def setUp(self):
        self.tmp = g.new_tmp_dir("harness-")
        self.up = g.Upstream(self.tmp)
        self.addCleanup(self.up.stop)

    def test_yaml_writer(self):
        cfg = g.base_config(1234, [{"name": "up", "targets": ["http://127.0.0.1:5"]}],
                            [{"prefix": "/", "service": "up", "methods": ["GET", "POST"], "filters": {}}],
                            limits={"request_body": "1k"}, timeouts={"request_head": "2s"})
        text = g.to_yaml(cfg)
        self.assertIn("listeners:\n  - address: 127.0.0.1\n    port: 1234\n", text)
        self.assertIn("routes:\n  - prefix: /\n    service: up\n    methods:\n      - GET\n      - POST\n"
                      "    filters: {}\n", text)
        self.assertIn("timeouts:\n  shutdown: 3s\n  request_head: 2s\n", text)
        self.assertEqual(g.yaml_scalar("yes"), '"yes"')
        self.assertEqual(g.yaml_scalar("a: b"), '"a: b"')
        self.assertEqual(g.yaml_scalar("${PORT:-8081}"), "${PORT:-8081}")

    def test_echo_records_exact_bytes(self):
        body = os.urandom(3000)
        req = g.request_bytes("POST", "/echo?a=1&b=2", [("X-Test", "v1"), ("X-Test", "v2")], body)
        with g.RawConn(self.up.port) as c:
            c.send(req)
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            doc = r.json()
            self.assertEqual(doc["body_sha256"], hashlib.sha256(body).hexdigest())
            self.assertEqual(doc["path"], "/echo")
            self.assertEqual(doc["query"], "a=1&b=2")
            # keep-alive: second request on the same connection
            c.send(g.request_bytes("GET", "/second"))
            r2 = c.read_response()
            self.assertEqual(r2.json()["path"], "/second")
        reqs = self.up.requests()
        self.assertEqual(len(reqs), 2)
        self.assertEqual(reqs[0]["head"].encode("latin-1") + reqs[0]["body_raw"], req)
        self.assertEqual(reqs[0]["conn_id"], reqs[1]["conn_id"])
        self.assertEqual(self.up.accepted(), 1)
        self.up.reset()
        self.assertEqual(self.up.requests(), [])
        self.assertEqual(self.up.accepted(), 0)

    def test_chunked_upload_decoded(self):
        body = os.urandom(70000)
        wire = g.chunked_encode(body, sizes=(1, 4096, 30000), ext=True)
        with g.RawConn(self.up.port) as c:
            c.send(g.request_bytes("POST", "/upload", [("Transfer-Encoding", "chunked")], wire))
            r = c.read_response()
        doc = r.json()
        self.assertEqual(doc["length"], len(body))
        self.assertEqual(doc["sha256"], hashlib.sha256(body).hexdigest())
        rec = self.up.requests()[0]
        self.assertEqual(rec["body_framing"], "chunked")
        self.assertEqual(rec["body_raw"], wire)

    def test_bytes_chunked_close(self):
        n = 300000
        want = g.pattern_bytes(n)
        self.assertEqual(len(want), n)
        self.assertNotEqual(want[:65536], want[65536:131072])
        with g.RawConn(self.up.port) as c:
            c.send(g.request_bytes("GET", "/bytes/%d" % n))
            r = c.read_response()
            self.assertEqual((r.framing, r.body), ("length", want))
            c.send(g.request_bytes("GET", "/chunked/%d?trailer=1" % n))
            r = c.read_response()
            self.assertEqual((r.framing, r.body), ("chunked", want))
            self.assertEqual(r.trailers, [b"X-Trailer: yes\r\n"])
            c.send(g.request_bytes("HEAD", "/bytes/10"))
            r = c.read_response(method="HEAD")
            self.assertEqual((r.status, r.header("content-length"), r.body), (200, "10", b""))
            c.send(g.request_bytes("GET", "/close/%d" % n))
            r = c.read_response()
            self.assertEqual((r.framing, r.body), ("close", want))
            self.assertTrue(c.closed_within(1))

    def test_status_slow_hang_stall(self):
        r = g.simple_request(self.up.port, "GET", "/status/204")
        self.assertEqual((r.status, r.body, r.framing), (204, b"", "none"))
        t0 = time.monotonic()
        r = g.simple_request(self.up.port, "GET", "/slow?ms=300&size=5")
        self.assertGreaterEqual(time.monotonic() - t0, 0.29)
        self.assertEqual(r.body, g.pattern_bytes(5))
        with g.RawConn(self.up.port) as c:
            c.send(g.request_bytes("GET", "/hang"))
            with self.assertRaises(socket.timeout):
                c.read_response(timeout=0.5)
        with g.RawConn(self.up.port) as c:
            c.send(g.request_bytes("GET", "/stall/10"))
            with self.assertRaises(socket.timeout):
                c.read_response(timeout=0.5)

    def test_close_param_and_headers(self):
        with g.RawConn(self.up.port) as c:
            c.send(g.request_bytes("GET", "/echo?close=1&hdr=X-A:1&hdr=Keep-Alive:timeout=5"))
            r = c.read_response()
            self.assertEqual(r.header("connection"), "close")
            self.assertEqual(r.header("x-a"), "1")
            self.assertEqual(r.header("keep-alive"), "timeout=5")
            self.assertTrue(c.closed_within(1))
        with g.RawConn(self.up.port) as c:
            c.send(g.request_bytes("GET", "/echo?close_after_ms=100"))
            c.read_response()
            self.assertTrue(c.closed_within(1))

    def test_websocket_echo(self):
        key = g.ws_key()
        with g.RawConn(self.up.port) as c:
            c.send(g.request_bytes("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                  ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
            head = g.parse_response_head(c.read_until(b"\r\n\r\n"))
            self.assertEqual(head.status, 101)
            self.assertEqual(head.header("sec-websocket-accept"), g.ws_accept(key))
            big = os.urandom(200 * 1024)
            for payload in (b"hello", b"x" * 300, big):
                c.send(g.ws_client_frame(0x1, payload))
                fin, op, data = g.ws_read_frame(c)
                self.assertEqual((fin, op, data == payload), (True, 0x1, True))
            c.send(g.ws_client_frame(0x8, b"\x03\xe8"))
            fin, op, data = g.ws_read_frame(c)
            self.assertEqual((op, data), (0x8, b"\x03\xe8"))
            self.assertTrue(c.closed_within(2))
        st = self.up.state()
        self.assertTrue(st["conns"][0]["ws_closed"])

    def test_response_parser_and_closed(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        c = g.RawConn(port)
        a, _ = s.accept()
        a.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.0 404 X\r\n"
                  b"Content-Length: 0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"abc"))
        r = c.read_response()
        self.assertEqual((r.version, r.status, r.body), ("HTTP/1.0", 404, b""))
        self.assertFalse(c.closed_within(0.2))
        a.close()
        self.assertTrue(c.closed_within(1))
        c.close()
        s.close()

    def test_proc_stop_and_rss(self):
        p = g.Proc(["sleep", "30"], os.path.join(self.tmp, "sleep.log"))
        self.assertTrue(p.alive())
        self.assertIsNotNone(p.status_kib("VmRSS"))
        t0 = time.monotonic()
        rc = p.stop()
        self.assertLess(time.monotonic() - t0, 2)
        self.assertEqual(rc, -15)

    def test_assertion_helpers(self):
        tc = g.GatewayTestCase("assertUpstreamSawNothing")
        tc.assertUpstreamSawNothing(self.up, settle=0)
        with g.RawConn(self.up.port) as c:      # connection only, no byte
            pass
        tc.assertUpstreamSawNothing(self.up)
        with g.RawConn(self.up.port) as c:      # a few bytes, no complete request
            c.send(b"GET /")
            self.assertTrue(g.wait_until(lambda: self.up.bytes_in() > 0, 3))
        with self.assertRaises(AssertionError):
            tc.assertUpstreamSawNothing(self.up, settle=0)
        self.up.reset()
        g.simple_request(self.up.port, "GET", "/echo")
        with self.assertRaises(AssertionError):
            tc.assertUpstreamSawNothing(self.up, settle=0)
        # assertErrorJson accepts exactly the documented shape
        good = g.Response()
        good.status, good.headers = 404, [("Content-Type", "application/json")]
        good.body = b'{"error":"Not Found","message":"no route","request_id":"abc"}'
        tc.assertErrorJson(good, 404, "Not Found")
        for status, body, ctype in ((404, b'{"error":"Not Found","message":"m"}', "application/json"),
                                    (404, b'{"error":"Not found","message":"m","request_id":"a"}', "application/json"),
                                    (400, good.body, "application/json"),
                                    (404, good.body, "text/plain"),
                                    (404, b"not json", "application/json")):
            bad = g.Response()
            bad.status, bad.headers, bad.body = status, [("Content-Type", ctype)], body
            with self.assertRaises(AssertionError, msg=repr(body)):
                tc.assertErrorJson(bad, 404, "Not Found")

    def test_port_helpers(self):
        p = g.free_port()
        self.assertFalse(g.port_accepts(p))
        self.assertTrue(g.port_accepts(self.up.port))


if __name__ == "__main__":
    g.main()
