#!/usr/bin/env python3
# ctest-labels: asan
"""Clients that go away while a filter waits (GW_WAIT on a host timer), in each phase: 50 disconnects
(FIN and RST, fresh and keep-alive connections, with a pipelined request behind), then normal requests
still work, no descriptor is leaked, SIGTERM stops the gateway with exit 0, and (ASan build) the log has
no sanitizer report."""

import os
import signal
import socket
import struct
import time

import gwfilters as gf
import gwtest as g
from gwfilters import tagger, waiter

DELAY = 0.3          # the waiter's delay
CLOSE_AFTER = 0.1    # the client closes this long after its request went out: inside the wait
ROUNDS = 50
BATCH = 10           # rounds after the first 10 run BATCH connections at a time
WORKERS = 2


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


class WaitDisconnectTest(gf.FilterTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    def prepare(self, gw, ks):
        """Connections for round numbers ks; every third one first completes a request (keep-alive), all of
        those at once."""
        conns = [(k, g.RawConn(gw.port, timeout=5 * g.SLOW)) for k in ks]
        first = [c for k, c in conns if k % 3 == 1]
        for c in first:
            c.send(g.request_bytes("GET", "/echo/first"))
        for c in first:
            r = c.read_response(timeout=(DELAY + 5) * g.SLOW)
            self.assertEqual(r.status, 200, "keep-alive request before the disconnect: " + r.summary())
        return conns

    @staticmethod
    def fire(c, k):
        """Sends the request that will wait, every fourth time with a pipelined one behind it."""
        data = g.request_bytes("GET", "/echo/gone-%d" % k)
        if k % 4 == 2:
            data += g.request_bytes("GET", "/echo/pipelined-%d" % k)
        c.send(data)
        c.sent_at = time.monotonic()

    @staticmethod
    def close_waiting(c, k):
        """Closes during the wait (RST for every other connection). Returns True if a response byte had
        already arrived although the wait cannot be over yet."""
        early = False
        c.sock.setblocking(False)
        try:
            early = bool(c.sock.recv(1, socket.MSG_PEEK))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            early = False
        if time.monotonic() - c.sent_at >= DELAY * 0.8:
            early = False  # we were late ourselves: a response may legitimately be there
        if k % 2:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        return early

    def storm(self, gw):
        early = []
        k = 0
        # ten one at a time, then the rest BATCH at a time
        plan = [1] * 10 + [BATCH] * ((ROUNDS - 10) // BATCH)
        for n in plan:
            conns = self.prepare(gw, range(k, k + n))
            k += n
            for kk, c in conns:
                self.fire(c, kk)
            for kk, c in conns:
                left = c.sent_at + CLOSE_AFTER - time.monotonic()
                if left > 0:
                    time.sleep(left)
                if self.close_waiting(c, kk):
                    early.append(kk)
            self.assertTrue(gw.alive(), "gateway died after %d disconnects; log:\n%s" % (k, gw.log(6000)))
        self.assertEqual(k, ROUNDS)
        self.assertEqual(early, [], "the gateway answered within %.1fs although the filter waits %.1fs "
                         "(connections %r)" % (CLOSE_AFTER, DELAY, early))

    def run_phase(self, phase, **waiter_kw):
        gw = self.start_filters([tagger("t"), waiter(phase, "%dms" % int(DELAY * 1000), **waiter_kw)],
                                up=self.up, workers=WORKERS)
        # warm up: every path once, so lazily made things (pools, per-worker state) exist before counting fds
        for i in range(2):
            self.get_ok(gw.port, "/echo/warm-%d" % i, timeout=(DELAY + 5))
        fds_before = fd_count(gw.pid)

        self.storm(gw)

        time.sleep(DELAY + 0.2)  # timers that were not cancelled would fire by now
        self.assertTrue(gw.alive(), "gateway died after the disconnects; log:\n" + gw.log(6000))
        after = [g.RawConn(gw.port, timeout=(DELAY + 5) * g.SLOW) for _ in range(8)]  # 8 at once
        for i, c in enumerate(after):
            self.addCleanup(c.close)
            c.send(g.request_bytes("GET", "/echo/after-%d" % i))
        for i, c in enumerate(after):
            r = c.read_response()
            c.close()
            self.assertEqual(r.status, 200, "request %d after the disconnects: %s" % (i, r.summary()))
            if waiter_kw.get("respond_after_wait"):
                self.assertEqual(r.json().get("waited"), phase, r.summary())
            elif phase in ("request", "upstream_request"):
                self.assertEqual(g.hall(gf.upstream_view(r), "x-waited"), [phase], r.summary())
            else:
                self.assertEqual(r.header("x-waited"), phase, r.summary())
        # idle pooled upstream connections may have grown with the concurrency, not with the disconnects
        if fds_before is not None:
            bound = fds_before + WORKERS * BATCH + 4
            fds = g.wait_until(lambda: (lambda n: n if n is not None and n <= bound else None)(fd_count(gw.pid)),
                               5 * g.SLOW, interval=0.1)
            self.assertIsNotNone(fds, "open descriptors: %s before, %s after %d disconnects (bound %d): leak?"
                                 % (fds_before, fd_count(gw.pid), ROUNDS, bound))

        rc = gw.stop(term_timeout=10 * g.SLOW)
        self.assertEqual(rc, 0, "exit code after SIGTERM; log:\n" + gw.log(6000))
        rep = gw.sanitizer_report()
        self.assertIsNone(rep, "sanitizer report:\n%s" % rep)

    def test_request(self):
        self.run_phase("request")

    def test_sigterm_while_waiting(self):
        # a short wait finishes within the drain; a long one is cut at the deadline; both exit 0, clean
        for delay, shutdown, want_status in (("400ms", "3s", 200), ("20s", "1s", None)):
            with self.subTest(delay=delay):
                gw = self.start_filters([waiter("request", delay), waiter("response", "50ms")], up=self.up,
                                        timeouts={"shutdown": shutdown})
                c = g.RawConn(gw.port, timeout=10 * g.SLOW)
                self.addCleanup(c.close)
                c.send(g.request_bytes("GET", "/echo/term"))
                time.sleep(0.1)
                t0 = time.monotonic()
                gw.proc.signal(signal.SIGTERM)
                try:
                    r = c.read_response(timeout=8 * g.SLOW)
                except (g.ConnClosed, OSError) as e:
                    r = e
                rc = gw.proc.wait(10 * g.SLOW)
                took = time.monotonic() - t0
                self.assertEqual(rc, 0, "exit code %r %.1fs after SIGTERM; log:\n%s" % (rc, took, gw.log(6000)))
                if want_status:
                    self.assertIsInstance(r, g.Response, "the waiting request was not finished in the drain: %s" % r)
                    self.assertEqual(r.status, want_status, r.summary())
                else:
                    self.assertLess(took, 5 * g.SLOW, "a 20s wait held the exit for %.1fs (shutdown: 1s)" % took)
                    self.assertFalse(isinstance(r, g.Response) and r.status == 200, "a cut request got 200")
                gw.stop()
                self.assertIsNone(gw.sanitizer_report(), gw.sanitizer_report())

    def test_upstream_request(self):
        self.run_phase("upstream_request")

    def test_upstream_response(self):
        self.run_phase("upstream_response")

    def test_response(self):
        self.run_phase("response")

    def test_request_respond_after_wait(self):
        self.run_phase("request", respond_after_wait=True)

    def test_upstream_request_respond_after_wait(self):
        self.run_phase("upstream_request", respond_after_wait=True)


if __name__ == "__main__":
    g.main()
