#!/usr/bin/env python3
# ctest-labels: asan
"""What hostile clients and broken upstreams did to the proxy path: request bodies dripped or streamed too
slowly (408, upstream connection closed), uploads that take longer than the upstream response timeout
(the deadline counts from the end of the body), an upstream that stops reading a body (its failure, 504,
not the client's 408), a POST replayed on a fresh connection after a pooled one closed having read it, a
broken chunked response before anything reached the client (502, also through filters and on TLS), and
a client that pauses reading a download (the upstream's idle time does not count meanwhile; a client that
never reads is dropped after send_idle). Those cases failed on the code before the fix; the others (an
early 413 during an upload, the replay of a PUT, a chunk broken after the head went out) guard what has
to keep working."""

import hashlib
import shutil
import socket
import ssl
import threading
import time
import unittest

import gwfilters as gf
import gwtest as g
import test_tls


def pattern_sha256(n):
    h = hashlib.sha256()
    for piece in g.pattern_iter(n):
        h.update(piece)
    return h.hexdigest()


def kernel_send_buffer_max():
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


class Digest:
    def __init__(self):
        self.n = 0
        self.h = hashlib.sha256()

    def __call__(self, data):
        self.n += len(data)
        self.h.update(data)


class Scripted:
    """An upstream on 127.0.0.1 that runs script(self, index, sock) for its index-th connection (0-based),
    each in its own thread. Requests read with read_request() are recorded in self.seen."""

    LIMIT_S = 60.0  # any read gives up after this

    def __init__(self, script):
        self.script = script
        self.seen = []          # (connection index, method, target, body)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.socks = []
        self.threads = []
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind((g.LOCALHOST, 0))
        self.ls.listen(16)
        self.ls.settimeout(0.1)
        self.port = self.ls.getsockname()[1]
        self.url = "http://%s:%d" % (g.LOCALHOST, self.port)
        self.accepted = 0
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                index = self.accepted
                self.accepted += 1
                self.socks.append(s)
            t = threading.Thread(target=self._run, args=(index, s), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, index, s):
        s.settimeout(0.2)
        try:
            self.script(self, index, s)
        except (OSError, ValueError):
            pass
        finally:
            s.close()

    def recv(self, s):
        """One recv that honours the stop flag; b"" on EOF or reset."""
        end = time.monotonic() + self.LIMIT_S
        while not self.stopping.is_set() and time.monotonic() < end:
            try:
                return s.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return b""
        raise ValueError("stopped")

    def read_request(self, index, s, buf):
        """Reads one request (Content-Length or chunked body) from s; buf keeps leftovers. Records it and
        returns (method, target, body), or None on EOF."""
        while b"\r\n\r\n" not in buf:
            data = self.recv(s)
            if not data:
                return None
            buf += data
        i = buf.index(b"\r\n\r\n")
        head = bytes(buf[:i]).decode("latin-1")
        del buf[: i + 4]
        lines = head.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        fields = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip() for ln in lines[1:]}
        body = bytearray()

        def need(n):
            while len(buf) < n:
                data = self.recv(s)
                if not data:
                    raise ValueError("EOF inside a body")
                buf.extend(data)

        if "chunked" in fields.get("transfer-encoding", ""):
            while True:
                while b"\r\n" not in buf:
                    need(len(buf) + 1)
                j = buf.index(b"\r\n")
                size = int(bytes(buf[:j]).split(b";")[0], 16)
                del buf[: j + 2]
                need(size + 2)
                body += buf[:size]
                del buf[: size + 2]
                if size == 0:
                    break
        else:
            n = int(fields.get("content-length", "0"))
            need(n)
            body += buf[:n]
            del buf[:n]
        with self.lock:
            self.seen.append((index, method, target, bytes(body)))
        return method, target, bytes(body)

    def wait_eof(self, s):
        """Reads until the peer closes (the gateway gave up on this connection)."""
        while self.recv(s):
            pass

    def stop(self):
        self.stopping.set()
        self.ls.close()
        self.acceptor.join(2)
        for t in self.threads:
            t.join(2)


