#!/usr/bin/env python3
# ctest-labels: asan
"""Upstream failures and the per-connection timers (head deadline, body idle, keep-alive idle, upstream
connect/response/idle)."""

import socket
import threading
import time

import gwtest as g


class TimeoutsTest(g.GatewayTestCase):
    def gateway(self, target_url, **timeouts):
        t = {"request_head": "2s", "body_idle": "1s", "keepalive_idle": "1s", "upstream_connect": "1s",
             "upstream_response": "1s", "upstream_idle": "1s"}
        t.update(timeouts)
        return self.start_gateway(lambda p: g.base_config(p, [{"name": "up", "targets": [target_url]}],
                                                          [{"prefix": "/", "service": "up"}], timeouts=t))

    def test_upstream_down_502(self):
        dead = g.free_port()
        gw = self.gateway("http://127.0.0.1:%d" % dead)
        t0 = time.monotonic()
        r = g.simple_request(gw.port, "GET", "/anything")
        took = time.monotonic() - t0
        self.assertErrorJson(r, 502, "Bad Gateway")
        body = r.body.decode("latin-1").lower()
        for leak in ("127.0.0.1", str(dead), "refused", "errno", "econn"):
            self.assertNotIn(leak, body, "502 body leaks internal detail %r: %r" % (leak, r.body))
        self.assertLess(took, 1.0 * g.SLOW, "a refused connection should be answered at once")

    def test_upstream_connect_timeout_504(self):
        # A listener with a full accept queue drops further SYNs: connect() hangs.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        port = ls.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                fillers.append(s)
            time.sleep(0.1)
            probe = socket.socket()
            probe.settimeout(0.5)
            try:
                probe.connect(("127.0.0.1", port))
                self.skipTest("cannot make a black-hole listener here (connect succeeded)")
            except socket.timeout:
                pass
            finally:
                probe.close()
            gw = self.gateway("http://127.0.0.1:%d" % port)
            t0 = time.monotonic()
            r = g.simple_request(gw.port, "GET", "/x", timeout=6)
            took = time.monotonic() - t0
            self.assertErrorJson(r, 504, "Gateway Timeout")
            self.assertTrue(0.8 <= took <= 3.5 * g.SLOW, "504 after %.2fs, expected ~1s" % took)
        finally:
            for s in fillers:
                s.close()
            ls.close()

    def test_hung_upstream_504(self):
        up = self.start_upstream()
        gw = self.gateway(up.url)
        t0 = time.monotonic()
        r = g.simple_request(gw.port, "GET", "/hang", timeout=8)
        took = time.monotonic() - t0
        self.assertErrorJson(r, 504, "Gateway Timeout")
        self.assertTrue(0.8 <= took <= 3.0 * g.SLOW, "504 after %.2fs, expected ~1s" % took)
        # the gateway gave up on that upstream connection
        st = g.wait_until(lambda: (lambda s: s if s["conns"] and all(c["closed"] for c in s["conns"]) else None)(
            up.state()), 3)
        self.assertIsNotNone(st, "the hung upstream connection should be closed by the gateway")

    def test_slow_client_head_deadline(self):
        up = self.start_upstream()
        gw = self.gateway(up.url, request_head="2s")
        c = g.RawConn(gw.port, timeout=8)
        self.addCleanup(c.close)
        stop = threading.Event()
        sent = []

        def trickle():
            for _ in range(40):               # at most 20 s
                if stop.wait(0.5):
                    return
                if not c.try_send(b"a"):
                    return
                sent.append(1)

        t0 = time.monotonic()
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        th = threading.Thread(target=trickle, daemon=True)
        th.start()
        try:
            first = c.read_some(timeout=8)
        except socket.timeout:
            first = None
        took = time.monotonic() - t0
        stop.set()
        th.join(2)
        self.assertIsNotNone(first, "still connected and unanswered 8s into a trickled head")
        if first:
            r = g.parse_response_head(first[: first.find(b"\r\n\r\n") + 4]) if b"\r\n\r\n" in first else None
            self.assertIsNotNone(r, "garbage answer %r" % first[:200])
            self.assertEqual(r.status, 408, "expected 408 or a close, got %r" % first[:300])
        self.assertTrue(1.5 <= took <= 4.0 * g.SLOW,
                        "dropped after %.2fs (%d bytes trickled); expected about 2s" % (took, len(sent)))
        self.assertTrue(c.closed_within(2), "connection not closed after the head deadline")
        self.assertUpstreamSawNothing(up, settle=0)

    def test_body_idle_408(self):
        up = self.start_upstream()
        gw = self.gateway(up.url, body_idle="1s")
        with g.RawConn(gw.port, timeout=6) as c:
            t0 = time.monotonic()
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            try:
                r = c.read_response(timeout=5)
            except g.ConnClosed:
                r = None
            took = time.monotonic() - t0
            if r is not None:
                self.assertErrorJson(r, 408, "Request Timeout")
            self.assertTrue(0.8 <= took <= 3.5 * g.SLOW, "answer/close after %.2fs, expected ~1s" % took)
            self.assertTrue(c.closed_within(2))
        self.assertUpstreamSawNothing(up, settle=0)

    def test_keepalive_idle_closes(self):
        up = self.start_upstream()
        gw = self.gateway(up.url, keepalive_idle="1s")
        with g.RawConn(gw.port, timeout=6) as c:
            c.send(g.request_bytes("GET", "/echo"))
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            t0 = time.monotonic()
            closed = c.closed_within(4 * g.SLOW)
            took = time.monotonic() - t0
            self.assertTrue(closed, "idle keep-alive connection still open after %.1fs" % took)
            self.assertTrue(0.7 <= took <= 3.5 * g.SLOW, "closed after %.2fs, expected ~1s" % took)
            self.assertEqual(bytes(c.buf), b"", "idle close should be silent, got %r" % bytes(c.buf[:200]))

    def test_keepalive_not_closed_while_active(self):
        up = self.start_upstream()
        gw = self.gateway(up.url, keepalive_idle="1s")
        with g.RawConn(gw.port, timeout=6) as c:
            for i in range(6):      # 6 requests 0.4 s apart: 2.4 s total, never 1 s idle
                c.send(g.request_bytes("GET", "/echo/%d" % i))
                r = c.read_response()
                self.assertEqual(r.json()["path"], "/echo/%d" % i)
                time.sleep(0.4)

    def test_upstream_idle_aborts(self):
        up = self.start_upstream()
        gw = self.gateway(up.url, upstream_idle="1s")
        with g.RawConn(gw.port, timeout=8) as c:
            c.send(g.request_bytes("GET", "/stall/1000"))
            head = g.parse_response_head(c.read_until(b"\r\n\r\n", timeout=3))
            self.assertEqual(head.status, 200)
            t0 = time.monotonic()
            closed = c.closed_within(5 * g.SLOW)
            took = time.monotonic() - t0
            self.assertTrue(closed, "client connection still open %.1fs after the upstream stalled" % took)
            self.assertLess(took, 3.5 * g.SLOW, "aborted after %.2fs, expected ~1s" % took)
            self.assertLess(len(c.buf), 2000, "got the whole body though the upstream never sent it")


if __name__ == "__main__":
    g.main()
