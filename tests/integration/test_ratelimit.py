#!/usr/bin/env python3
# ctest-labels: asan
"""ratelimit.so (plugins/ratelimit) in a running gateway. Embedded store: RPM=60 BURST=10 lets exactly 10 of
20 rapid requests through and one more a second later, with the rate-limit headers and the 429 JSON; an
X-Forwarded-For from an untrusted peer changes nothing. Redis store (a real redis-server on a free 127.0.0.1
port, stopped by PID; skipped when missing): three gateways on one Redis share one limit exactly (300
concurrent requests, BURST pass); Redis killed under load gives no 5xx, limiting goes on locally, and the
limiter is back on Redis after a restart; Redis frozen with SIGSTOP still gets every request answered
promptly (the filter's store_timeout), and SIGCONT brings it back."""

import os
import signal
import socket
import sys
import threading
import time
import unittest

import gwtest as g

PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(g.GW_BIN)), "plugins")
RATELIMIT_SO = os.path.join(PLUGIN_DIR, "ratelimit.so")
REDIS_BIN = os.environ.get("GW_REDIS_SERVER") or "/usr/bin/redis-server"


class RedisClient:
    """Just enough RESP for PING, KEYS and PTTL."""

    def __init__(self, port):
        self.sock = socket.create_connection((g.LOCALHOST, port), timeout=2.0)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.sock.close()

    def _line(self):
        for _ in range(100000):
            if b"\r\n" in self.buf:
                break
            data = self.sock.recv(65536)
            if not data:
                raise OSError("redis closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                data = self.sock.recv(65536)
                if not data:
                    raise OSError("redis closed the connection")
                self.buf += data
            out, self.buf = self.buf[:n], self.buf[n + 2:]
            return out.decode()
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise OSError("unexpected reply %r" % line[:80])

    def command(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def keys(self, pattern):
        return sorted(self.command("KEYS", pattern))


class RedisServer:
    """redis-server on 127.0.0.1:port without persistence, in its own directory; stopped by PID."""

    def __init__(self, case):
        self.case = case
        self.port = g.free_port()
        self.dir = g.new_tmp_dir("redis-")
        self.runs = 0
        self.proc = None

    def start(self):
        self.runs += 1
        argv = [REDIS_BIN, "--port", str(self.port), "--bind", g.LOCALHOST, "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--daemonize", "no", "--logfile", ""]
        self.proc = self.case.start_proc(argv, "redis-%d" % self.runs, cwd=self.dir)

        def pong():
            if not self.proc.alive():
                raise AssertionError("redis-server exited; log:\n%s" % self.proc.log(4000))
            try:
                with RedisClient(self.port) as c:
                    return c.command("PING") == "PONG"
            except OSError:
                return False
        if not g.wait_until(pong, 10 * g.SLOW, interval=0.02):
            raise AssertionError("redis-server did not answer on port %d" % self.port)
        return self

    def kill(self):
        self.proc.signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stop()

    def client(self):
        return RedisClient(self.port)


def run_parallel(n, fn, threads=30):
    """fn(i) for i in range(n) on `threads` threads; returns the results in order."""
    out = [None] * n
    lock = threading.Lock()
    nxt = [0]

    def work():
        for _ in range(n):
            with lock:
                i = nxt[0]
                if i >= n:
                    return
                nxt[0] += 1
            try:
                out[i] = fn(i)
            except Exception as e:  # reported by the caller
                out[i] = e
    ts = [threading.Thread(target=work) for _ in range(min(threads, n))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out


class RateLimitCase(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(RATELIMIT_SO):
            self.fail("%s not built" % RATELIMIT_SO)
        self.up = self.start_upstream("up")

    def config(self, port, rl, workers=2, store=None):
        pipeline = [dict({"name": "ratelimit"}, **rl)]
        services = [{"name": "up", "targets": [self.up.url]}]
        routes = [{"prefix": "/", "service": "up"}]
        extra = {"workers": workers, "pipeline": pipeline}
        extra["store"] = store or {"type": "embedded", "path": os.path.join(self.tmp, "data-%d" % port)}
        return g.base_config(port, services, routes, **extra)

    def get(self, gw, path="/api/x", headers=(), timeout=None):
        return g.simple_request(gw.port, "GET", path, list(headers), timeout=timeout or 5.0 * g.SLOW)

    def statuses(self, results):
        bad = [r for r in results if isinstance(r, Exception)]
        if bad:
            self.fail("requests failed: %r" % bad[:3])
        return [r.status for r in results]


class EmbeddedTest(RateLimitCase):
    def test_burst_then_refill(self):
        gw = self.start_gateway(lambda p: self.config(p, {"rpm": 60, "burst": 10}))
        t0 = time.monotonic()
        results = run_parallel(20, lambda i: self.get(gw), threads=20)
        took = time.monotonic() - t0
        st = self.statuses(results)
        if took < 0.9:  # less than one token refilled meanwhile
            self.assertEqual(st.count(200), 10, st)
            self.assertEqual(st.count(429), 10, st)
        else:
            self.assertIn(st.count(200), (10, 11), st)
        ok = [r for r in results if r.status == 200][0]
        self.assertEqual(ok.header("x-ratelimit-limit"), "10")
        self.assertTrue(ok.header("x-ratelimit-remaining").isdigit(), ok.summary())
        self.assertGreaterEqual(int(ok.header("x-ratelimit-reset")), int(time.time()))
        refused = [r for r in results if r.status == 429][0]
        doc = refused.json()
        self.assertEqual(doc["error"], "Rate limit exceeded", refused.summary())
        self.assertTrue(doc["message"], refused.summary())
        self.assertEqual(doc["request_id"], refused.header("x-request-id"), refused.summary())
        self.assertTrue((refused.header("content-type") or "").startswith("application/json"))
        self.assertIn(refused.header("retry-after"), ("1",), refused.summary())
        self.assertEqual(refused.header("x-ratelimit-remaining"), "0")

        # an X-Forwarded-For from an untrusted peer selects no other bucket
        r = self.get(gw, headers=[("X-Forwarded-For", "203.0.113.9"), ("X-Real-IP", "203.0.113.10")])
        self.assertEqual(r.status, 429, r.summary())

        time.sleep(1.1)
        r = self.get(gw)
        self.assertEqual(r.status, 200, r.summary())
        r = self.get(gw)
        self.assertEqual(r.status, 429, r.summary())

    def test_exempt_and_route_override(self):
        def cfg(p):
            c = self.config(p, {"rpm": 60, "burst": 1}, workers=1)
            c["routes"] = [{"prefix": "/free", "service": "up", "filters": {"ratelimit": {"disabled": True}}},
                           {"prefix": "/", "service": "up"}]
            return c
        gw = self.start_gateway(cfg)
        for _ in range(5):
            r = self.get(gw, "/free/x")
            self.assertEqual(r.status, 200, r.summary())
            self.assertIsNone(r.header("x-ratelimit-limit"))
            self.assertNotEqual(self.get(gw, "/health").status, 429)
        self.assertEqual(self.get(gw).status, 200)
        self.assertEqual(self.get(gw).status, 429)


@unittest.skipUnless(os.access(REDIS_BIN, os.X_OK), "redis-server not found at %s" % REDIS_BIN)
class RedisTest(RateLimitCase):
    def setUp(self):
        super().setUp()
        self.redis = RedisServer(self).start()
        self.addCleanup(self._dump_logs)

    def _dump_logs(self):
        if self._failed():
            for gw in self._gateways:
                sys.stderr.write("\n----- %s log -----\n%s\n" % (gw.proc.name, gw.log(3000)))

    def redis_store(self):
        return {"type": "redis", "host": g.LOCALHOST, "port": self.redis.port, "command_timeout": "250ms"}

    def start_rl(self, rl, workers=2):
        return self.start_gateway(lambda p: self.config(p, rl, workers=workers, store=self.redis_store()))

    def test_three_gateways_share_one_limit(self):
        rl = {"rpm": 1, "burst": 10}  # one token a minute: nothing refills during the test
        gws = [self.start_rl(rl) for _ in range(3)]
        results = run_parallel(300, lambda i: self.get(gws[i % 3]), threads=30)
        st = self.statuses(results)
        self.assertEqual(st.count(200), 10, "statuses: %r" % sorted(set(st)))
        self.assertEqual(st.count(429), 290)
        with self.redis.client() as c:
            keys = c.keys("ratelimit:*")
            self.assertEqual(keys, ["ratelimit:ip:127.0.0.1"])
            ttl = c.command("PTTL", keys[0])
            self.assertTrue(0 < ttl <= 10 * 60 * 1000 + 1000, ttl)

    def test_redis_killed_then_back(self):
        gw = self.start_rl({"rpm": 60, "burst": 5}, workers=1)
        self.assertEqual(self.get(gw).status, 200)
        off = gw.log_size()
        self.redis.kill()
        # under load: never a 5xx, limited locally (5 + what refills)
        t0 = time.monotonic()
        results = run_parallel(40, lambda i: self.get(gw), threads=10)
        took = time.monotonic() - t0
        st = self.statuses(results)
        self.assertEqual([s for s in st if s >= 500], [], st)
        self.assertEqual(set(st) - {200, 429}, set(), st)
        self.assertLessEqual(st.count(200), 5 + int(took) + 1, st)
        self.assertGreaterEqual(st.count(429), 1, st)
        for r in results:
            self.assertIsNotNone(r.header("x-ratelimit-remaining"), r.summary())
        gw.wait_log("store unavailable", offset=off, timeout=5 * g.SLOW)
        # back on Redis once it is there again (the gateway reconnects, a probe finds it)
        self.redis.start()

        def on_redis():
            r = self.get(gw)
            if r.status >= 500:
                self.fail("5xx after the restart: %s" % r.summary())
            with self.redis.client() as c:
                return c.keys("ratelimit:*")
        self.assertTrue(g.wait_until(on_redis, 20 * g.SLOW, interval=0.2), "the limiter did not go back to Redis")
        gw.wait_log("store available again", offset=off, timeout=5 * g.SLOW)

    def test_redis_frozen(self):
        gw = self.start_rl({"rpm": 600, "burst": 50, "store_timeout": "100ms"}, workers=1)
        self.assertEqual(self.get(gw).status, 200)
        base = []
        for _ in range(5):
            t0 = time.monotonic()
            self.get(gw)
            base.append(time.monotonic() - t0)
        self.redis.proc.signal(signal.SIGSTOP)
        try:
            worst = 0.0
            for _ in range(15):
                t0 = time.monotonic()
                r = self.get(gw, timeout=10)
                worst = max(worst, time.monotonic() - t0)
                self.assertEqual(r.status, 200, r.summary())
            sys.stderr.write("frozen Redis: slowest answer %.3fs (normal %.3fs)\n" % (worst, max(base)))
            self.assertLess(worst, 1.0 * g.SLOW)
        finally:
            self.redis.proc.signal(signal.SIGCONT)

        def back():  # the store is probed by requests: one a second per worker
            status = self.get(gw).status
            return status == 200 and "store available again" in gw.log()
        self.assertTrue(g.wait_until(back, 20 * g.SLOW, interval=0.2), "not back on Redis after SIGCONT")


if __name__ == "__main__":
    g.main()
