#!/usr/bin/env python3
# ctest-labels: asan
"""Regression cases for bugs fixed in core/: response-phase waits on pipelined connections, clients that
pipeline without reading, per-request memory over several arena chunks (seen by LeakSanitizer, so in the
sanitizer build), reloads that follow each other while the worker is busy, WebSocket half-close, and a
pooled upstream connection that closes while the upstream_request phase waits. Each of them failed on the
behaviour before the fix. The own-204 case is skipped: no fixture filter can answer 204."""

import hashlib
import os
import re
import select
import signal
import socket
import threading
import time
import urllib.parse

import gwfilters as gf
import gwtest as g
from gwfilters import tagger, waiter


def pattern_sha256(n):
    h = hashlib.sha256()
    for piece in g.pattern_iter(n):
        h.update(piece)
    return h.hexdigest()


class Digest:
    """A body_sink for RawConn.read_response: length and sha256 without keeping the body."""

    def __init__(self):
        self.n = 0
        self.h = hashlib.sha256()

    def __call__(self, data):
        self.n += len(data)
        self.h.update(data)

    def hexdigest(self):
        return self.h.hexdigest()


class PacedConn(g.RawConn):
    """A RawConn whose reads pause a moment before each recv: the gateway's output buffer drains slowly,
    so it still holds bytes (and keeps reporting progress) for a while after the response was queued."""

    PAUSE = 0.001

    def _fill(self, deadline):
        time.sleep(self.PAUSE)
        return super()._fill(deadline)


