#!/usr/bin/env python3
# ctest-labels: asan
"""Connection limits across workers: the process-wide max_connections budget (a free slot on any worker
serves a new client), the per-client-address cap, running out of file descriptors (no accept spin), and
memory given back after a connection flood."""

import os
import re
import selectors
import socket
import sys
import time

import gwtest as g

HEALTH = b"GET /health HTTP/1.1\r\nHost: gw.test\r\n\r\n"


def connect_many(port, n, timeout=10.0):
    """n plain client sockets to the gateway (connects complete in the kernel's backlog)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect((g.LOCALHOST, port))
            socks.append(s)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def request_all(socks, request, timeout, close_done=False, answers=None):
    """Sends request on every socket and waits (one shared deadline) for one complete response on each
    (closing the socket once answered if close_done). Returns the indexes that got none (no answer in
    time, or closed); answers (a dict), if given, gets index -> the bytes received."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for i, s in enumerate(socks):
        s.setblocking(True)
        s.settimeout(timeout)
        s.sendall(request)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        bufs[i] = bytearray()
    pending = set(range(len(socks)))
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
            i = key.data
            try:
                data = key.fileobj.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                pending.discard(i)
                bufs[i] = None  # closed without a complete answer
                continue
            bufs[i] += data
            if complete_response(bufs[i]):
                sel.unregister(key.fileobj)
                pending.discard(i)
                if close_done:
                    key.fileobj.close()
    sel.close()
    if answers is not None:
        answers.update((i, bytes(b)) for i, b in bufs.items() if b is not None)
    failed = sorted(pending | {i for i, b in bufs.items() if b is None or not complete_response(b)})
    for s in socks:
        if s.fileno() >= 0:
            s.setblocking(True)
    return failed


