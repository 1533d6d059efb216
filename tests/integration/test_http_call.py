#!/usr/bin/env python3
# ctest-labels: asan
"""host->http_call in a running gateway, through the caller fixture filter (tests/fixtures/caller.c: in the
request phase it calls a second real upstream and answers the client with the call's status, X-Up header
and body). Cases: a configured service by name (round-robin over its targets, keep-alive reuse, the
filter's headers sent, Host and framing the gateway's), an absolute URL (an IP literal and `localhost`
through the worker's async resolver), a POST body, an upstream that never answers (GW_CALL_TIMEOUT),
connection refused (GW_CALL_CONNECT), malformed answers (GW_CALL_INVALID), bodies over max_body
(GW_CALL_TOO_LARGE; chunked ones de-chunked when they fit), https (a service with its own CA, pooled; a
URL checked against the system CA store, so a self-signed certificate is refused), and clients that go
away (reset) while their call is pending: the call's connection is closed and the gateway carries on
(in the ASan build the harness also fails on any sanitizer report)."""

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import unittest

import gwfilters as gf
import gwtest as g
from test_upstream_tls import TlsUpstream, localhost_cert
from upstream import pattern_bytes

CODES = {"connect": -1, "timeout": -2, "invalid": -3, "too_large": -4, "closed": -5}


def raw_path(data):
    return "/raw?b64=" + base64.urlsafe_b64encode(data).decode()


class HttpCallTest(gf.FilterTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(gf.fx("caller")):
            self.fail("caller fixture not built")
        self.up = self.start_upstream("up")
        self.side = self.start_upstream("side")
        self.side2 = self.start_upstream("side2")

    def start(self, workers=1):
        services = [{"name": "up", "targets": [self.up.url]},
                    {"name": "side", "targets": [self.side.url, self.side2.url]}]
        return self.start_filters([{"name": "caller"}], up=self.up, services=services, workers=workers)

    def call(self, gw, headers, path="/client"):
        r = g.simple_request(gw.port, "GET", path, list(headers.items()), timeout=10.0 * g.SLOW)
        return r

    def assertFailed(self, r, what):
        self.assertEqual(r.status, 502, r.summary())
        self.assertEqual(r.header("x-call-status"), str(CODES[what]), r.summary())

    def test_service_by_name(self):
        gw = self.start()
        seen = []
        for i in range(4):
            r = self.call(gw, {"X-Call-Service": "side",
                               "X-Call-Path": "/echo/n%d?hdr=X-Up:yes&status=201" % i})
            self.assertEqual(r.status, 201, r.summary())
            self.assertEqual(r.header("x-call-status"), "0")
            self.assertEqual(r.header("x-call-up"), "yes")
            self.assertTrue((r.header("content-type") or "").startswith("application/json"), r.summary())
            doc = r.json()
            self.assertEqual(doc["path"], "/echo/n%d" % i)
            seen.append(doc)
        # round-robin over the two targets; each target's second call reused its pooled connection
        self.assertEqual(len(self.side.requests()), 2)
        self.assertEqual(len(self.side2.requests()), 2)
        self.assertEqual(self.side.accepted(), 1)
        self.assertEqual(self.side2.accepted(), 1)
        for doc in seen:
            hdrs = [(k.lower(), v) for k, v in doc["headers"]]
            self.assertIn(("x-from-filter", "caller"), hdrs)
            hosts = [v for k, v in hdrs if k == "host"]
            self.assertEqual(len(hosts), 1, hdrs)  # the filter's Host was dropped, the target's sent
            self.assertIn(hosts[0], ("127.0.0.1:%d" % self.side.port, "127.0.0.1:%d" % self.side2.port))
        self.assertEqual(self.up.requests(), [])  # the filter answered: the route's upstream saw nothing

    def test_url_and_body(self):
        gw = self.start()
        r = self.call(gw, {"X-Call-Url": "http://127.0.0.1:%d/echo/url?hdr=X-Up:lit" % self.side.port})
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.header("x-call-up"), "lit")
        self.assertEqual(r.json()["path"], "/echo/url")
        # a host name: resolved on the worker's loop (localhost may give ::1 first: the next address is tried)
        r = self.call(gw, {"X-Call-Url": "http://localhost:%d/ignored" % self.side.port,
                           "X-Call-Path": "/echo/dns", "X-Call-Method": "POST", "X-Call-Body": "hello"})
        self.assertEqual(r.status, 200, r.summary())
        doc = r.json()
        self.assertEqual(doc["path"], "/echo/dns")
        self.assertEqual(doc["method"], "POST")
        self.assertEqual(doc["body_sha256"], hashlib.sha256(b"hello").hexdigest())
        self.assertIn(["Host", "localhost:%d" % self.side.port], doc["headers"])
        # de-chunked, within the cap; close-delimited
        r = self.call(gw, {"X-Call-Service": "side", "X-Call-Path": "/chunked/3000", "X-Call-Max": "3000"})
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.body, pattern_bytes(3000))
        r = self.call(gw, {"X-Call-Service": "side", "X-Call-Path": "/close/2000"})
        self.assertEqual(r.body, pattern_bytes(2000))

    def test_failures(self):
        gw = self.start(workers=2)
        self.assertFailed(self.call(gw, {"X-Call-Service": "side", "X-Call-Path": "/hang",
                                         "X-Call-Timeout": "300"}), "timeout")
        self.assertFailed(self.call(gw, {"X-Call-Url": "http://127.0.0.1:%d/" % g.free_port()}), "connect")
        bad = b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"
        self.assertFailed(self.call(gw, {"X-Call-Service": "side", "X-Call-Path": raw_path(bad)}), "invalid")
        bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        self.assertFailed(self.call(gw, {"X-Call-Service": "side", "X-Call-Path": raw_path(bad)}), "invalid")
        ssh = raw_path(b"SSH-2.0-x\r\n")
        self.assertFailed(self.call(gw, {"X-Call-Service": "side", "X-Call-Path": ssh}), "invalid")
        cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
        self.assertFailed(self.call(gw, {"X-Call-Service": "side", "X-Call-Path": raw_path(cut)}), "closed")
        for path in ("/bytes/5000", "/chunked/5000", "/close/5000"):
            hdrs = {"X-Call-Service": "side", "X-Call-Path": path, "X-Call-Max": "1000"}
            self.assertFailed(self.call(gw, hdrs), "too_large")
        r = self.call(gw, {"X-Call-Service": "nosuch"})
        self.assertEqual(r.status, 500, r.summary())  # refused at once: not a configured service
        r = self.call(gw, {"X-Call-Service": "side", "X-Call-Path": "/echo/after"})
        self.assertEqual(r.status, 200, r.summary())

    def test_client_gone_while_pending(self):
        gw = self.start(workers=2)
        conns = []
        for i in range(10):
            c = g.RawConn(gw.port, timeout=5.0 * g.SLOW)
            hdrs = [("X-Call-Service", "side"), ("X-Call-Path", "/hang"), ("X-Call-Timeout", "60000")]
            c.send(g.request_bytes("GET", "/gone%d" % i, hdrs))
            conns.append(c)
        # both targets hold the pending calls' connections
        ok = g.wait_until(lambda: len(self.side.requests()) + len(self.side2.requests()) == 10, 5 * g.SLOW)
        self.assertTrue(ok, "the calls did not reach the side upstreams")
        for c in conns:  # reset: a FIN after a complete request is a half-close, answered as usual
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()

        def all_closed():
            conns = self.side.state()["conns"] + self.side2.state()["conns"]
            return conns and all(x["closed"] for x in conns)
        self.assertTrue(g.wait_until(all_closed, 5 * g.SLOW), "the calls' connections were not closed")
        r = self.call(gw, {"X-Call-Service": "side", "X-Call-Path": "/echo/after"})
        self.assertEqual(r.status, 200, r.summary())
        r = g.simple_request(gw.port, "GET", "/plain")
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(json.loads(r.body)["path"], "/plain")


