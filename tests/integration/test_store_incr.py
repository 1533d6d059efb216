#!/usr/bin/env python3
# ctest-labels: asan
"""host->store_incr in a running gateway, through the quota fixture filter (tests/fixtures/quota.c: one
store_incr per request on the client's counter, 429 past the limit). 50 concurrent requests with a limit of
7 and `workers: 2`: exactly 7 pass and the counts handed out are 1..50, each once, on the embedded store
and on a real redis-server (started here on a free 127.0.0.1 port, stopped by PID; skipped when missing);
two gateways on one Redis share one counter exactly; the counter's TTL is set when it is created."""

import os
import unittest

import gwfilters as gf
import gwtest as g
from test_ratelimit import REDIS_BIN, RedisServer, run_parallel

LIMIT = 7
N = 50


class QuotaCase(gf.FilterTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(gf.fx("quota")):
            self.fail("quota fixture not built")
        self.up = self.start_upstream("up")

    def start_quota(self, store, window="1h"):
        pipeline = [{"name": "quota", "limit": LIMIT, "window": window}]
        return self.start_filters(pipeline, up=self.up, workers=2, store=store)

    def burst(self, gws, n=N):
        """n requests at once, spread over the gateways; returns the responses."""
        def one(i):
            return g.simple_request(gws[i % len(gws)].port, "GET", "/echo/q%d" % i, timeout=10.0 * g.SLOW)
        out = run_parallel(n, one, threads=n)
        bad = [r for r in out if isinstance(r, Exception)]
        self.assertFalse(bad, "requests failed: %r" % bad[:3])
        return out

    def assertExact(self, resps, limit=LIMIT):
        st = [r.status for r in resps]
        self.assertEqual(st.count(200), limit, st)
        self.assertEqual(st.count(429), len(resps) - limit, st)
        counts = sorted(int(r.header("x-quota-count")) for r in resps)
        self.assertEqual(counts, list(range(1, len(resps) + 1)), "every count handed out exactly once")
        for r in resps:
            if r.status == 200:
                self.assertLessEqual(int(r.header("x-quota-count")), limit, r.summary())


class EmbeddedTest(QuotaCase):
    def test_exactly_n_of_50(self):
        gw = self.start_quota({"type": "embedded", "path": os.path.join(self.tmp, "data")})
        self.assertExact(self.burst([gw]))
        self.assertEqual(len(self.up.requests()), LIMIT)  # the refused ones never reached it


@unittest.skipUnless(os.access(REDIS_BIN, os.X_OK), "redis-server not found at %s" % REDIS_BIN)
class RedisTest(QuotaCase):
    def setUp(self):
        super().setUp()
        self.redis = RedisServer(self).start()

    def store(self):
        return {"type": "redis", "host": g.LOCALHOST, "port": self.redis.port}

    def test_exactly_n_of_50(self):
        gw = self.start_quota(self.store(), window="10m")
        self.assertExact(self.burst([gw]))
        with self.redis.client() as c:
            keys = c.keys("quota:*")
            self.assertEqual(len(keys), 1, keys)
            pttl = c.command("PTTL", keys[0])
            self.assertTrue(0 < pttl <= 600000, pttl)  # set when the counter was created

    def test_two_gateways_share_the_count(self):
        a = self.start_quota(self.store())
        b = self.start_quota(self.store())
        self.assertExact(self.burst([a, b]))


if __name__ == "__main__":
    g.main()
