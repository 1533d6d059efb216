#!/usr/bin/env python3
# ctest-labels: asan
"""HTTPS upstream targets: TLS to the upstream with SNI, certificate and host-name verification
(`tls_verify`, `tls_ca`), bodies both ways, and keep-alive reuse of TLS connections.

The upstream is tests/integration/upstream.py with --tls-cert/--tls-key. Certificates are self-signed and
made with the openssl command line tool in a temporary directory:
  localhost      CN=localhost, SAN DNS:localhost, IP:127.0.0.1
  other.example  CN=other.example, SAN DNS:other.example     (names that never match the target)
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time
import unittest

import gwtest as g

_CERTS = {}


def self_signed(cn, san):
    """(cert, key) PEM paths of a self-signed certificate for CN=cn with subjectAltName san, made once per
    run."""
    if cn not in _CERTS:
        d = g.new_tmp_dir("upstream-cert-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-sha256", "-days", "2", "-subj", "/CN=%s" % cn, "-addext", "subjectAltName=%s" % san,
                "-keyout", key, "-out", cert]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s" % (" ".join(argv), r.returncode,
                                                         r.stderr.decode("utf-8", "replace")))
        _CERTS[cn] = (cert, key)
    return _CERTS[cn]


def localhost_cert():
    return self_signed("localhost", "DNS:localhost,IP:127.0.0.1")


def other_cert():
    return self_signed("other.example", "DNS:other.example")


class TlsUpstream(g.Upstream):
    """upstream.py serving TLS with the given certificate; the control port stays plain HTTP."""

    def __init__(self, tmpdir, cert, key, name="tls-upstream"):
        self.name = name
        self.dir = tmpdir
        ready = os.path.join(tmpdir, "upstream-%s-%d.ready" % (name, id(self)))
        self.proc = g.Proc([sys.executable, "-B", os.path.join(g.HERE, "upstream.py"), "--ready", ready,
                            "--name", name, "--tls-cert", cert, "--tls-key", key],
                           os.path.join(tmpdir, "upstream-%s.log" % name), name="upstream")
        info = g.wait_until(lambda: g._read_json(ready) if os.path.exists(ready) else None, 10 * g.SLOW,
                            interval=0.01)
        if not info:
            self.proc.stop()
            raise RuntimeError("TLS upstream %s did not start within %ss; log:\n%s"
                               % (name, 10 * g.SLOW, self.proc.log()))
        if not info.get("tls"):
            self.proc.stop()
            raise RuntimeError("upstream.py ignored --tls-cert (ready file %r)" % info)
        self.port = info["port"]
        self.control_port = info["control_port"]
        self.url = "https://%s:%d" % (g.LOCALHOST, self.port)
        self.url_localhost = "https://localhost:%d" % self.port


@unittest.skipUnless(shutil.which("openssl"), "the openssl command line tool is needed")
class UpstreamTlsTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.cert, self.key = localhost_cert()

    # -- helpers -------------------------------------------------------------------------------------
    def start_tls_upstream(self, cert=None, key=None, name="tls-upstream"):
        up = TlsUpstream(self.tmp, cert or self.cert, key or self.key, name)
        self._upstreams.append(up)  # stopped by PID in the test's cleanup
        return up

    def gateway_for(self, target, **service):
        """Gateway with one service "secure" (the given target plus service keys) behind /api."""
        svc = dict({"name": "secure", "targets": [target]}, **service)
        return self.start_gateway(lambda p: g.base_config(p, [svc], [{"prefix": "/api", "service": "secure"}]))

    def get_ok(self, gw, target="/api/echo"):
        r = g.simple_request(gw.port, "GET", target)
        self.assertEqual(r.status, 200, "GET %s through the gateway:\n%s\n--- gateway log ---\n%s"
                         % (target, r.summary(), gw.log(4000)))
        return r

    def assertBadGateway(self, gw, up, log_words):
        """GET and POST are answered 502 JSON; the upstream completed no TLS handshake and saw no request;
        the gateway log says why (each of log_words, case-insensitive)."""
        r = g.simple_request(gw.port, "GET", "/api/echo")
        self.assertErrorJson(r, 502, "Bad Gateway")
        r = g.simple_request(gw.port, "POST", "/api/echo", body=b"x" * 3000)
        self.assertErrorJson(r, 502, "Bad Gateway")
        # The gateway did reach the upstream (so the 502 is the TLS check, not a refused connection) ...
        st = g.wait_until(lambda: (lambda s: s if s["accepted"] >= 2 and all(c["closed"] for c in s["conns"])
                                   else None)(up.state()), 5 * g.SLOW)
        st = st or up.state()
        self.assertGreaterEqual(st["accepted"], 2, "the gateway should have connected to the upstream: %r" % st)
        # ... and sent nothing over it: no request, no decrypted byte, no completed handshake.
        self.assertEqual(st["requests"], [], "the upstream saw HTTP request(s) over an unverified connection")
        self.assertEqual(sum(c["bytes_in"] for c in st["conns"]), 0, st["conns"])
        for c in st["conns"]:
            self.assertTrue((c["error"] or "").startswith("TLS handshake"),
                            "upstream connection should have failed its handshake: %r" % c)
        log = gw.log().lower()
        for w in log_words:
            self.assertIn(w.lower(), log, "gateway log should mention %r:\n%s" % (w, gw.log(4000)))
        self.assertTrue(gw.alive())

    # -- (a) https://127.0.0.1 with tls_ca ----------------------------------------------------------------
    def test_ip_target_with_ca_get_post_keepalive(self):
        up = self.start_tls_upstream()
        gw = self.gateway_for(up.url, tls_ca=self.cert)

        r = self.get_ok(gw, "/api/echo?x=1")
        doc = r.json()
        self.assertEqual(doc["server"], "tls-upstream")
        self.assertEqual(doc["target"], "/api/echo?x=1")
        seen = up.requests()[0]
        self.assertEqual(g.hall(seen["headers"], "host"), ["127.0.0.1:%d" % up.port],
                         "Host sent upstream; head:\n%s" % seen["head"])
        conn = up.state()["conns"][0]
        self.assertTrue(conn["tls"], conn)
        self.assertIn(conn["tls_version"], ("TLSv1.2", "TLSv1.3"), conn)
        self.assertIsNone(conn["sni"], "no SNI for an IP-literal target (RFC 6066 3): %r" % conn)

        # POST: a small body (buffered, sent with Content-Length) and a large one (streamed)
        for size in (5000, 700000):
            payload = os.urandom(size)
            r = g.simple_request(gw.port, "POST", "/api/upload", [("Content-Type", "application/octet-stream")],
                                 payload, timeout=20)
            self.assertEqual(r.status, 200, "POST %d bytes:\n%s\n%s" % (size, r.summary(), gw.log(4000)))
            sha = hashlib.sha256(payload).hexdigest()
            self.assertEqual(r.json()["body_sha256"], sha, "POST of %d bytes: body changed on the way" % size)
            self.assertEqual(r.json()["body_length"], size)
            self.assertEqual(up.requests()[-1]["body_sha256"], sha)

        # keep-alive: many requests on several client connections, few upstream TLS connections
        n_req = len(up.requests())
        for _ in range(5):
            with g.RawConn(gw.port, timeout=10) as c:
                for i in range(12):
                    body = b"k" * (i * 100)
                    c.send(g.request_bytes("POST" if i % 2 else "GET", "/api/echo?i=%d" % i, body=body))
                    r = c.read_response("POST" if i % 2 else "GET")
                    self.assertEqual(r.status, 200, r.summary())
                    self.assertEqual(r.json()["body_sha256"], hashlib.sha256(body).hexdigest())
                    n_req += 1
        st = up.state()
        self.assertEqual(len(st["requests"]), n_req)
        self.assertLessEqual(st["accepted"], 2, "%d requests over %d upstream TLS connections: the pooled "
                             "connections are not reused; connections %r" % (n_req, st["accepted"], st["conns"]))
        self.assertTrue(all(c["tls"] and not c["error"] for c in st["conns"]), st["conns"])

    def test_ip_target_downloads(self):
        up = self.start_tls_upstream()
        svc = {"name": "secure", "targets": [up.url], "tls_ca": self.cert}
        gw = self.start_gateway(lambda p: g.base_config(p, [svc], [{"prefix": "/dl", "service": "secure",
                                                                   "strip_prefix": True}]))
        with g.RawConn(gw.port, timeout=20) as c:
            for path, n in (("/dl/bytes/2000000", 2000000), ("/dl/chunked/300000", 300000), ("/dl/bytes/0", 0)):
                c.send(g.request_bytes("GET", path))
                r = c.read_response(timeout=20)
                self.assertEqual(r.status, 200, "%s:\n%s" % (path, r.summary()))
                self.assertEqual(len(r.body), n, path)
                self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(g.pattern_bytes(n)).hexdigest(),
                                 path)
        self.assertEqual(up.accepted(), 1, "three requests in a row should share one upstream TLS connection")

    def test_pooled_tls_connection_closed_by_upstream(self):
        # The upstream closes its side 100 ms after answering (no close_notify, like a server timing out
        # idle connections); the next request must not fail on the dead pooled connection.
        up = self.start_tls_upstream()
        gw = self.gateway_for(up.url, tls_ca=self.cert)
        self.get_ok(gw, "/api/echo?close_after_ms=100")
        closed = g.wait_until(lambda: all(c["closed"] for c in up.state()["conns"]), 5)
        self.assertTrue(closed, up.state()["conns"])
        time.sleep(0.2)
        self.get_ok(gw, "/api/echo")
        r = g.simple_request(gw.port, "POST", "/api/echo", body=b"after the close")
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(up.accepted(), 2)

    # -- (b) https://localhost with tls_ca: SNI and host-name verification --------------------------------
    def test_localhost_target_with_ca_sni(self):
        up = self.start_tls_upstream()
        gw = self.gateway_for(up.url_localhost, tls_ca=self.cert)
        for i in range(3):
            r = self.get_ok(gw, "/api/echo?n=%d" % i)
        payload = os.urandom(20000)
        r = g.simple_request(gw.port, "POST", "/api/echo", body=payload)
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(payload).hexdigest())
        st = up.state()
        self.assertEqual(len(st["requests"]), 4)
        self.assertEqual(st["accepted"], 1, st["conns"])
        self.assertEqual(st["conns"][0]["sni"], "localhost", "SNI sent by the gateway: %r" % st["conns"][0])
        self.assertEqual(g.hall(st["requests"][0]["headers"], "host"), ["localhost:%d" % up.port],
                         st["requests"][0]["head"])

    # -- (c) default verification against the system store: refused ---------------------------------------
    def test_default_verify_refuses_self_signed(self):
        up = self.start_tls_upstream()
        gw = self.gateway_for(up.url)           # tls_verify defaults to true, no tls_ca: system store
        self.assertBadGateway(gw, up, ["certificate verify failed"])

    def test_default_verify_refuses_self_signed_localhost(self):
        up = self.start_tls_upstream()
        gw = self.gateway_for(up.url_localhost, tls_verify=True)
        self.assertBadGateway(gw, up, ["certificate verify failed"])

    # -- (d) tls_verify: false -------------------------------------------------------------------------
    def test_verify_off_accepts_self_signed(self):
        up = self.start_tls_upstream()
        gw = self.gateway_for(up.url, tls_verify=False)
        self.get_ok(gw)
        payload = os.urandom(100000)
        r = g.simple_request(gw.port, "POST", "/api/echo", body=payload)
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(payload).hexdigest())
        self.assertEqual(up.accepted(), 1)

    def test_verify_off_accepts_mismatched_name(self):
        cert, key = other_cert()
        up = self.start_tls_upstream(cert, key, name="other")
        gw = self.gateway_for(up.url_localhost, tls_verify=False)
        self.get_ok(gw)
        self.assertEqual(up.state()["conns"][0]["sni"], "localhost")

    # -- (e) a certificate for other names: refused even though its CA is trusted --------------------------
    def test_name_mismatch_ip_target(self):
        cert, key = other_cert()
        up = self.start_tls_upstream(cert, key, name="other")
        gw = self.gateway_for(up.url, tls_ca=cert)
        self.assertBadGateway(gw, up, ["certificate verify failed"])

    def test_name_mismatch_localhost_target(self):
        cert, key = other_cert()
        up = self.start_tls_upstream(cert, key, name="other")
        gw = self.gateway_for(up.url_localhost, tls_ca=cert)
        self.assertBadGateway(gw, up, ["certificate verify failed"])

    # Health checks verify https targets exactly like proxied requests do: a certificate that does not
    # name the target makes it unhealthy (and it never receives "GET /health"); no IP literal as SNI.
    def test_health_check_verifies_names(self):
        cert, key = other_cert()
        up = self.start_tls_upstream(cert, key, name="other")
        gw = self.gateway_for(up.url, tls_ca=cert,
                              health_check={"path": "/health", "interval": "200ms", "timeout": "150ms",
                                            "healthy_threshold": 1, "unhealthy_threshold": 1})
        g.wait_until(lambda: up.state()["accepted"] >= 2, 5 * g.SLOW)
        status, _, body = g.http_request(gw.port, "GET", "/services/health")
        self.assertErrorJson(g.simple_request(gw.port, "GET", "/api/echo"), 502, "Bad Gateway")
        self.assertEqual(up.requests(), [], "health checks sent HTTP to a certificate for other names")
        self.assertEqual(status, 503, "the target fails verification but is reported healthy: %s" % body)

    def test_wrong_ca(self):
        # The server's certificate names match, but tls_ca holds a different certificate.
        other, _ = other_cert()
        up = self.start_tls_upstream()
        gw = self.gateway_for(up.url, tls_ca=other)
        self.assertBadGateway(gw, up, ["certificate verify failed"])


if __name__ == "__main__":
    g.main()
