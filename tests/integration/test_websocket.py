#!/usr/bin/env python3
# ctest-labels: asan
"""WebSocket upgrade through the gateway: 101, two-way tunnel, close."""

import os

import gwtest as g


class WebSocketTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.gw = self.proxy_gateway(self.up)

    def upgrade(self, c, path="/ws"):
        key = g.ws_key()
        c.send(g.request_bytes("GET", path, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                             ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
        head = c.read_until(b"\r\n\r\n", timeout=5)
        r = g.parse_response_head(head)
        self.assertEqual(r.status, 101, "expected 101, got:\n%s" % r.summary())
        self.assertEqual(r.header("sec-websocket-accept"), g.ws_accept(key), r.summary())
        self.assertIn("upgrade", r.tokens("connection"), r.summary())
        self.assertEqual((r.header("upgrade") or "").lower(), "websocket", r.summary())
        return r

    def test_upgrade_echo_close(self):
        with g.RawConn(self.gw.port, timeout=10) as c:
            self.upgrade(c)
            seen = self.up.requests()[0]
            self.assertEqual((g.hget(seen["headers"], "upgrade") or "").lower(), "websocket", seen["head"])
            self.assertIn("upgrade", (g.hget(seen["headers"], "connection") or "").lower(), seen["head"])
            for text in ("hello", "second message", "x" * 125, "y" * 126, "z" * 70000):
                c.send(g.ws_client_frame(0x1, text.encode()))
                fin, op, payload = g.ws_read_frame(c)
                self.assertEqual((fin, op), (True, 0x1))
                self.assertEqual(payload, text.encode(), "echo of a %d-byte text frame differs" % len(text))
            big = os.urandom(200 * 1024)
            c.send(g.ws_client_frame(0x2, big))
            fin, op, payload = g.ws_read_frame(c, timeout=10)
            self.assertEqual(op, 0x2)
            self.assertEqual(len(payload), len(big))
            self.assertEqual(payload, big, "200 KiB binary frame came back different")
            big_text = ("w" * (200 * 1024)).encode()
            c.send(g.ws_client_frame(0x1, big_text))
            fin, op, payload = g.ws_read_frame(c, timeout=10)
            self.assertEqual((op, payload == big_text), (0x1, True))
            # fragmented message: frames pass through as they are
            c.send(g.ws_client_frame(0x1, b"frag-", fin=False) + g.ws_client_frame(0x0, b"ment", fin=True))
            self.assertEqual(g.ws_read_frame(c)[:3], (False, 0x1, b"frag-"))
            self.assertEqual(g.ws_read_frame(c)[:3], (True, 0x0, b"ment"))
            # ping -> pong from the upstream
            c.send(g.ws_client_frame(0x9, b"pp"))
            self.assertEqual(g.ws_read_frame(c), (True, 0xA, b"pp"))
            # close
            c.send(g.ws_client_frame(0x8, b"\x03\xe8bye"))
            fin, op, payload = g.ws_read_frame(c)
            self.assertEqual((op, payload), (0x8, b"\x03\xe8bye"))
            self.assertTrue(c.closed_within(3), "gateway kept the client side open after the close handshake")
        st = g.wait_until(lambda: (lambda s: s if s["conns"] and s["conns"][0]["closed"] else None)(self.up.state()), 3)
        self.assertIsNotNone(st, "upstream side of the tunnel not closed: %r" % self.up.state()["conns"])
        self.assertTrue(st["conns"][0]["ws_closed"])
        self.assertIsNone(st["conns"][0]["error"], st["conns"][0])

    def test_client_disconnect_closes_upstream(self):
        c = g.RawConn(self.gw.port, timeout=10)
        self.upgrade(c)
        c.send(g.ws_client_frame(0x1, b"hi"))
        self.assertEqual(g.ws_read_frame(c)[2], b"hi")
        c.close()
        st = g.wait_until(lambda: (lambda s: s if s["conns"] and s["conns"][0]["closed"] else None)(self.up.state()), 3)
        self.assertIsNotNone(st, "upstream side of the tunnel still open after the client went away")

    def test_gateway_serves_after_websocket(self):
        with g.RawConn(self.gw.port, timeout=10) as c:
            self.upgrade(c)
            c.send(g.ws_client_frame(0x8, b"\x03\xe8"))
            g.ws_read_frame(c)
        r = g.simple_request(self.gw.port, "GET", "/echo/after")
        self.assertEqual(r.status, 200, r.summary())


if __name__ == "__main__":
    g.main()