@unittest.skipUnless(shutil.which("openssl"), "the openssl command line tool is needed")
class HttpsCallTest(gf.FilterTestCase):
    """https: a service with its own CA (SNI and verification as for proxied requests), and a URL, which is
    verified against the system's CA store (the test's self-signed certificate is refused there)."""

    def test_https_service_and_url(self):
        cert, key = localhost_cert()
        tls = TlsUpstream(self.tmp, cert, key, "tls-side")
        self._upstreams.append(tls)
        up = self.start_upstream("up")
        services = [{"name": "up", "targets": [up.url]},
                    {"name": "secure", "targets": [tls.url_localhost], "tls_ca": cert}]
        gw = self.start_filters([{"name": "caller"}], up=up, services=services, workers=1)
        for i in range(2):
            hdrs = [("X-Call-Service", "secure"), ("X-Call-Path", "/echo/tls?hdr=X-Up:tls")]
            r = g.simple_request(gw.port, "GET", "/c", hdrs, timeout=10 * g.SLOW)
            self.assertEqual(r.status, 200, r.summary() + gw.log(3000))
            self.assertEqual(r.header("x-call-up"), "tls")
        st = tls.state()
        self.assertEqual(st["accepted"], 1, st)  # the TLS connection was pooled and reused
        self.assertTrue(st["conns"][0]["tls"])
        self.assertEqual(st["conns"][0]["sni"], "localhost")
        r = g.simple_request(gw.port, "GET", "/c", [("X-Call-Url", tls.url_localhost + "/echo/url")],
                             timeout=10 * g.SLOW)
        self.assertEqual(r.status, 502, r.summary())
        self.assertEqual(r.header("x-call-status"), str(CODES["connect"]), r.summary())
        self.assertEqual(len(tls.requests()), 2)  # nothing went over the unverified connection


if __name__ == "__main__":
    g.main()
