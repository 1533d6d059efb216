#!/usr/bin/env python3
# ctest-labels: asan
"""TLS listener: built-in and proxied requests over TLS; junk on the TLS port does not hurt the gateway."""

import hashlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import unittest

import gwtest as g

_CERT = None


def make_cert():
    """Self-signed cert+key for localhost / 127.0.0.1, made once per run with the openssl CLI."""
    global _CERT
    if _CERT is None:
        d = g.new_tmp_dir("tls-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                            "-keyout", key, "-out", cert], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("openssl failed: %s" % r.stderr.decode(errors="replace"))
        _CERT = (cert, key)
    return _CERT


@unittest.skipUnless(shutil.which("openssl"), "the openssl command line tool is needed")
class TlsTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.cert, self.key = make_cert()
        self.up = self.start_upstream()
        self.plain_port = g.free_port()

        def cfg(port):
            c = g.base_config(port, [{"name": "up", "targets": [self.up.url]}],
                              [{"prefix": "/api", "service": "up"},
                               {"prefix": "/dl", "service": "up", "strip_prefix": True}])
            c["listeners"] = [{"address": "127.0.0.1", "port": port, "tls": {"cert": self.cert, "key": self.key}},
                              {"address": "127.0.0.1", "port": self.plain_port}]
            return c

        self.gw = self.start_gateway(cfg, tls=True)
        self.ctx = ssl.create_default_context(cafile=self.cert)

    def https(self):
        c = http.client.HTTPSConnection("localhost", self.gw.port, context=self.ctx, timeout=10)
        # connect to 127.0.0.1 explicitly, verify as "localhost"
        c.sock = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.gw.port), timeout=10),
                                      server_hostname="localhost")
        self.addCleanup(c.close)
        return c

    def test_health_over_tls(self):
        c = self.https()
        status, headers, body = g.http_request(self.gw.port, "GET", "/health", conn=c)
        self.assertEqual(status, 200, body)
        self.assertIn(b'"status"', body)

    def test_proxied_over_tls(self):
        c = self.https()
        payload = os.urandom(5000)
        status, headers, body = g.http_request(self.gw.port, "POST", "/api/echo", body=payload, conn=c,
                                               headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 200, body)
        seen = self.up.requests()[0]
        self.assertEqual(seen["path"], "/api/echo")
        self.assertEqual(seen["body_sha256"], hashlib.sha256(payload).hexdigest())
        self.assertEqual(g.hall(seen["headers"], "x-forwarded-proto"), ["https"],
                         "X-Forwarded-Proto on a TLS listener; upstream head:\n%s" % seen["head"])
        # keep-alive over TLS, and a larger download
        status, headers, body = g.http_request(self.gw.port, "GET", "/api/x", conn=c)
        self.assertEqual(status, 200)

    def test_download_over_tls(self):
        with g.RawConn(self.gw.port, timeout=10, tls_context=self.ctx, server_hostname="localhost") as rc:
            for path in ("/dl/bytes/1000000", "/dl/chunked/300000"):
                rc.send(g.request_bytes("GET", path))
                r = rc.read_response()
                self.assertEqual(r.status, 200, r.summary())
                self.assertEqual(r.body, g.pattern_bytes(int(path.rsplit("/", 1)[1])), path)

    def test_large_body_over_tls(self):
        payload = os.urandom(1500000)
        with g.RawConn(self.gw.port, timeout=15, tls_context=self.ctx, server_hostname="localhost") as rc:
            rc.send(g.request_bytes("POST", "/dl/upload", body=payload))
            r = rc.read_response(timeout=15)
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json()["sha256"], hashlib.sha256(payload).hexdigest())

    def test_keepalive_and_pipelining_over_tls(self):
        # many requests on one TLS connection, then ten sent in one write: answered in order, none lost
        with g.RawConn(self.gw.port, timeout=10, tls_context=self.ctx, server_hostname="localhost") as rc:
            for i in range(200):
                rc.send(g.request_bytes("GET", "/api/seq/%d" % i))
                r = rc.read_response()
                self.assertEqual(r.status, 200, r.summary())
                self.assertEqual(r.json()["path"], "/api/seq/%d" % i)
            rc.send(b"".join(g.request_bytes("GET", "/api/pipe/%d" % i) for i in range(10)))
            for i in range(10):
                r = rc.read_response()
                self.assertEqual(r.status, 200, r.summary())
                self.assertEqual(r.json()["path"], "/api/pipe/%d" % i)

    def test_pipelined_records_past_the_high_water_mark(self):
        # 80 KiB of pipelined requests in five 16 KiB records, all in the socket before the gateway reads
        # (it is stopped meanwhile), the first request a slow one: reading stops at the input's 64 KiB
        # high-water mark in the middle of a record, with the rest of it inside OpenSSL, where the socket
        # does not signal it. Every request must still be answered (the last one waited for its head
        # timeout before, and was answered 408).
        data = g.request_bytes("GET", "/dl/slow?ms=300")
        i = 0
        while 5 * 16384 - len(data) > 300:
            data += g.request_bytes("GET", "/dl/echo/%d" % i)
            i += 1
        last = b"GET /dl/echo/last HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n"
        data += last.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (5 * 16384 - len(data) - len(last)))
        self.assertEqual(len(data), 5 * 16384)
        want = data.count(b"GET ")
        s = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.gw.port), timeout=10),
                                 server_hostname="localhost")
        self.addCleanup(s.close)
        self.gw.proc.signal(signal.SIGSTOP)
        try:
            s.sendall(data)
            time.sleep(0.3)
        finally:
            self.gw.proc.signal(signal.SIGCONT)
        got, statuses, pos = b"", [], 0
        deadline = time.monotonic() + 20 * g.SLOW
        while len(statuses) < want and time.monotonic() < deadline:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                k = s.recv(65536)
            except socket.timeout:
                break
            if not k:
                break
            got += k
            while True:
                e = got.find(b"\r\n\r\n", pos)
                if e < 0:
                    break
                head = got[pos:e].decode("latin-1").split("\r\n")
                cl = next((int(l.split(":", 1)[1]) for l in head[1:] if l.lower().startswith("content-length:")), 0)
                if e + 4 + cl > len(got):
                    break
                statuses.append(head[0].split(" ")[1])
                pos = e + 4 + cl
        self.assertEqual(len(statuses), want, "answers to %d pipelined requests: %d, statuses %s"
                         % (want, len(statuses), sorted(set(statuses))))
        self.assertEqual(set(statuses), {"200"})

    def test_close_notify_is_answered(self):
        # a client that ends the session with close_notify gets the gateway's own before the close
        # (RFC 8446 6.1): unwrap() waits for it and fails on a bare EOF
        s = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.gw.port), timeout=10),
                                 server_hostname="localhost")
        self.addCleanup(s.close)
        s.sendall(g.request_bytes("GET", "/health"))
        self.assertIn(b" 200 ", s.recv(65536))
        s.unwrap().close()

    def test_slow_upstream_reader_over_tls(self):
        # 3 MB uploaded faster than the upstream reads it: the gateway stops reading the client at its
        # high-water mark while decrypted bytes may wait inside OpenSSL, and must go on when it drains
        payload = os.urandom(3000000)
        with g.RawConn(self.gw.port, timeout=30, tls_context=self.ctx, server_hostname="localhost") as rc:
            rc.send(g.request_bytes("POST", "/dl/upload?rate_kib=4096", body=payload))
            r = rc.read_response(timeout=30)
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json()["sha256"], hashlib.sha256(payload).hexdigest())

    def test_client_gone_mid_response_over_tls(self):
        # a client that closes while a large answer is being sent: the gateway carries on serving others
        for _ in range(5):
            s = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.gw.port), timeout=10),
                                     server_hostname="localhost")
            s.sendall(g.request_bytes("GET", "/dl/bytes/5000000"))
            s.recv(1000)
            s.close()
        c = self.https()
        status, _, body = g.http_request(self.gw.port, "GET", "/dl/bytes/100000", conn=c)
        self.assertEqual((status, len(body)), (200, 100000))
        self.assertTrue(self.gw.alive(), self.gw.log())

    def test_plain_http_to_tls_port(self):
        with g.RawConn(self.gw.port, timeout=5) as c:
            c.try_send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            c.closed_within(3)
        with g.RawConn(self.gw.port, timeout=5) as c:
            c.try_send(os.urandom(3000))
            c.closed_within(3)
        with g.RawConn(self.gw.port, timeout=5):
            pass                                # connect and go away mid-handshake
        self.assertTrue(self.gw.alive(), "gateway died after plain bytes on its TLS port:\n%s" % self.gw.log())
        c = self.https()
        status, _, _ = g.http_request(self.gw.port, "GET", "/health", conn=c)
        self.assertEqual(status, 200)
        status, _, _ = g.http_request(self.plain_port, "GET", "/health")
        self.assertEqual(status, 200, "plain listener next to the TLS one")

    def test_tls_handshake_fails_with_wrong_ca(self):
        other = ssl.create_default_context()     # system store: does not trust our self-signed cert
        with self.assertRaises(ssl.SSLError):
            other.wrap_socket(socket.create_connection(("127.0.0.1", self.gw.port), timeout=5),
                              server_hostname="localhost").close()
        self.assertTrue(self.gw.alive())


if __name__ == "__main__":
    g.main()