OK_KEEPALIVE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class HostileProxyTest(gf.FilterTestCase):
    def scripted(self, script):
        up = Scripted(script)
        self.addCleanup(up.stop)
        return up

    def gateway(self, target_url, **timeouts):
        t = {"shutdown": "3s"}
        t.update(timeouts)
        return self.start_gateway(lambda p: g.base_config(p, [{"name": "up", "targets": [target_url]}],
                                                          [{"prefix": "/", "service": "up"}], timeouts=t))

    def drip(self, c, data, every, stop):
        """Sends data one byte each `every` seconds (the attack itself, not a wait for something)."""
        for i in range(len(data)):
            if stop.wait(every) or not c.try_send(data[i:i + 1]):
                return

    # ----------------------------------------------------------------------------------------------
    # item 3: slow request bodies

    def test_dripped_body_answered_408_within_45s_by_default(self):
        up = self.start_upstream()
        gw = self.gateway(up.url)  # default timeouts: body_idle 30 s, request_body 30 s
        c = g.RawConn(gw.port, timeout=50)
        self.addCleanup(c.close)
        stop = threading.Event()
        self.addCleanup(stop.set)
        t0 = time.monotonic()
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        th = threading.Thread(target=self.drip, args=(c, b"p" * 1000, 2.0, stop), daemon=True)
        th.start()
        try:
            r = c.read_response(timeout=45)
        except g.ConnClosed as e:
            self.fail("connection closed without an answer after %.1fs (%r)" % (time.monotonic() - t0, e.partial))
        except socket.timeout:
            self.fail("no answer 45 s into a body dripped at one byte per 2 s")
        took = time.monotonic() - t0
        self.assertErrorJson(r, 408, "Request Timeout")
        self.assertIn("close", r.tokens("connection"), r.summary())
        self.assertTrue(c.closed_within(5), "connection still open after the 408")
        stop.set()
        self.assertGreater(took, 25, "408 after %.1fs: before the 30 s deadline" % took)
        self.assertUpstreamSawNothing(up, settle=0)

    def test_request_body_deadline_configurable(self):
        up = self.start_upstream()
        gw = self.gateway(up.url, request_body="1s", body_idle="10s")
        c = g.RawConn(gw.port, timeout=10)
        self.addCleanup(c.close)
        stop = threading.Event()
        self.addCleanup(stop.set)
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        th = threading.Thread(target=self.drip, args=(c, b"1\r\na\r\n" * 100, 0.05, stop), daemon=True)
        th.start()
        r = c.read_response(timeout=8 * g.SLOW)
        self.assertErrorJson(r, 408, "Request Timeout")
        self.assertTrue(c.closed_within(5))
        self.assertUpstreamSawNothing(up, settle=0)

    def test_chunked_body_above_min_rate_outlasts_the_buffered_deadline(self):
        # A chunked body is buffered while it is small, but its size is unknown: past request_body it is
        # held to the minimum rate instead, like the same body with a Content-Length (the old code cut it
        # at the buffered deadline, so a chunked upload needed twice the documented rate).
        up = self.start_upstream()
        gw = self.gateway(up.url, request_body="1s", body_min_rate="1KiB", body_rate_window="1s",
                          body_idle="10s")
        c = g.RawConn(gw.port, timeout=20)
        self.addCleanup(c.close)
        data = g.pattern_bytes(12000)
        t0 = time.monotonic()
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for k, off in enumerate(range(0, len(data), 400)):   # 4 KB/s for 3 s
            wait = t0 + k * 0.1 - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the pace of the upload is what is tested
            piece = data[off:off + 400]
            self.assertTrue(c.try_send(b"%x\r\n" % len(piece) + piece + b"\r\n"),
                            "the gateway closed the upload after %.1fs: %r" % (time.monotonic() - t0, bytes(c.buf[:200])))
        c.send(b"0\r\n\r\n")
        r = c.read_response(timeout=10 * g.SLOW)
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json()["body_length"], len(data))
        self.assertGreater(time.monotonic() - t0, 2.0, "the upload should outlast request_body")

    def test_streamed_body_below_min_rate_gets_408_not_504(self):
        up = self.start_upstream()
        # upstream_response 1s: the old code answered 504 from the upstream side first
        gw = self.gateway(up.url, body_min_rate="1KiB", body_rate_window="1s", body_idle="20s",
                          upstream_response="1s")
        c = g.RawConn(gw.port, timeout=20)
        self.addCleanup(c.close)
        stop = threading.Event()
        self.addCleanup(stop.set)
        t0 = time.monotonic()
        # 1 MB announced: streamed. 2 KiB at once (the first window passes), then ~500 bytes/s.
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"s" * 2048)
        th = threading.Thread(target=self.drip_pieces, args=(c, 100, 0.2, stop), daemon=True)
        th.start()
        try:
            r = c.read_response(timeout=15 * g.SLOW)
        except g.ConnClosed as e:
            self.fail("connection closed without an answer (%r)" % e.partial)
        took = time.monotonic() - t0
        self.assertErrorJson(r, 408, "Request Timeout")
        self.assertTrue(c.closed_within(5))
        stop.set()
        self.assertGreater(took, 1.0, "408 after %.2fs, inside the first rate window" % took)
        reqs = up.wait_requests(1)
        self.assertEqual(len(reqs), 1, "the streamed request should have reached the upstream")
        st = g.wait_until(lambda: (lambda s: s if s["conns"] and all(k["closed"] for k in s["conns"]) else None)(
            up.state()), 5 * g.SLOW)
        self.assertIsNotNone(st, "the upstream connection of the too-slow body was not closed: %r" % up.state()["conns"])

    def drip_pieces(self, c, size, every, stop):
        for _ in range(200):
            if stop.wait(every) or not c.try_send(b"s" * size):
                return

    # ----------------------------------------------------------------------------------------------
    # item 8: the response deadline counts from the end of the request body

    def paced_upload(self, chunked):
        up = self.start_upstream()
        gw = self.gateway(up.url, upstream_response="2s")
        size, piece, every = 1000 * 1000, 20 * 1000, 0.1   # 200 KB/s: about 5 s
        data = g.pattern_bytes(size)
        frame = (lambda b: b"%x\r\n" % len(b) + b + b"\r\n") if chunked else (lambda b: b)
        hdr = ("Transfer-Encoding: chunked" if chunked else "Content-Length: %d" % size)
        c = g.RawConn(gw.port, timeout=30)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        c.send(("POST /echo HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % hdr).encode())
        for k, off in enumerate(range(0, size, piece)):
            wait = t0 + k * every - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the pace of the upload is what is tested
            self.assertTrue(c.try_send(frame(data[off: off + piece])),
                            "the gateway closed the upload after %.1fs, %d bytes; got %r"
                            % (time.monotonic() - t0, off, bytes(c.buf[:300])))
        if chunked:
            c.send(b"0\r\n\r\n")
        took = time.monotonic() - t0
        r = c.read_response(timeout=10 * g.SLOW)
        self.assertEqual(r.status, 200, "after a %.1fs upload: %s" % (took, r.summary()))
        doc = r.json()
        self.assertEqual(doc["body_length"], size)
        self.assertEqual(doc["body_sha256"], hashlib.sha256(data).hexdigest())
        self.assertGreater(took, 4.0, "the upload should outlast upstream_response")

    def test_slow_upload_content_length_gets_upstream_200(self):
        self.paced_upload(chunked=False)

    def test_slow_upload_chunked_gets_upstream_200(self):
        self.paced_upload(chunked=True)

    def test_upstream_answering_before_the_body_ends_still_works(self):
        def script(up, index, s):
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                data = up.recv(s)
                if not data:
                    return
                buf += data
            with up.lock:
                up.seen.append((index, "early", "", b""))
            s.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
            up.wait_eof(s)

        up = self.scripted(script)
        gw = self.gateway(up.url, upstream_response="1s")
        c = g.RawConn(gw.port, timeout=10)
        self.addCleanup(c.close)
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + b"b" * 100000)
        r = c.read_response(timeout=8 * g.SLOW)
        self.assertEqual((r.status, r.body), (413, b"big!"), r.summary())
        self.assertIn("close", r.tokens("connection"), r.summary())

    def test_upstream_not_reading_the_body_is_its_failure_not_the_clients(self):
        # The upstream takes the head and then reads nothing: the client is held back (not read) and
        # must not get a 408 for it; the upstream gets upstream_idle to take more, then 504.
        def script(up, index, s):
            with up.lock:
                up.seen.append((index, "accepted", "", b""))
            up.stopping.wait(60)

        up = self.scripted(script)
        gw = self.gateway(up.url, body_idle="1s", upstream_idle="2s", upstream_response="30s")
        c = g.RawConn(gw.port, timeout=30)
        self.addCleanup(c.close)
        size = 64 * 1024 * 1024
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        stop = threading.Event()
        self.addCleanup(stop.set)

        def upload():
            piece = b"u" * 65536
            try:
                for _ in range(size // len(piece)):
                    if stop.is_set() or not c.try_send(piece):
                        return
            except OSError:
                return  # the gateway gave up on the connection

        th = threading.Thread(target=upload, daemon=True)
        th.start()
        try:
            r = c.read_response(timeout=20 * g.SLOW)
        except g.ConnClosed as e:
            self.fail("connection closed without an answer (%r)" % e.partial)
        stop.set()
        self.assertErrorJson(r, 504, "Gateway Timeout")
        self.assertTrue(c.closed_within(5 * g.SLOW))
        th.join(10)

    # ----------------------------------------------------------------------------------------------
    # item 9: no replay of a request that is not safe to repeat

    def replay_case(self, method):
        def script(up, index, s):
            buf = bytearray()
            if index == 0:  # answers the first request, reads the second and closes without a word
                if up.read_request(index, s, buf) is None:
                    return
                s.sendall(OK_KEEPALIVE)
                up.read_request(index, s, buf)
                return
            while up.read_request(index, s, buf) is not None:
                s.sendall(OK_KEEPALIVE)

        up = self.scripted(script)
        gw = self.gateway(up.url)
        with g.RawConn(gw.port, timeout=10) as c:
            c.send(g.request_bytes("GET", "/first"))
            self.assertEqual(c.read_response().status, 200)
            c.send(g.request_bytes(method, "/pay", body=b"payment=1"))
            r = c.read_response(timeout=8 * g.SLOW)
        sent = [q for q in up.seen if q[2] == "/pay"]
        return r, sent

    def test_post_on_stale_pooled_connection_reaches_upstream_once(self):
        r, sent = self.replay_case("POST")
        self.assertEqual(len(sent), 1, "the upstream saw the POST %d times: %r" % (len(sent), sent))
        self.assertEqual(sent[0][3], b"payment=1")
        self.assertErrorJson(r, 502, "Bad Gateway")

    def test_idempotent_request_on_stale_pooled_connection_is_replayed(self):
        r, sent = self.replay_case("PUT")
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual([q[0] for q in sent], [0, 1], "PUT: once on the stale connection, once on a new one")

    # ----------------------------------------------------------------------------------------------
    # item 5: a broken chunked response before anything reached the client

    def test_broken_chunk_size_before_anything_sent_is_502(self):
        def script(up, index, s):
            buf = bytearray()
            if up.read_request(index, s, buf) is None:
                return
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\nzz\r\n")
            up.wait_eof(s)
            with up.lock:
                up.seen.append((index, "eof", "", b""))

        up = self.scripted(script)
        gw = self.gateway(up.url)
        with g.RawConn(gw.port, timeout=10) as c:
            c.send(g.request_bytes("GET", "/broken"))
            try:
                r = c.read_response(timeout=5 * g.SLOW)
            except g.ConnClosed as e:
                self.fail("the client got no answer, only a closed connection (%r)" % e.partial)
            self.assertErrorJson(r, 502, "Bad Gateway")
            self.assertIsNone(r.header("x-up"), "our 502 carries the broken response's fields: %s" % r.summary())
            self.assertIn("close", r.tokens("connection"), r.summary())
            self.assertTrue(c.closed_within(5 * g.SLOW))
        self.assertEqual(g.simple_request(gw.port, "GET", "/health").status, 200)
        self.assertTrue(g.wait_until(lambda: any(q[1] == "eof" for q in up.seen), 5 * g.SLOW),
                        "the gateway kept the broken upstream connection open")

    @unittest.skipUnless(shutil.which("openssl"), "the openssl command line tool is needed")
    def test_broken_chunk_size_before_anything_sent_is_502_over_tls(self):
        # TLS streams are bufferevent_openssl: its writes also wait for the loop, so the head queued for
        # the client can still be taken back
        def script(up, index, s):
            buf = bytearray()
            if up.read_request(index, s, buf) is None:
                return
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            up.wait_eof(s)

        up = self.scripted(script)
        cert, key = test_tls.make_cert()

        def cfg(port):
            c = g.base_config(port, [{"name": "up", "targets": [up.url]}], [{"prefix": "/", "service": "up"}])
            c["listeners"] = [{"address": "127.0.0.1", "port": port, "tls": {"cert": cert, "key": key}}]
            return c

        gw = self.start_gateway(cfg, tls=True)
        ctx = ssl.create_default_context(cafile=cert)
        with g.RawConn(gw.port, timeout=10, tls_context=ctx, server_hostname="localhost") as c:
            c.send(g.request_bytes("GET", "/broken"))
            try:
                r = c.read_response(timeout=5 * g.SLOW)
            except g.ConnClosed as e:
                self.fail("the client got no answer, only a closed connection (%r)" % e.partial)
            self.assertErrorJson(r, 502, "Bad Gateway")

    def test_broken_chunk_is_a_failed_attempt_for_filters(self):
        # upstream_response runs for the head, then again for the failed attempt; our 502 carries what
        # that run set, once, and nothing of the broken head; the response phase runs for the 502
        def script(up, index, s):
            buf = bytearray()
            if up.read_request(index, s, buf) is None:
                return
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\nzz\r\n")
            up.wait_eof(s)

        up = self.scripted(script)
        gw = self.start_filters([gf.waiter("upstream_response", "1ms"), gf.tagger("t")], up=up)
        r = g.simple_request(gw.port, "GET", "/broken", timeout=5 * g.SLOW)
        self.assertErrorJson(r, 502, "Bad Gateway")
        self.assertIsNone(r.header("x-up"), r.summary())
        self.assertEqual(r.header_all("x-waited"), ["upstream_response"], r.summary())
        self.assertEqual(r.header_all("x-resp-tags"), ["t"], r.summary())

    def test_broken_chunk_after_the_head_was_sent_cuts_the_connection(self):
        head_seen = threading.Event()

        def script(up, index, s):
            buf = bytearray()
            if up.read_request(index, s, buf) is None:
                return
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            if head_seen.wait(10):
                s.sendall(b"zz\r\n")
            up.wait_eof(s)

        up = self.scripted(script)
        gw = self.gateway(up.url)
        with g.RawConn(gw.port, timeout=10) as c:
            c.send(g.request_bytes("GET", "/broken"))
            head = g.parse_response_head(c.read_until(b"\r\n\r\n", timeout=5 * g.SLOW))
            self.assertEqual(head.status, 200)
            c.read_until(b"hello\r\n", timeout=5 * g.SLOW)
            head_seen.set()
            self.assertTrue(c.closed_within(5 * g.SLOW), "connection not cut after the broken chunk")
            self.assertNotIn(b"0\r\n\r\n", bytes(c.buf), "the cut body was ended as if complete")

    # ----------------------------------------------------------------------------------------------
    # item 12: the upstream's idle time does not run while we hold it back for a slow client

    def big_download_size(self):
        return min(2 * kernel_send_buffer_max() + 8 * 1024 * 1024, 40 * 1024 * 1024)

    def test_client_pausing_mid_download_gets_the_whole_body(self):
        up = self.start_upstream()
        gw = self.gateway(up.url, upstream_idle="1s")
        size = self.big_download_size()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        s.settimeout(5)
        s.connect((g.LOCALHOST, gw.port))
        c = g.RawConn(gw.port, timeout=30, connect=False)
        c.sock = s
        self.addCleanup(c.close)
        c.send(g.request_bytes("GET", "/bytes/%d" % size))
        d = Digest()
        paused = [False]

        def sink(data):
            d(data)
            if not paused[0] and d.n >= 1024 * 1024:
                paused[0] = True
                time.sleep(3)  # the client stops reading: this is the case under test

        try:
            r = c.read_response(timeout=60 * g.SLOW, body_sink=sink)
        except g.ConnClosed as e:
            self.fail("download cut after %d of %d bytes: %s" % (d.n, size, e))
        self.assertEqual(r.status, 200)
        self.assertTrue(paused[0])
        self.assertEqual(d.n, size)
        self.assertEqual(d.h.hexdigest(), pattern_sha256(size), "body differs from the upstream's")

    def test_client_that_never_reads_is_dropped_after_send_idle(self):
        up = self.start_upstream()
        gw = self.gateway(up.url, send_idle="1s", upstream_idle="30s")
        size = self.big_download_size()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        s.settimeout(5)
        s.connect((g.LOCALHOST, gw.port))
        c = g.RawConn(gw.port, timeout=30, connect=False)
        c.sock = s
        self.addCleanup(c.close)
        c.send(g.request_bytes("GET", "/bytes/%d" % size))
        time.sleep(4 * g.SLOW)  # reads nothing: the case under test
        d = Digest()
        try:
            c.read_response(timeout=30 * g.SLOW, body_sink=d)
            self.fail("the whole body arrived: the gateway waited for the client without limit")
        except g.ConnClosed:
            pass
        self.assertLess(d.n, size)


if __name__ == "__main__":
    g.main()
