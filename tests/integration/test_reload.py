#!/usr/bin/env python3
"""SIGHUP under continuous load: 20 reloads, alternating between two configs that differ in a tagger's
tag, while 8 keep-alive connections send at least 10,000 requests (a second run: 3,333 requests through
a pipeline that also waits, GW_WAIT, before and after the upstream). No request may fail, no connection may
be closed or reset, every response carries one of the two tags (the same one on the request side, as the
upstream saw it, and on the response side), and the generation grows by exactly 20. Not in the sanitizer
set (label asan): too slow there; test_reload_cases.py covers reloads under ASan."""

import threading
import time

import gwfilters as gf
import gwtest as g
from gwfilters import tagger, waiter

CONNS = 8
MIN_REQUESTS = 10000
RELOADS = 20
TAGS = ("alpha", "beta")


class Client(threading.Thread):
    """One keep-alive connection sending GETs back to back until told to stop."""

    def __init__(self, port, idx, stop):
        super().__init__(daemon=True)
        self.port, self.idx, self.stop = port, idx, stop
        self.count = 0
        self.per_tag = {t: 0 for t in TAGS}
        self.errors = []       # (request number, what)
        self.closed = None     # why the connection ended early, if it did
        self.connects = 0

    def run(self):
        try:
            conn = g.RawConn(self.port, timeout=10 * g.SLOW)
            self.connects += 1
        except OSError as e:
            self.closed = "connect: %r" % e
            return
        try:
            while not self.stop.is_set() and len(self.errors) < 20:
                n = self.count
                try:
                    conn.send(g.request_bytes("GET", "/api/load/%d/%d" % (self.idx, n)))
                    r = conn.read_response(timeout=10 * g.SLOW)
                except (g.ConnClosed, OSError) as e:
                    self.closed = "request %d: %s: %s" % (n, type(e).__name__, e)
                    return
                self.count += 1
                self.check(n, r)
        finally:
            conn.close()

    def check(self, n, r):
        if r.status != 200:
            self.errors.append((n, "status %d: %s" % (r.status, r.summary(300))))
            return
        resp_tags = gf.split_tags(",".join(r.header_all("x-resp-tags")))
        try:
            up_tags = gf.split_tags(gf.seen_tags(r))
        except (AssertionError, ValueError) as e:
            self.errors.append((n, "body: %s" % e))
            return
        if len(resp_tags) != 1 or resp_tags[0] not in TAGS:
            self.errors.append((n, "X-Resp-Tags %r: %s" % (resp_tags, r.summary(300))))
        elif up_tags != resp_tags:
            self.errors.append((n, "upstream saw X-Tags %r but the response has X-Resp-Tags %r (one request, "
                                   "two generations?)" % (up_tags, resp_tags)))
        else:
            self.per_tag[resp_tags[0]] += 1


class ReloadUnderLoadTest(gf.FilterTestCase):
    def test_20_reloads_under_load(self):
        self.run_load(lambda tag: [tagger(tag)], MIN_REQUESTS)

    def test_20_reloads_under_load_with_waits(self):
        # requests are in GW_WAIT on both sides of the upstream while generations change under them
        self.run_load(lambda tag: [waiter("request", "2ms"), tagger(tag), waiter("upstream_response", "2ms")],
                      MIN_REQUESTS // 3)

    def run_load(self, pipeline, min_requests):
        up = self.start_upstream()
        routes = [{"prefix": "/api", "service": "up"}]

        def cfg(port, tag):
            return self.filter_config(port, pipeline(tag), up=up, routes=routes, workers=2)

        gw = self.start_gateway(lambda p: cfg(p, TAGS[0]))
        self.assertEqual(gw.info().get("generation"), 1)
        stop = threading.Event()
        clients = [Client(gw.port, i, stop) for i in range(CONNS)]
        self.addCleanup(stop.set)
        for c in clients:
            c.start()
        total = lambda: sum(c.count for c in clients)  # noqa: E731
        broken = lambda: [c for c in clients if c.closed or c.errors]  # noqa: E731

        reload_log = []
        t0 = time.monotonic()
        try:
            for i in range(1, RELOADS + 1):
                # spread the reloads over the run: reload i once i/(RELOADS+1) of the requests were made
                want = min_requests * i // (RELOADS + 1)
                got = g.wait_until(lambda: total() >= want or broken(), 60 * g.SLOW, interval=0.005)
                self.assertTrue(got, "load stalled at %d requests (waiting for %d)" % (total(), want))
                if broken():
                    break
                tag = TAGS[i % 2]
                ok, info = gw.reload(cfg(gw.port, tag))
                reload_log.append((i, total(), ok, info.get("generation")))
                self.assertTrue(ok, "reload %d failed; /info %r; log:\n%s" % (i, info, gw.log(4000)))
                self.assertEqual(info.get("generation"), i + 1, "reload %d: /info %r" % (i, info))
            g.wait_until(lambda: total() >= min_requests or broken(), 120 * g.SLOW, interval=0.01)
        finally:
            stop.set()
            for c in clients:
                c.join(30)
        took = time.monotonic() - t0

        problems = []
        for c in clients:
            if c.closed:
                problems.append("connection %d closed after %d requests: %s" % (c.idx, c.count, c.closed))
            for n, what in c.errors[:5]:
                problems.append("connection %d request %d: %s" % (c.idx, n, what))
            if c.connects != 1:
                problems.append("connection %d connected %d times" % (c.idx, c.connects))
        self.assertEqual(problems, [], "after %d requests and %d reloads (%r)" % (total(), len(reload_log),
                                                                                reload_log))
        self.assertGreaterEqual(total(), min_requests)
        self.assertEqual(len(reload_log), RELOADS)
        by_tag = {t: sum(c.per_tag[t] for c in clients) for t in TAGS}
        self.assertTrue(all(by_tag.values()), "both tags should have been served: %r" % by_tag)
        self.assertTrue(all(c.count > 0 for c in clients), [c.count for c in clients])
        info = gw.info()
        self.assertEqual(info.get("generation"), RELOADS + 1, info)
        self.assertEqual(info.get("reloads"), {"success": RELOADS, "failure": 0}, info)
        self.assertIsNotNone(gw.wait_log(r"reload.*generation %d\b" % (RELOADS + 1), 0, timeout=3),
                             "no 'reload ... generation %d' line" % (RELOADS + 1))
        # the last config is in force for new requests
        last = TAGS[RELOADS % 2]
        r = self.get(gw.port, "/api/final")
        self.assertTags(r, [last], [last], "after the last reload")
        rc = gw.stop(term_timeout=10 * g.SLOW)
        self.assertEqual(rc, 0, gw.log(4000))
        print("%d requests over %d connections, %d reloads in %.1fs (%r)"
              % (total(), CONNS, RELOADS, took, by_tag))


if __name__ == "__main__":
    g.main()