def complete_response(buf):
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", bytes(buf[:end]))
    return m is not None and len(buf) >= end + 4 + int(m.group(1))


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def health(port, timeout=2.0):
    """A /health response, or None while the gateway cannot answer (refused, reset, timed out)."""
    try:
        r = g.simple_request(port, "GET", "/health", timeout=timeout)
    except (OSError, g.ConnClosed):
        return None
    return r if r.status == 200 else None


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ConnLimitsTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    def gateway(self, env=None, bin_path=None, **extra):
        return self.start_gateway(lambda p: g.base_config(
            p, [{"name": "up", "targets": [self.up.url]}], [{"prefix": "/", "service": "up"}], **extra),
            env=env, bin_path=bin_path)

    def test_budget_is_shared_by_workers(self):
        # The case: 92 of 100 slots held by idle keep-alive clients across 2 workers; each of 30 new
        # clients must be answered. With the budget split per worker, the kernel queued clients on the
        # socket of a worker at its share (50) while the other had room.
        gw = self.gateway(workers=2, max_connections=100,
                          timeouts={"keepalive_idle": "60s", "request_head": "60s"})
        idle = connect_many(gw.port, 92)
        self.addCleanup(close_all, idle)
        lost = request_all(idle, HEALTH, timeout=5 * g.SLOW)
        self.assertEqual(lost, [], "%d of 92 connections (below max_connections 100) were not served: a "
                         "worker at 'its share' left them in its backlog" % len(lost))
        new = connect_many(gw.port, 30)
        self.addCleanup(close_all, new)
        lost = request_all(new, b"GET /health HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
                           timeout=5 * g.SLOW, close_done=True)
        self.assertEqual(lost, [], "%d of 30 new clients got no answer while slots kept coming free"
                         % len(lost))
        self.assertIn("max_connections (100) reached", gw.log())

    def test_free_slot_on_any_worker_serves(self):
        # Below the limit, every connection is served whichever worker's socket the kernel picked. With
        # a per-worker split (20 + 20 of 40) a round of 39 fails unless the kernel split them exactly 19/20
        # (p ~ 1/4), so three rounds catch it almost surely.
        gw = self.gateway(workers=2, max_connections=40, timeouts={"keepalive_idle": "60s"})
        for rnd in range(3):
            socks = connect_many(gw.port, 39)
            try:
                lost = request_all(socks, HEALTH, timeout=5 * g.SLOW)
            finally:
                close_all(socks)
            self.assertEqual(lost, [], "round %d: %d of 39 connections (max_connections 40) not served"
                             % (rnd, len(lost)))
            # the 39 closes are seen before the next round
            g.wait_until(lambda: health(gw.port), 5, what="health")

    def test_limit_reached_is_logged_rate_limited(self):
        gw = self.gateway(max_connections=2, timeouts={"keepalive_idle": "30s"})
        held = connect_many(gw.port, 2)
        self.addCleanup(close_all, held)
        self.assertEqual(request_all(held, HEALTH, timeout=5), [])
        waiting = []
        self.addCleanup(close_all, waiting)
        for _ in range(5):  # each waits in the backlog; each turn a slot frees and is taken again
            waiting += connect_many(gw.port, 1)
        gw.wait_log(r"max_connections \(2\) reached", timeout=5)
        held[0].close()
        self.assertEqual(request_all(waiting[:1], HEALTH, timeout=5), [], "a freed slot was not reused")
        self.assertEqual(len(re.findall(r"max_connections \(2\) reached", gw.log())), 1,
                         "the warning must be rate-limited:\n" + gw.log())

    def test_per_client_cap(self):
        gw = self.gateway(limits={"max_connections_per_client": 3}, timeouts={"keepalive_idle": "30s"})
        held = []
        self.addCleanup(close_all, held)

        def hold_three():
            # the readiness probe's connection may still count for a moment: try again until it is gone
            close_all(held)
            held[:] = connect_many(gw.port, 3)
            return request_all(held, HEALTH, timeout=5) == []
        self.assertTrue(g.wait_until(hold_three, 5, interval=0.05, what="three connections served"))
        for _ in range(10):
            extra = g.RawConn(gw.port)
            self.addCleanup(extra.close)
            self.assertTrue(extra.closed_within(5), "a 4th connection from one address must be closed at once")
            self.assertEqual(bytes(extra.buf), b"", "nothing is sent on a refused connection")
            extra.close()
        log = gw.log()
        self.assertEqual(len(re.findall(r"max_connections_per_client \(3\) reached", log)), 1,
                         "one warning (rate-limited) for ten refusals:\n" + log)
        self.assertIn("client 127.0.0.1", log)
        held[0].close()
        r = g.wait_until(lambda: health(gw.port), 5, what="a free slot")
        self.assertIsNotNone(r)

    def test_per_client_warnings_add_up(self):
        # The first warning used to say "1 connection refused" and the 39 refused after it in the same
        # interval were never logged. Now the first is logged at once and the rest are summed at the end of
        # the interval (10 s): the figures add up to the refusals. The connections come from 127.0.0.2 so
        # that the readiness probe (127.0.0.1) is never counted against this client.
        gw = self.gateway(limits={"max_connections_per_client": 2}, timeouts={"keepalive_idle": "60s"})

        def from_2():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            s.bind(("127.0.0.2", 0))
            s.connect((g.LOCALHOST, gw.port))
            return s
        held = [from_2(), from_2()]
        self.addCleanup(close_all, held)
        self.assertEqual(request_all(held, HEALTH, timeout=5), [])
        refused = 40
        for i in range(refused):
            s = from_2()
            try:
                got = s.recv(100)  # EOF (or a reset) at once: nothing is sent on a refused connection
            except ConnectionResetError:
                got = b""
            finally:
                s.close()
            self.assertEqual(got, b"", "connection %d over the cap was not closed" % i)
        summary = gw.wait_log(r"max_connections_per_client \(2\): \d+ more connection", timeout=15)
        self.assertIsNotNone(summary, "no summary of the interval:\n" + gw.log())
        log = gw.log()
        first = re.findall(r"client 127\.0\.0\.2: limits\.max_connections_per_client \(2\) reached, "
                           r"connection closed \((\d+) connections? refused", log)
        rest = re.findall(r"max_connections_per_client \(2\): (\d+) more connections? refused", log)
        self.assertEqual(first, ["1"], log)
        self.assertEqual(sum(int(n) for n in first + rest), refused, log)

    def test_per_client_cap_zero_is_off_and_value_checked(self):
        gw = self.gateway(limits={"max_connections_per_client": 0})
        socks = connect_many(gw.port, 40)
        self.addCleanup(close_all, socks)
        self.assertEqual(request_all(socks, HEALTH, timeout=5 * g.SLOW), [])
        path = os.path.join(self.tmp, "bad.yaml")
        cfg = g.base_config(1234, [{"name": "up", "targets": [self.up.url]}], [{"prefix": "/", "service": "up"}],
                            limits={"max_connections_per_client": -1})
        g.write_config(path, cfg)
        rc, out, err = g.run_gateway_cli(["-t", "-c", path])
        self.assertNotEqual(rc, 0)
        self.assertRegex(err + out, r"bad\.yaml:\d+:\d+: .*max_connections_per_client")

    def low_fd_gateway(self, **extra):
        """A gateway with 64 descriptors (soft = hard, so it cannot raise the limit)."""
        wrapper = os.path.join(self.tmp, "lowfd.py")
        with open(wrapper, "w") as f:
            f.write("import os, resource, sys\n"
                    "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
                    "os.execv(%r, [%r] + sys.argv[1:])\n" % (g.GW_BIN, g.GW_BIN))
        os.chmod(wrapper, 0o755)
        launcher = os.path.join(self.tmp, "lowfd.sh")
        with open(launcher, "w") as f:
            f.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (sys.executable, wrapper))
        os.chmod(launcher, 0o755)
        return self.gateway(bin_path=launcher, max_connections=10000, limits={"max_connections_per_client": 0},
                            timeouts={"request_head": "60s", "keepalive_idle": "60s"}, **extra)

    def test_cannot_start_upstream_connection_is_logged_rate_limited(self):
        # Out of descriptors, every proxied request fails to open its upstream socket: that used to log one
        # line per request. Now one line per interval (per worker), then how many more there were.
        # How many accepted connections are left without a descriptor for their upstream depends on the
        # kernel's timing on a loaded machine: the scenario is set up again (at most 3 times) until it holds.
        for _ in range(3):
            gw = self.low_fd_gateway(workers=1)
            socks = connect_many(gw.port, 120)
            self.addCleanup(close_all, socks)
            g.wait_until(lambda: "out of file descriptors" in gw.log(), 5, what="EMFILE seen")
            answers = {}
            request_all(socks, b"GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n", timeout=3 * g.SLOW,
                        answers=answers)
            failed = sum(1 for b in answers.values() if b.startswith(b"HTTP/1.1 502"))
            if failed >= 5:
                break
            close_all(socks)
            gw.stop()
        self.assertGreaterEqual(failed, 5, "the scenario needs proxied requests that cannot connect")
        first = re.findall(r"upstream \S+: cannot start a connection: Too many open files", gw.log())
        self.assertEqual(len(first), 1, "%d requests failed to connect:\n%s" % (failed, gw.log(4000)))
        summary = gw.wait_log(r"(\d+) more upstream connections? could not be started", timeout=15)
        self.assertIsNotNone(summary, gw.log(4000))
        more = int(re.search(r"(\d+) more upstream", summary).group(1))
        self.assertGreaterEqual(1 + more, failed, "every failure is counted: " + summary)
        close_all(socks)

    def test_out_of_descriptors_does_not_spin(self):
        # 64 descriptors and max_connections far above: accept fails with EMFILE while the backlog keeps the
        # listener readable. It must pause, not spin or flood the log, and serve again once descriptors
        # come back.
        gw = self.low_fd_gateway(workers=2)
        self.assertIn("file descriptors", gw.log(), "the start-up warning about the descriptor limit")
        socks = connect_many(gw.port, 150)
        self.addCleanup(close_all, socks)
        g.wait_until(lambda: "out of file descriptors" in gw.log(), 5, what="EMFILE seen")
        log0 = gw.log_size()
        cpu0, t0 = cpu_seconds(gw.pid), time.monotonic()
        time.sleep(2)  # measuring a rate over a fixed span: this is the span, not a synchronisation
        cpu = cpu_seconds(gw.pid) - cpu0
        wall = time.monotonic() - t0
        grown = gw.log_size() - log0
        self.assertLess(cpu, 0.5 * wall * (3 if g.SANITIZE else 1),
                        "the gateway burnt %.2f s CPU in %.2f s while out of descriptors" % (cpu, wall))
        self.assertLess(grown, 4096, "the log grew by %d bytes in %.1f s:\n%s" % (grown, wall, gw.log(3000)))
        close_all(socks)
        r = g.wait_until(lambda: health(gw.port), 10,
                         what="/health after the connections closed")
        self.assertIsNotNone(r)

    @g.unittest.skipIf(g.SANITIZE, "ASan's allocator keeps freed memory in its quarantine")
    def test_memory_comes_back_after_a_flood(self):
        # 2 x 3000 keep-alive connections, each answered twice (the second time a 6 KB head that every
        # connection has half sent before any completes it, so all hold request buffers at once), then all
        # closed. Before: RSS 7 -> 80 -> 63 MiB, and 90 -> 72 after a second flood; the bound is generous.
        gw = self.gateway(workers=2, limits={"max_connections_per_client": 0},
                          timeouts={"keepalive_idle": "60s"})
        warm = connect_many(gw.port, 20)
        self.assertEqual(request_all(warm, HEALTH, timeout=5), [])
        close_all(warm)
        g.wait_until(lambda: health(gw.port), 5, what="health")
        base = gw.rss_kib()
        n = 1500 if g.SANITIZE else 3000
        for _ in range(2):
            socks = connect_many(gw.port, n)
            try:
                lost = request_all(socks, HEALTH, timeout=20 * g.SLOW)
                # Between requests a connection holds no request buffers (they go back to the worker's
                # pool): half a head on every connection first, so that each one holds them at the peak.
                for s in socks:
                    s.sendall(b"GET /health?" + b"q" * 6000 + b" HTTP/1.1\r\n")
                g.wait_until(lambda: gw.rss_kib() > base + 24 * 1024, 5 * g.SLOW, interval=0.1,
                             what="half-sent heads held")
                lost += request_all(socks, b"Host: gw.test\r\n\r\n", timeout=20 * g.SLOW)
            finally:
                close_all(socks)
            self.assertEqual(lost, [])
        peak = gw.hwm_kib()  # the high-water mark: buffers go back to the pools as requests complete
        self.assertGreater(peak - base, 24 * 1024, "the flood did not grow RSS enough to show anything "
                           "(base %d KiB, peak %d KiB)" % (base, peak))
        back = g.wait_until(lambda: gw.rss_kib() < base + 32 * 1024, 5 * g.SLOW, interval=0.1,
                            what="RSS back near baseline")
        self.assertTrue(back, "RSS %d KiB stays far above the baseline %d KiB (peak %d KiB) with no connection "
                        "open" % (gw.rss_kib(), base, peak))

    @g.unittest.skipIf(g.SANITIZE, "ASan's allocator keeps freed memory in its quarantine")
    def test_idle_keepalive_connections_give_back_buffers(self):
        # Each idle keep-alive connection kept ~13 KiB (parsed-head array, path buffer, arena chunk, head
        # copy) that only a request needs; they now go back to the worker's pool when a response is queued,
        # so idle connections hold only their long-lived parts (about 2 KiB; the bound is the performance
        # target's 4 KiB).
        gw = self.gateway(workers=2, limits={"max_connections_per_client": 0},
                          timeouts={"keepalive_idle": "60s"})
        self.assertIsNotNone(g.wait_until(lambda: health(gw.port), 5, what="health"))
        base = gw.rss_kib()
        n = 3000
        socks = connect_many(gw.port, n)
        self.addCleanup(close_all, socks)
        self.assertEqual(request_all(socks, HEALTH, timeout=20), [])

        def per_conn():
            kib = (gw.rss_kib() - base) / n
            return kib if kib < 4 else None
        got = g.wait_until(per_conn, 6, interval=0.2, what="idle buffers released")
        self.assertIsNotNone(got, "%d idle connections hold %.1f KiB each (RSS %d KiB, baseline %d KiB)"
                             % (n, (gw.rss_kib() - base) / n, gw.rss_kib(), base))
        self.assertEqual(request_all(socks[:50], HEALTH, timeout=5), [], "idle connections still serve")
        self.assertEqual(request_all(socks[50:60], b"GET /echo/after-sweep?x=1 HTTP/1.1\r\nHost: gw.test\r\n"
                                     b"X-Pad: " + b"p" * 5000 + b"\r\n\r\n", timeout=5), [],
                         "idle connections still proxy")


if __name__ == "__main__":
    g.main()