def kernel_send_buffer_max():
    """The most a TCP socket's send buffer grows to by autotuning (third field of tcp_wmem)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


def fill_at_least(conn, n, timeout):
    """Reads into conn.buf until it holds n bytes (or EOF / deadline); returns what is buffered."""
    deadline = time.monotonic() + timeout
    while len(conn.buf) < n:
        try:
            if not conn._fill(deadline):
                break
        except socket.timeout:
            break
    return bytes(conn.buf[:n])


class RegressionTest(gf.FilterTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    # --------------------------------------------------------------------------------------------------
    # 1. response-phase WAIT on a pipelined connection: the head goes out before the body

    def test_pipelined_response_wait_keeps_head_before_body(self):
        gw = self.start_filters([waiter("response", "300ms")], up=self.up)
        # The first response must not fit in the gateway's socket send buffer (which autotunes up to
        # tcp_wmem's maximum): when it is completely queued, part of it still waits in the gateway's
        # own output buffer and keeps draining while the second response's head waits in its filter.
        big = min(max(3900000, kernel_send_buffer_max() + 2 * 1024 * 1024), 40 * 1024 * 1024)
        small = 5000
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # before connect: a small window
        s.settimeout(5)
        s.connect((g.LOCALHOST, gw.port))
        c = PacedConn(gw.port, timeout=20 * g.SLOW, connect=False)
        c.sock = s
        self.addCleanup(c.close)
        c.send(g.request_bytes("GET", "/bytes/%d" % big) + g.request_bytes("GET", "/bytes/%d" % small))
        time.sleep(1.0)  # the first response fills every buffer on the way; reads upstream get paused
        d1 = Digest()
        r1 = c.read_response(body_sink=d1)
        self.assertEqual((r1.version, r1.status), ("HTTP/1.1", 200), r1.summary())
        self.assertEqual(r1.framing, "length", r1.summary())
        self.assertEqual(d1.n, big)
        self.assertEqual(d1.hexdigest(), pattern_sha256(big), "first response body differs from the upstream's")
        start = fill_at_least(c, 12, 10 * g.SLOW)
        self.assertEqual(start, b"HTTP/1.1 200", "the second response does not start with its status line "
                         "(body bytes before the head?): %r..." % bytes(c.buf[:40]))
        d2 = Digest()
        r2 = c.read_response(body_sink=d2)
        self.assertEqual((r2.version, r2.status), ("HTTP/1.1", 200), r2.summary())
        self.assertEqual(r2.header("content-length"), str(small), r2.summary())
        self.assertEqual(d2.n, small)
        self.assertEqual(d2.hexdigest(), pattern_sha256(small), "second response body differs")
        self.assertEqual(r1.header("x-waited"), "response", r1.summary())
        self.assertEqual(r2.header("x-waited"), "response", r2.summary())
        self.assertFalse(fill_at_least(c, 1, 0.2), "bytes after the second response: %r" % bytes(c.buf[:200]))

    # --------------------------------------------------------------------------------------------------
    # 2. a client that pipelines without reading cannot make the gateway buffer without bound

    RSS_LIMIT_KIB = 64 * 1024
    RSS_LIMIT_ASAN_KIB = 192 * 1024  # shadow memory and quarantine: about 50 MiB here with the fix

    def test_pipelining_client_that_never_reads(self):
        gw = self.proxy_gateway(self.up)
        self.assertEqual(g.simple_request(gw.port, "GET", "/health").status, 200)
        rss0 = gw.rss_kib()
        one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        chunk = one * (65536 // len(one))
        total_cap = 40 * 1000 * 1000
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.settimeout(5)
        s.connect((g.LOCALHOST, gw.port))
        s.settimeout(2.0)  # a send blocked this long: the gateway stopped taking requests
        sent = 0
        peak = rss0 or 0
        why = "40 MB sent"
        t0 = time.monotonic()
        view = memoryview(chunk)
        pos = 0  # where the next send starts in chunk: a partial send must not cut a request in two
        for _ in range(1000000):
            if sent >= total_cap:
                break
            if time.monotonic() - t0 > 20 * g.SLOW:
                why = "time bound"
                break
            try:
                n = s.send(view[pos:])
            except socket.timeout:
                why = "send blocked for 2 s"
                break
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
                why = "connection closed by the gateway (%s)" % type(e).__name__
                break
            sent += n
            pos = (pos + n) % len(chunk)
            peak = max(peak, gw.rss_kib() or 0)
        for _ in range(10):  # a little longer: the gateway may still be working through what it read
            time.sleep(0.05)
            peak = max(peak, gw.rss_kib() or 0)
        self.assertTrue(gw.alive(), "the gateway died; log:\n" + gw.log(4000))
        limit = self.RSS_LIMIT_ASAN_KIB if g.SANITIZE else self.RSS_LIMIT_KIB
        self.assertLess(peak, limit, "gateway VmRSS reached %d KiB (from %s KiB) while a client pipelined %d bytes "
                        "of requests without reading (stopped: %s)" % (peak, rss0, sent, why))
        t = time.monotonic()
        r = g.simple_request(gw.port, "GET", "/health", timeout=3 * g.SLOW)
        took = time.monotonic() - t
        self.assertEqual(r.status, 200, r.summary())
        self.assertLess(took, 1.0 * g.SLOW, "a fresh /health took %.2fs next to the pipelining client" % took)
        s.close()
        rc = gw.stop(term_timeout=10 * g.SLOW)
        self.assertEqual(rc, 0, gw.log(4000))

    # --------------------------------------------------------------------------------------------------
    # 3. per-request memory over more than one arena chunk is released (LeakSanitizer at exit)

    def test_request_memory_over_several_chunks_not_leaked(self):
        gw = self.start_filters([waiter("response", "1ms")], up=self.up)
        value = "v" * 150
        names = ["X-Long-%02d" % i for i in range(40)]
        query = urllib.parse.urlencode([("hdr", "%s:%s" % (n, value)) for n in names])
        target = "/echo?" + query
        with g.RawConn(gw.port, timeout=5 * g.SLOW) as c:
            for i in range(50):
                c.send(g.request_bytes("GET", target + "&i=%d" % i))
                r = c.read_response()
                self.assertEqual(r.status, 200, "request %d: %s" % (i, r.summary()))
                got = [(n, r.header(n)) for n in names]
                self.assertEqual(got, [(n, value) for n in names], "request %d: long response headers" % i)
                self.assertEqual(r.header("x-waited"), "response", r.summary())
        rc = gw.stop(term_timeout=10 * g.SLOW)
        self.assertEqual(rc, 0, "the gateway should exit 0 on SIGTERM; log:\n" + gw.log(6000))
        self.assertIsNone(gw.sanitizer_report(), "sanitizer report at exit")

    # --------------------------------------------------------------------------------------------------
    # 4. two reloads in quick succession while the worker is busy release every replaced generation

    def reload_cfg(self, port, tag):
        # upstream_request: /info (no upstream) never meets the waiter
        pipeline = [tagger(tag), waiter("upstream_request", "30ms", work_after_resume="800ms")]
        return self.filter_config(port, pipeline, up=self.up, log={"level": "debug"})

    def test_quick_reloads_while_busy_release_every_generation(self):
        gw = self.start_gateway(lambda p: self.reload_cfg(p, "a"))
        self.assertEqual(gw.info()["generation"], 1)
        gen = 1
        for rnd in range(3):
            busy = g.RawConn(gw.port, timeout=10 * g.SLOW)
            self.addCleanup(busy.close)
            off = gw.log_size()
            busy.send(g.request_bytes("GET", "/echo/busy%d" % rnd))
            time.sleep(0.1 * g.SLOW)  # the waiter's timer fired: the worker spins for 800 ms
            g.write_config(gw.config_path, self.reload_cfg(gw.port, "b"))
            gw.proc.signal(signal.SIGHUP)
            time.sleep(0.15)
            g.write_config(gw.config_path, self.reload_cfg(gw.port, "a"))
            gw.proc.signal(signal.SIGHUP)
            gen += 2
            self.assertIsNotNone(gw.wait_log(r"reload: generation %d serves" % gen, off, timeout=3),
                                 "round %d: no reload line for generation %d; log:\n%s"
                                 % (rnd, gen, gw.log_since(off)))
            # both reloads must happen while the worker is still busy, or this round tests nothing
            early, _, _ = select.select([busy.sock], [], [], 0)
            self.assertEqual(early, [], "round %d: the busy request ended before the second reload; log:\n%s"
                             % (rnd, gw.log_since(off)))
            r = busy.read_response()
            self.assertEqual(r.status, 200, r.summary())
            busy.close()
        want = list(range(1, gen))

        def all_released():
            text = gw.log_since(0)
            got = set(int(x) for x in re.findall(r"generation (\d+) released", text))
            return got if got >= set(want) else None
        got = g.wait_until(all_released, 5 * g.SLOW, interval=0.05)
        seen = sorted(set(int(x) for x in re.findall(r"generation (\d+) released", gw.log_since(0))))
        self.assertIsNotNone(got, "replaced generations %s, released %s; log:\n%s" % (want, seen, gw.log(6000)))
        info = gw.info()
        self.assertEqual(info["generation"], gen, info)
        self.assertEqual(info["reloads"].get("success"), gen - 1, info)
        self.assertEqual(info["reloads"].get("failure", 0), 0, info)
        self.assertTags(self.get(gw.port, "/echo/after"), ["a"], ["a"], "after the reloads")
        rc = gw.stop(term_timeout=10 * g.SLOW)
        self.assertEqual(rc, 0, gw.log(4000))

    # --------------------------------------------------------------------------------------------------
    # 5. an own 204 response set by a filter carries no body

    def test_own_204_has_no_body(self):
        # host->respond() takes 200..599, but no filter the tests can load answers 204: tagger answers 200
        # (its endpoint) and 403, waiter 200, swap and counter never answer, and the SDK example filter's
        # reject status is limited to 400..599 (respond_error). Covering this needs a fixture with a
        # configurable own status.
        self.skipTest("no fixture filter can answer with its own 204 response")

    # --------------------------------------------------------------------------------------------------
    # 6. WebSocket: a client that half-closes still gets the echo of what it sent

    def ws_upgrade(self, c, path="/ws"):
        key = g.ws_key()
        c.send(g.request_bytes("GET", path, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                             ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
        r = g.parse_response_head(c.read_until(b"\r\n\r\n", timeout=5 * g.SLOW))
        self.assertEqual(r.status, 101, r.summary())
        self.assertEqual(r.header("sec-websocket-accept"), g.ws_accept(key), r.summary())

    def test_websocket_half_close_still_gets_echo(self):
        gw = self.proxy_gateway(self.up)
        c = g.RawConn(gw.port, timeout=10 * g.SLOW)
        self.addCleanup(c.close)
        self.ws_upgrade(c)
        payload = os.urandom(3 * 1024 * 1024)
        wire = g.ws_client_frame(0x2, payload) + g.ws_client_frame(0x8, b"\x03\xe8done")
        sender = c.sock.dup()  # own timeout; the reader below changes c.sock's
        self.addCleanup(sender.close)
        sender.settimeout(10 * g.SLOW)
        send_error = []

        def send_all():
            try:
                sender.sendall(wire)
                sender.shutdown(socket.SHUT_WR)
            except OSError as e:
                send_error.append(e)

        t = threading.Thread(target=send_all, daemon=True)
        t.start()
        closed = c.closed_within(10 * g.SLOW)
        t.join(5)
        self.assertFalse(t.is_alive(), "sending the frame did not finish")
        self.assertEqual(send_error, [], "sending failed")
        self.assertTrue(closed, "no EOF within %ds after the client's close and half-close" % (10 * g.SLOW))
        data = bytes(c.buf)
        frames = []
        off = 0
        while off + 2 <= len(data) and len(frames) < 10:
            b0, b1 = data[off], data[off + 1]
            self.assertFalse(b1 & 0x80, "server frame is masked")
            n, hl = b1 & 0x7F, 2
            if n == 126:
                n, hl = int.from_bytes(data[off + 2: off + 4], "big"), 4
            elif n == 127:
                n, hl = int.from_bytes(data[off + 2: off + 10], "big"), 10
            if off + hl + n > len(data):
                break
            frames.append((bool(b0 & 0x80), b0 & 0x0F, data[off + hl: off + hl + n]))
            off += hl + n
        summary = [(fin, op, len(p)) for fin, op, p in frames]
        self.assertEqual(off, len(data), "%d bytes received, %d parsed as whole frames %s: the echo was cut"
                         % (len(data), off, summary))
        self.assertEqual(summary, [(True, 0x2, len(payload)), (True, 0x8, 6)],
                         "frames received after the half-close (%d bytes)" % len(data))
        self.assertTrue(frames[0][2] == payload, "the echoed 3 MiB frame differs from what was sent")
        self.assertEqual(frames[1][2], b"\x03\xe8done")

    # --------------------------------------------------------------------------------------------------
    # 7. a pooled upstream connection that closes while upstream_request waits

    def test_pooled_connection_closes_during_upstream_request_wait(self):
        # A second waiter holds the response phase: a stray resume() left over from the upstream_request
        # phase (the phase started again on a new connection while its first run still waited) would end
        # that wait early, and the response would lack its "X-Waited: response". With the fix the phase
        # runs again for the new connection only after its first run is over (so the request takes both
        # waits); what is checked here is that the runs never overlap and the upstream sees one request.
        up_wait, resp_wait = 0.4, 0.6
        # /first: both waits short, so that its upstream connection goes back to the pool at once
        routes = [{"prefix": "/first", "service": "up", "filters": {"waiter": {"delay": "1ms"}}},
                  {"prefix": "/", "service": "up"}]
        gw = self.start_filters([waiter("upstream_request", "%dms" % (up_wait * 1000)),
                                 waiter("response", "%dms" % (resp_wait * 1000))], up=self.up, routes=routes)
        r1 = self.get_ok(gw.port, "/first?close_after_ms=150", timeout=10)
        self.assertEqual(g.hall(gf.upstream_view(r1), "x-waited"), ["upstream_request"])
        off = gw.log_size()
        t0 = time.monotonic()
        wall0 = time.time()
        # a new client connection at once: it gets the pooled upstream connection, which the upstream
        # closes ~150 ms later, while the upstream_request phase still waits
        r2 = self.get(gw.port, "/echo/second", timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(r2.status, 200, "second request (its pooled upstream connection closed during the "
                         "wait): %s" % r2.summary())
        self.assertEqual(r2.json()["path"], "/echo/second", r2.summary())
        self.assertEqual(g.hall(gf.upstream_view(r2), "x-waited"), ["upstream_request"],
                         "X-Waited the upstream saw: %r" % gf.upstream_view(r2))
        self.assertEqual(r2.header_all("x-waited"), ["response"],
                         "the response phase's wait was cut short (a stray resume?):\n%s" % r2.summary())
        self.assertGreaterEqual(took, up_wait + resp_wait - 0.02, "answered after %.3fs" % took)
        text = gw.log_since(off)
        self.assertNotIn("not waiting", text, "a filter's resume() hit a request that was not waiting")
        reqs = self.up.requests()
        self.assertEqual([q["path"] for q in reqs], ["/first", "/echo/second"], "requests the upstream saw")
        conns = sorted(self.up.state()["conns"], key=lambda k: k["id"])
        self.assertEqual(len(conns), 2, "the second request should go out on a new upstream connection: %r" % conns)
        # the case only means something if the first connection was still open (pooled) when the second
        # request started
        self.assertIsNotNone(conns[0]["closed"], conns)
        self.assertGreater(conns[0]["closed"], wall0, "the upstream closed the pooled connection before the "
                           "second request started: %r" % conns)
        time.sleep(0.2)  # a timer left behind by an overlapping run of the phase would have fired by now
        self.assertTrue(gw.alive(), gw.log(4000))
        self.assertNotIn("not waiting", gw.log_since(off))
        r3 = self.get_ok(gw.port, "/first/third", timeout=10)
        self.assertEqual(r3.header_all("x-waited"), ["response"], r3.summary())


if __name__ == "__main__":
    g.main()
