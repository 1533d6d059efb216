#!/usr/bin/env python3
"""100 MB through the gateway in both directions with bounded memory (back-pressure).
Heavy: not in the sanitizer run."""

import hashlib
import json
import time
import unittest

import gwtest as g

SIZE = 100 * 1024 * 1024
HWM_LIMIT_KIB = 64 * 1024
RATE = 80 * 1024 * 1024     # bytes/s: the slow side runs at about this pace, so the fast side must wait


def expected_sha(n):
    h = hashlib.sha256()
    for piece in g.pattern_iter(n):
        h.update(piece)
    return h.hexdigest()


@unittest.skipIf(g.SANITIZE, "memory bounds are measured on the normal build only")
class LargeTransferTest(g.GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        cls.want_sha = expected_sha(SIZE)

    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.gw = self.start_gateway(lambda p: g.base_config(
            p, [{"name": "up", "targets": [self.up.url]}], [{"prefix": "/", "service": "up"}],
            limits={"request_body": "1g"}, timeouts={"upstream_idle": "20s", "body_idle": "20s"}))

    def check_memory(self, what):
        hwm = self.gw.hwm_kib()
        self.assertIsNotNone(hwm, "cannot read /proc/%d/status" % self.gw.pid)
        self.assertLess(hwm, HWM_LIMIT_KIB, "%s: gateway VmHWM %d KiB >= %d KiB (VmRSS now %s KiB)"
                        % (what, hwm, HWM_LIMIT_KIB, self.gw.rss_kib()))
        return hwm

    def test_download_100mb(self):
        h = hashlib.sha256()
        n = [0]
        t0 = time.monotonic()

        def sink(data):
            h.update(data)
            n[0] += len(data)
            # pace the reader: the gateway has to hold the upstream back
            ahead = t0 + n[0] / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

        with g.RawConn(self.gw.port, timeout=30) as c:
            c.sock.setsockopt(g.socket.SOL_SOCKET, g.socket.SO_RCVBUF, 65536)
            c.send(g.request_bytes("GET", "/bytes/%d" % SIZE))
            # read in 64 KiB pieces
            head = c.read_until(b"\r\n\r\n", timeout=10)
            r = g.parse_response_head(head)
            self.assertEqual(r.status, 200, r.summary())
            cl = r.header("content-length")
            self.assertEqual(cl, str(SIZE), "Content-Length from the upstream should be kept")
            left = SIZE
            if c.buf:
                take = bytes(c.buf[:left])
                del c.buf[:len(take)]
                sink(take)
                left -= len(take)
            deadline = time.monotonic() + 60
            while left > 0:
                self.assertLess(time.monotonic(), deadline, "download too slow: %d bytes left" % left)
                c.sock.settimeout(20)
                data = c.sock.recv(min(65536, left))
                self.assertTrue(data, "connection closed with %d bytes left" % left)
                sink(data)
                left -= len(data)
        took = time.monotonic() - t0
        self.assertEqual(n[0], SIZE)
        self.assertEqual(h.hexdigest(), self.want_sha, "downloaded bytes differ from what the upstream sent")
        hwm = self.check_memory("download")
        print("\n  download: %.1fs, gateway VmHWM %d KiB" % (took, hwm))

    def upload(self, chunked):
        t0 = time.monotonic()
        with g.RawConn(self.gw.port, timeout=30) as c:
            if chunked:
                c.send(b"POST /upload?rate_kib=%d HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                       % (RATE // 1024))
            else:
                c.send(b"POST /upload?rate_kib=%d HTTP/1.1\r\nHost: gw.test\r\nContent-Length: %d\r\n\r\n"
                       % (RATE // 1024, SIZE))
            for piece in g.pattern_iter(SIZE):
                if chunked:
                    c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    c.send(piece)
            if chunked:
                c.send(b"0\r\n\r\n")
            r = c.read_response(timeout=30)
        took = time.monotonic() - t0
        self.assertEqual(r.status, 200, r.summary())
        doc = json.loads(r.body)
        self.assertEqual(doc["length"], SIZE, "upstream received %d bytes" % doc["length"])
        self.assertEqual(doc["sha256"], self.want_sha, "upstream received different bytes")
        seen = self.up.requests()[0]
        framing = (g.hall(seen["headers"], "content-length"), g.hall(seen["headers"], "transfer-encoding"))
        self.assertTrue(bool(framing[0]) != bool(framing[1]), "upstream framing CL/TE: %r" % (framing,))
        hwm = self.check_memory("upload (%s)" % ("chunked" if chunked else "content-length"))
        print("\n  upload %s: %.1fs, gateway VmHWM %d KiB"
              % ("chunked" if chunked else "content-length", took, hwm))

    def test_upload_100mb_content_length(self):
        self.upload(chunked=False)

    def test_upload_100mb_chunked(self):
        self.upload(chunked=True)


if __name__ == "__main__":
    g.main()
