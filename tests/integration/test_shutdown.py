#!/usr/bin/env python3
# ctest-labels: asan
"""Graceful shutdown: in-flight requests finish, listeners close, exit code 0; a second signal is fatal."""

import signal
import socket
import threading
import time

import gwtest as g

BODY_SIZE = 20000


class ShutdownTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    def gateway(self, shutdown="10s", workers=1):
        gw = self.start_gateway(lambda p: g.base_config(
            p, [{"name": "up", "targets": [self.up.url]}], [{"prefix": "/", "service": "up"}],
            workers=workers, timeouts={"shutdown": shutdown, "upstream_response": "30s"}))
        gw.expect_exit = True
        return gw

    def fire(self, port, n, ms):
        """n concurrent requests to /slow; returns (threads, results list of (status|exception, body))."""
        results = [None] * n

        def one(i):
            try:
                with g.RawConn(port, timeout=20) as c:
                    c.send(g.request_bytes("GET", "/slow?ms=%d&size=%d&i=%d" % (ms, BODY_SIZE, i)))
                    r = c.read_response(timeout=20)
                    results[i] = (r.status, r.body)
            except Exception as e:  # reported by the test
                results[i] = (e, b"")

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        return threads, results

    def wait_in_flight(self, n):
        reqs = self.up.wait_requests(n, timeout=10 * g.SLOW)
        self.assertEqual(len(reqs), n, "only %d of %d requests reached the upstream" % (len(reqs), n))

    def check_results(self, results):
        want = g.pattern_bytes(BODY_SIZE)
        bad = [(i, r[0]) for i, r in enumerate(results) if r is None or r[0] != 200 or r[1] != want]
        self.assertEqual(bad, [], "requests that did not complete with 200 and the full body: %r" % bad[:10])

    def drain_case(self, sig, n, workers=1):
        gw = self.gateway(workers=workers)
        threads, results = self.fire(gw.port, n, 1500)
        self.wait_in_flight(n)
        t0 = time.monotonic()
        gw.proc.signal(sig)
        # new connections are refused once the signal is handled (allow a moment for that)
        refused = g.wait_until(lambda: not _connect_ok(gw.port), 1.0, interval=0.02)
        refused_at = time.monotonic() - t0
        rc = gw.proc.wait(12)
        took = time.monotonic() - t0
        for t in threads:
            t.join(5)
        self.assertIsNotNone(rc, "gateway still running %.1fs after %s" % (took, sig.name))
        self.check_results(results)
        self.assertEqual(rc, 0, "exit code after %s drain; log:\n%s" % (sig.name, gw.log(4000)))
        self.assertLess(took, 6 * g.SLOW, "drain took %.1fs for requests needing 1.5s" % took)
        self.assertTrue(refused, "new connections still accepted 1s after %s (requests still in flight)" % sig.name)
        self.assertLess(refused_at, 1.4, "listener closed only after %.2fs" % refused_at)

    def test_sigterm_drains_50_in_flight(self):
        self.drain_case(signal.SIGTERM, 50)

    def test_sigterm_drains_two_workers(self):
        self.drain_case(signal.SIGTERM, 20, workers=2)

    def test_sigint_like_sigterm(self):
        self.drain_case(signal.SIGINT, 10)

    def test_second_sigterm_exits_at_once(self):
        gw = self.gateway(shutdown="20s")
        threads, results = self.fire(gw.port, 5, 8000)
        self.wait_in_flight(5)
        gw.proc.signal(signal.SIGTERM)
        time.sleep(0.3)
        self.assertTrue(gw.alive(), "gateway exited on the first SIGTERM with 5 requests in flight")
        t0 = time.monotonic()
        gw.proc.signal(signal.SIGTERM)
        rc = gw.proc.wait(5)
        took = time.monotonic() - t0
        self.assertIsNotNone(rc, "gateway still running 5s after a second SIGTERM")
        self.assertLess(took, 2.0 * g.SLOW, "second SIGTERM took %.1fs to end the gateway" % took)
        for t in threads:
            t.join(5)

    def test_idle_connections_do_not_delay_exit(self):
        gw = self.gateway(shutdown="10s")
        idle = []
        for i in range(3):
            c = g.RawConn(gw.port)
            self.addCleanup(c.close)
            c.send(g.request_bytes("GET", "/echo/%d" % i))
            self.assertEqual(c.read_response().status, 200)
            idle.append(c)
        t0 = time.monotonic()
        gw.proc.signal(signal.SIGTERM)
        rc = gw.proc.wait(8)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit code %r after %.1fs" % (rc, took))
        self.assertLess(took, 2.0 * g.SLOW, "idle keep-alive connections held the drain for %.1fs" % took)
        for c in idle:
            self.assertTrue(c.closed_within(1), "idle client connection not closed at exit")

    def test_drain_deadline_cuts(self):
        gw = self.gateway(shutdown="1s")
        threads, results = self.fire(gw.port, 3, 15000)
        self.wait_in_flight(3)
        t0 = time.monotonic()
        gw.proc.signal(signal.SIGTERM)
        rc = gw.proc.wait(8)
        took = time.monotonic() - t0
        self.assertIsNotNone(rc, "gateway still running 8s after SIGTERM with shutdown: 1s")
        self.assertTrue(0.8 <= took <= 3.0 * g.SLOW, "exited %.2fs after SIGTERM, expected ~1s" % took)
        for t in threads:
            t.join(5)
        self.assertTrue(all(r is not None and r[0] != 200 for r in results), "cut requests cannot be 200")


def _connect_ok(port):
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


if __name__ == "__main__":
    g.main()
