#!/usr/bin/env python3
# ctest-labels: asan
"""Request framing strictness (smuggling vectors) over raw sockets, plus pipelining, HTTP/1.0 clients and
re-framing of upstream responses."""

import base64
import os
import socket

import gwtest as g

TITLES = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
          431: "Request Header Fields Too Large", 501: "Not Implemented", 505: "HTTP Version Not Supported"}

H = "Host: gw.test\r\n"

# name -> (raw request bytes, expected status or tuple of accepted statuses)
MALFORMED = {
    "cl_and_te": ("POST /echo HTTP/1.1\r\n" + H + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "te_and_cl": ("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    "two_different_cl": ("POST /echo HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    "cl_plus_sign": ("POST /echo HTTP/1.1\r\n" + H + "Content-Length: +5\r\n\r\n", 400),
    "cl_hex": ("POST /echo HTTP/1.1\r\n" + H + "Content-Length: 0x5\r\n\r\n", 400),
    "cl_list": ("POST /echo HTTP/1.1\r\n" + H + "Content-Length: 5, 6\r\n\r\n", 400),
    "cl_negative": ("POST /echo HTTP/1.1\r\n" + H + "Content-Length: -1\r\n\r\n", 400),
    "cl_overflow": ("POST /echo HTTP/1.1\r\n" + H + "Content-Length: 99999999999999999999999\r\n\r\n", (400, 413)),
    "te_chunked_twice": ("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked, chunked\r\n\r\n", (400, 501)),
    "te_gzip": ("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip\r\n\r\n", 501),
    "te_space_before_colon": ("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding : chunked\r\n\r\n", 400),
    "space_before_colon_other": ("GET /echo HTTP/1.1\r\n" + H + "X-Thing : 1\r\n\r\n", 400),
    "obs_fold": ("GET /echo HTTP/1.1\r\n" + H + "X-Long: part1\r\n  part2\r\n\r\n", 400),
    "nul_in_value": ("GET /echo HTTP/1.1\r\n" + H + "X-A: a\x00b\r\n\r\n", 400),
    "bare_cr_in_value": ("GET /echo HTTP/1.1\r\n" + H + "X-A: a\rb\r\n\r\n", 400),
    "bare_lf_only": ("GET /echo HTTP/1.1\nHost: gw.test\n\n", 400),
    "bare_lf_mixed": ("GET /echo HTTP/1.1\r\nHost: gw.test\nX-A: 1\r\n\r\n", 400),
    "missing_host_11": ("GET /echo HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    "two_hosts": ("GET /echo HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400),
    "http2_version": ("GET /echo HTTP/2.0\r\n" + H + "\r\n", 505),
    "http_1_2_version": ("GET /echo HTTP/1.2\r\n" + H + "\r\n", 505),
    "bad_method_token": ("G@T /echo HTTP/1.1\r\n" + H + "\r\n", 400),
    "te_in_http10": ("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "pct00_in_path": ("GET /echo/%00x HTTP/1.1\r\n" + H + "\r\n", 400),
    "bad_pct_escape": ("GET /echo/%zz HTTP/1.1\r\n" + H + "\r\n", 400),
    "dotdot_above_root": ("GET /../../etc/passwd HTTP/1.1\r\n" + H + "\r\n", 400),
    "bad_chunk_size": ("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                       400),
    "chunk_data_without_crlf": ("POST /echo HTTP/1.1\r\n" + H +
                                "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400),
    "request_line_over_8k": ("GET /" + "a" * (8 * 1024 + 64) + " HTTP/1.1\r\n" + H + "\r\n", 414),
    "over_100_fields": ("GET /echo HTTP/1.1\r\n" + H + "".join("X-F%d: v\r\n" % i for i in range(101)) + "\r\n",
                        431),
    "header_block_over_32k": ("GET /echo HTTP/1.1\r\n" + H +
                              "".join("X-Big%d: %s\r\n" % (i, "b" * 1000) for i in range(34)) + "\r\n", 431),
    "target_not_origin_form": ("GET echo HTTP/1.1\r\n" + H + "\r\n", 400),
    "lowercase_version": ("GET /echo http/1.1\r\n" + H + "\r\n", (400, 505)),
    "double_space_request_line": ("GET  /echo HTTP/1.1\r\n" + H + "\r\n", 400),
    "bad_header_name_char": ("GET /echo HTTP/1.1\r\n" + H + "X(A): 1\r\n\r\n", 400),
    "empty_header_name": ("GET /echo HTTP/1.1\r\n" + H + ": v\r\n\r\n", 400),
    "header_without_colon": ("GET /echo HTTP/1.1\r\n" + H + "NoColonHere\r\n\r\n", 400),
    "chunk_size_overflow": ("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
                            "fffffffffffffffffffff\r\n", (400, 413)),
    "chunk_size_negative": ("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n-5\r\n", 400),
    "body_over_limit_cl": ("POST /echo HTTP/1.1\r\n" + H + "Content-Length: 2048\r\n\r\n", 413),
    "body_over_limit_chunked": ("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n800\r\n" +
                                "z" * 2048 + "\r\n0\r\n\r\n", 413),
}


def config(up, port):
    return g.base_config(port, [{"name": "up", "targets": [up.url]}], [{"prefix": "/", "service": "up"}],
                         limits={"request_body": "1k"},
                         timeouts={"request_head": "5s", "keepalive_idle": "10s"})


class FramingTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.gw = self.start_gateway(lambda p: config(self.up, p))

    def check_malformed(self, raw, expect):
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        accepted = expect if isinstance(expect, tuple) else (expect,)
        with g.RawConn(self.gw.port, timeout=3) as c:
            c.try_send(raw)
            try:
                r = c.read_response(timeout=3)
            except socket.timeout:
                self.fail("no answer within 3s (expected %s) to %r" % (expect, raw[:200]))
            except g.ConnClosed as e:
                self.fail("connection closed without an answer (expected %s): %s" % (expect, e))
            self.assertIn(r.status, accepted, "request %r\nexpected %s, got:\n%s" % (raw[:200], expect, r.summary()))
            self.assertErrorJson(r, r.status, TITLES[r.status])
            self.assertIn("close", r.tokens("connection"),
                          "a malformed-request answer must carry Connection: close:\n%s" % r.summary())
            self.assertTrue(c.closed_within(2), "connection still open 2s after the %d answer" % r.status)
        self.assertUpstreamSawNothing(self.up)
        self.assertTrue(self.gw.alive(), "gateway died")

    # -- other framing behaviour ----------------------------------------------------------------------
    def test_get_with_body_is_one_request(self):
        with g.RawConn(self.gw.port) as c:
            c.send("GET /echo HTTP/1.1\r\n" + H + "Content-Length: 5\r\n\r\nhello")
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            self.assertEqual(r.json()["body_length"], 5)
            c.send(g.request_bytes("GET", "/after"))
            r2 = c.read_response()
            self.assertEqual(r2.json()["path"], "/after")
        reqs = self.up.requests()
        self.assertEqual([x["target"] for x in reqs], ["/echo", "/after"],
                         "upstream should see GET /echo (with its body) then /after, saw %r"
                         % [x["head"] for x in reqs])
        self.assertEqual(reqs[0]["body_length"], 5)
        self.assertEqual(reqs[0]["body_raw"], b"hello")

    def test_pipelined_requests_answered_in_order(self):
        body = b"pipelined-body"
        data = (g.request_bytes("GET", "/slow?ms=300&size=7") + g.request_bytes("POST", "/echo/two", body=body)
                + g.request_bytes("GET", "/echo/three"))
        with g.RawConn(self.gw.port) as c:
            c.send(data)
            r1 = c.read_response()
            r2 = c.read_response()
            r3 = c.read_response()
            self.assertEqual((r1.status, r1.body), (200, g.pattern_bytes(7)), r1.summary())
            self.assertEqual(r2.json()["path"], "/echo/two", r2.summary())
            self.assertEqual(r2.json()["body_length"], len(body))
            self.assertEqual(r3.json()["path"], "/echo/three", r3.summary())
            self.assertFalse(c.closed_within(0.3), "connection should stay open after pipelined requests")

    def test_http10_client(self):
        with g.RawConn(self.gw.port) as c:
            c.send(b"GET /echo HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            self.assertIn(r.framing, ("length", "close"), "HTTP/1.0 client must not get chunked:\n%s" % r.summary())
            self.assertEqual(r.json()["path"], "/echo")
            self.assertTrue(c.closed_within(2), "HTTP/1.0 connection without keep-alive must be closed")

    def test_http10_keepalive(self):
        with g.RawConn(self.gw.port) as c:
            c.send(b"GET /echo/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            self.assertEqual(r.framing, "length", "keep-alive 1.0 answer needs Content-Length:\n%s" % r.summary())
            self.assertIn("keep-alive", r.tokens("connection"), r.summary())
            c.send(b"GET /echo/2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r2 = c.read_response()
            self.assertEqual(r2.json()["path"], "/echo/2")

    def test_close_delimited_upstream_to_http11_client(self):
        n = 200000
        with g.RawConn(self.gw.port) as c:
            c.send(g.request_bytes("GET", "/close/%d" % n))
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            self.assertIn(r.framing, ("length", "chunked"), "must be re-framed for HTTP/1.1:\n%s" % r.summary())
            self.assertEqual(r.body, g.pattern_bytes(n))
            c.send(g.request_bytes("GET", "/echo/next"))
            r2 = c.read_response()
            self.assertEqual(r2.json()["path"], "/echo/next", "connection should stay usable")

    def test_close_delimited_upstream_to_http10_client(self):
        n = 100000
        with g.RawConn(self.gw.port) as c:
            c.send(b"GET /close/%d HTTP/1.0\r\n\r\n" % n)
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            self.assertIn(r.framing, ("length", "close"), r.summary())
            self.assertEqual(len(r.body), n)
            self.assertEqual(r.body, g.pattern_bytes(n))

    def test_chunked_upstream_response(self):
        n = 150000
        with g.RawConn(self.gw.port) as c:
            c.send(g.request_bytes("GET", "/chunked/%d?trailer=1" % n))
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            self.assertEqual(r.framing, "chunked", r.summary())
            self.assertEqual(r.body, g.pattern_bytes(n))
            self.assertEqual(r.trailers, [], "trailers are dropped")
        with g.RawConn(self.gw.port) as c:
            c.send(b"GET /chunked/%d HTTP/1.0\r\n\r\n" % n)
            r = c.read_response()
            self.assertIn(r.framing, ("length", "close"), "HTTP/1.0 client must not get chunked")
            self.assertEqual(r.body, g.pattern_bytes(n))

    def test_head_and_no_body_statuses(self):
        with g.RawConn(self.gw.port) as c:
            c.send(g.request_bytes("HEAD", "/bytes/5000"))
            r = c.read_response(method="HEAD")
            self.assertEqual((r.status, r.body), (200, b""), r.summary())
            for code in (204, 304):
                c.send(g.request_bytes("GET", "/status/%d" % code))
                r = c.read_response()
                self.assertEqual((r.status, r.body), (code, b""), r.summary())
            c.send(g.request_bytes("GET", "/echo/last"))
            r = c.read_response()
            self.assertEqual(r.json()["path"], "/echo/last", "connection out of sync after bodiless answers")

    def test_expect_100_continue(self):
        with g.RawConn(self.gw.port) as c:
            c.send("POST /echo HTTP/1.1\r\n" + H + "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            try:
                interim = c.read_until(b"\r\n\r\n", timeout=1.5)
                self.assertTrue(interim.startswith(b"HTTP/1.1 100"), "unexpected interim answer %r" % interim)
            except socket.timeout:
                pass  # a proxy may also just wait for the body
            c.send(b"hello")
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            self.assertEqual(r.json()["body_length"], 5)

    def test_equal_duplicate_content_length_ok(self):
        with g.RawConn(self.gw.port) as c:
            c.send("POST /echo HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
            r = c.read_response()
            self.assertEqual(r.status, 200, "identical Content-Length copies are allowed:\n%s" % r.summary())
        seen = self.up.requests()[0]
        self.assertEqual(g.hall(seen["headers"], "content-length"), ["5"], seen["head"])
        self.assertEqual(seen["body_raw"], b"hello")

    def test_request_trailers_dropped(self):
        with g.RawConn(self.gw.port) as c:
            c.send("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            c.send(g.request_bytes("GET", "/echo/after-trailer"))
            self.assertEqual(c.read_response().json()["path"], "/echo/after-trailer")
        seen = self.up.requests()
        self.assertEqual(len(seen), 2, [x["head"] for x in seen])
        self.assertEqual(seen[0]["body_length"], 5)
        self.assertNotIn(b"X-Trailer", seen[0]["body_raw"] + seen[0]["head"].encode("latin-1"))

    def test_absolute_form_target(self):
        r = g.simple_request(self.gw.port, "GET", "http://gw.test/echo/abs?q=1")
        self.assertEqual(r.status, 200, r.summary())
        seen = self.up.requests()[0]
        self.assertEqual(seen["target"], "/echo/abs?q=1", "absolute-form must go upstream in origin-form")

    def test_client_connection_close(self):
        with g.RawConn(self.gw.port) as c:
            c.send(g.request_bytes("GET", "/echo", [("Connection", "close")]))
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())
            self.assertIn("close", r.tokens("connection"), r.summary())
            self.assertTrue(c.closed_within(2), "connection left open after Connection: close")

    def test_http10_without_host_ok(self):
        r = g.simple_request(self.gw.port, "GET", "/echo", host=None, version="HTTP/1.0")
        self.assertEqual(r.status, 200, r.summary())

    def test_leading_empty_lines_tolerated(self):
        with g.RawConn(self.gw.port) as c:
            c.send(b"\r\n" + g.request_bytes("GET", "/echo/crlf"))
            r = c.read_response()
            self.assertEqual(r.status, 200, r.summary())


# Malformed upstream responses: the client gets 502 when nothing was sent yet.
BAD_RESPONSES = {
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "two_different_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "bad_status_line": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "not_http": b"SSH-2.0-OpenSSH_9.0\r\n\r\n",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 0\r\n\r\n",
    "nul_in_header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "empty_close": b"",
}


class UpstreamResponseFramingTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.gw = self.start_gateway(lambda p: config(self.up, p))

    def raw_target(self, data):
        return "/raw?b64=" + base64.urlsafe_b64encode(data).decode()

    def check_bad_response(self, data):
        with g.RawConn(self.gw.port, timeout=5) as c:
            c.send(g.request_bytes("GET", self.raw_target(data)))
            r = c.read_response()
            self.assertErrorJson(r, 502, "Bad Gateway")
            self.assertNotIn(b"hello", r.body)
        r = g.simple_request(self.gw.port, "GET", "/echo/after")
        self.assertEqual(r.status, 200, "gateway broken after a bad upstream response:\n%s" % r.summary())

    def test_bad_chunk_mid_body_aborts(self):
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
        with g.RawConn(self.gw.port, timeout=5) as c:
            c.send(g.request_bytes("GET", self.raw_target(data)))
            try:
                r = c.read_response()
            except (g.ConnClosed, AssertionError):
                r = None        # aborted mid-body: the client sees a truncated message
            if r is not None:
                self.assertEqual(r.status, 502, "a broken chunked body was passed on as complete:\n%s"
                                 % r.summary())
            self.assertTrue(c.closed_within(3), "client connection should be closed after the broken body")

    def test_truncated_content_length_body_aborts(self):
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-some"
        with g.RawConn(self.gw.port, timeout=5) as c:
            c.send(g.request_bytes("GET", self.raw_target(data)))
            with self.assertRaises(g.ConnClosed, msg="a truncated upstream body must not look complete"):
                c.read_response()


def _make_bad_response(name, data):
    def t(self):
        self.check_bad_response(data)
    t.__name__ = "test_bad_upstream_response_" + name
    return t


for _name, _data in BAD_RESPONSES.items():
    setattr(UpstreamResponseFramingTest, "test_bad_upstream_response_" + _name, _make_bad_response(_name, _data))


def _make(name, raw, expect):
    def t(self):
        self.check_malformed(raw, expect)
    t.__name__ = "test_malformed_" + name
    t.__doc__ = None
    return t


for _name, (_raw, _expect) in MALFORMED.items():
    setattr(FramingTest, "test_malformed_" + _name, _make(_name, _raw, _expect))


if __name__ == "__main__":
    g.main()
