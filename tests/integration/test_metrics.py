#!/usr/bin/env python3
# ctest-labels: asan
"""metrics.so (plugins/metrics) in a running gateway with two workers, against real upstream servers:
after mixed traffic (standard and unknown methods, 2xx/4xx/5xx, unmatched paths, paths with quotes,
newlines and unicode, raw and percent-encoded) GET /metrics is Prometheus text 0.0.4 that `promtool check
metrics` parses, gateway_http_requests_total equals what was sent per method, route and status (route
names only, never a raw path), the per-attempt backend counters equal what the upstreams saw, and the JSON
variant (Accept: application/json) parses and agrees; attempts a retry filter discards are counted; the duration summary's quantiles of a known latency
distribution (an upstream that sleeps known times) are within 5 %, and the histogram's buckets count them;
a real prometheus server (started here on a free loopback port with its own temporary storage, stopped by
PID) scrapes the gateway and its query API returns the request count that was sent."""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import urllib.request

import gwtest as g

CONFIG = """\
listeners:
  - address: 127.0.0.1
    port: {port}
workers: 2
timeouts:
  shutdown: 3s
services:
  - name: api-service
    targets:
      - {api_url}
  - name: user-service
    targets:
      - {users_url}
routes:
  - prefix: /api
    name: api
    service: api-service
    strip_prefix: true
  - prefix: /users
    name: users
    service: user-service
    strip_prefix: true
log:
  level: info
pipeline:
  - name: metrics
{metrics}  - name: ratelimit
    rpm: 1000000
    burst: 1000000
  - name: breaker
    max_failures: 1000
"""

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The seed's families, by name and type, and those of the core and the other filters in this pipeline.
FAMILIES = {
    "gateway_uptime_seconds": "gauge",
    "gateway_requests_in_flight": "gauge",
    "gateway_rate_limited_total": "counter",
    "gateway_http_requests_total": "counter",
    "gateway_http_request_duration_ms": "summary",
    "gateway_http_request_duration_seconds": "histogram",
    "gateway_backend_requests_total": "counter",
    "gateway_backend_errors_total": "counter",
    "gateway_circuit_breaker_state": "gauge",
    "gateway_circuit_breaker_trips_total": "counter",
}

# promtool's lint flags the seed's name gateway_http_request_duration_ms (kept: users' dashboards query it);
# that complaint is expected, any other is a failure.
EXPECTED_LINT = ("gateway_http_request_duration_ms metric names should not contain abbreviated units",)

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def unescape(v):
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            n = v[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(n, "\\" + n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_text(body):
    """{(name, frozenset(labels.items())): value}, and {family: type} from the TYPE lines."""
    samples, types = {}, {}
    for line in body.split("\n"):
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        labels, rest = {}, m.group(3) or ""
        while rest:
            lm = _LABEL.match(rest)
            if not lm:
                raise AssertionError("bad labels in %r" % line)
            labels[lm.group(1)] = unescape(lm.group(2))
            rest = rest[lm.end():]
        key = (m.group(1), frozenset(labels.items()))
        if key in samples:
            raise AssertionError("duplicate series %r" % line)
        samples[key] = float(m.group(4))
    return samples, types


def series(samples, name):
    """{frozenset(labels): value} of one metric name."""
    return {lbl: v for (n, lbl), v in samples.items() if n == name}


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def promtool_problems(text):
    """promtool check metrics on the text: (exit code, problems other than the expected lint)."""
    exe = shutil.which("promtool")
    r = subprocess.run([exe, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    return r.returncode, [ln for ln in lines if ln not in EXPECTED_LINT]


def json_samples(doc):
    """The JSON variant as the same {(name, labels): value} as parse_text (quantiles, buckets, sum, count)."""
    out = {}
    for fam in doc["metrics"]:
        name, typ = fam["name"], fam["type"]
        for s in fam["series"]:
            lbl = dict(s["labels"])

            def put(n, extra, v):
                out[(n, frozenset(dict(lbl, **extra).items()))] = float(v)
            if typ in ("counter", "gauge"):
                put(name, {}, s["value"])
            elif typ == "summary":
                for q in s["quantiles"]:
                    put(name, {"quantile": "%g" % q["quantile"]}, q["value"])
                put(name + "_sum", {}, s["sum"])
                put(name + "_count", {}, s["count"])
            else:
                for b in s["buckets"]:
                    put(name + "_bucket", {"le": b["le"] if isinstance(b["le"], str) else "%g" % b["le"]},
                        b["count"])
                put(name + "_sum", {}, s["sum"])
                put(name + "_count", {}, s["count"])
    return out


@unittest.skipUnless(shutil.which("promtool"),
                     "promtool not installed (Debian package prometheus; scripts/install-deps.sh installs it)")
class MetricsTest(g.GatewayTestCase):
    def start(self, metrics_settings=""):
        self.api = self.start_upstream("api")
        self.users = self.start_upstream("users")
        self.gw = self.start_gateway(lambda p: CONFIG.format(port=p, api_url=self.api.url, users_url=self.users.url,
                                                             metrics=metrics_settings))
        return self.gw

    scrapes = 0  # scrapes answered so far

    def scrape(self, accept=None, method="GET"):
        self.scrapes += 1
        headers = [("Accept", accept)] if accept else []
        return g.simple_request(self.gw.port, method, "/metrics", headers=headers, timeout=10 * g.SLOW)

    def scrape_text(self):
        r = self.scrape()
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.header("content-type"), TEXT_TYPE)
        text = r.body.decode("utf-8")
        return text, parse_text(text)

    def settled(self, want_total):
        """Scrapes until the requests of the traffic are all counted (each is counted in its log phase,
        just after its last byte went out, maybe on the other worker); bounded. Returns (text, samples,
        types) of the last scrape."""
        last = [None]

        def done():
            last[0] = self.scrape_text()
            got = sum(v for lbl, v in series(last[0][1][0], "gateway_http_requests_total").items()
                      if dict(lbl)["route"] != "/metrics")
            return got >= want_total
        g.wait_until(done, 10 * g.SLOW, interval=0.05)
        text, (samples, types) = last[0]
        return text, samples, types

    def test_exposition_after_mixed_traffic(self):
        self.start()
        sent = {}  # (method, route, status) -> count, from the answers the client got
        cases = [
            ("GET", "/api/echo", "api"),
            ("GET", "/api/echo?x=%22quoted%22&y=a%0Ab", "api"),
            ("GET", "/api/caf%C3%A9/%E2%82%AC", "api"),
            ("GET", "/api/quote%22in%22path/%0Anewline", "api"),
            ("POST", "/api/echo?status=201", "api"),
            ("PUT", "/api/status/503", "api"),
            ("DELETE", "/users/echo?status=204", "users"),
            ("PATCH", "/users/status/404", "users"),
            ("BREW", "/users/echo", "users"),
            ("get", "/users/echo", "users"),
            ("GET", "/nowhere/%22x%22", "unmatched"),
            ("GET", "/\xc3\xa9t\xc3\xa9/\xe2\x82\xac", None),  # raw UTF-8 in the target
            ("GET", '/api/"raw"quote', "api"),  # a raw quote passes (as nginx lets it)
            ("OPTIONS", "/api/echo", "api"),
            ("HEAD", "/users/echo", "users"),
        ]
        std = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
        upstream_hits = {"api-service": 0, "user-service": 0}
        upstream_errors = {"api-service": 0, "user-service": 0}
        malformed = 0  # heads refused before routing: no filter sees them, the core counts them
        for rep in range(3):
            for method, target, route in cases:
                raw = g.request_bytes(method, target)
                with g.RawConn(self.gw.port, timeout=10 * g.SLOW) as c:
                    c.send(raw)
                    r = c.read_response(method=method, timeout=10 * g.SLOW)
                if route is None:  # raw bytes a request target may not hold: refused unparsed, 400
                    self.assertEqual(r.status, 400, r.summary())
                    malformed += 1
                    continue
                if route != "unmatched":
                    svc = "api-service" if route == "api" else "user-service"
                    upstream_hits[svc] += 1
                    upstream_errors[svc] += r.status >= 500
                else:
                    self.assertIn(r.status, (400, 404), r.summary())
                key = (method if method in std else "OTHER", route, str(r.status))
                sent[key] = sent.get(key, 0) + 1
        self.assertEqual(sent[("GET", "unmatched", "404")], 3)
        self.assertEqual(sent[("OTHER", "users", "200")], 6)  # BREW and lower-case get
        self.assertEqual(sent[("PUT", "api", "503")], 3)

        text, samples, types = self.settled(sum(sent.values()))
        rc, problems = promtool_problems(text)
        self.assertEqual(problems, [], "promtool check metrics (exit %d):\n%s" % (rc, text[:3000]))
        self.assertIn(rc, (0, 3))  # 3: lint problems only (the expected one), never a parse error (1)
        for fam, typ in FAMILIES.items():
            self.assertEqual(types.get(fam), typ, "family %s" % fam)

        got = {(dict(l)["method"], dict(l)["route"], dict(l)["status"]): v
               for l, v in series(samples, "gateway_http_requests_total").items() if dict(l)["route"] != "/metrics"}
        self.assertEqual(got, sent)
        self.assertEqual(value(samples, "gateway_http_malformed_requests_total", status="400"), malformed)
        self.assertEqual(malformed, 3)
        # labels are bounded: no path ever becomes a label value
        for (name, lbl), _ in samples.items():
            for k, v in lbl:
                self.assertNotIn("/api/", v, "%s{%s=%r}" % (name, k, v))
                self.assertNotIn('"', v)
                self.assertNotIn("\n", v)
        # the core counts every upstream attempt; errors are 5xx answers here
        up_seen = {"api-service": len(self.api.requests()), "user-service": len(self.users.requests())}
        self.assertEqual(up_seen, upstream_hits)
        for svc in upstream_hits:
            self.assertEqual(value(samples, "gateway_backend_requests_total", service=svc), upstream_hits[svc], svc)
            self.assertEqual(value(samples, "gateway_backend_errors_total", service=svc) or 0, upstream_errors[svc])
        self.assertEqual(value(samples, "gateway_requests_in_flight"), 1)  # the scrape itself
        self.assertGreater(value(samples, "gateway_uptime_seconds"), 0)
        self.assertLess(value(samples, "gateway_uptime_seconds"), 600)
        n = sum(sent.values())
        self.assertEqual(value(samples, "gateway_http_request_duration_seconds_bucket", le="+Inf"),
                         value(samples, "gateway_http_request_duration_seconds_count"))
        scrapes_before = sum(v for l, v in series(samples, "gateway_http_requests_total").items()
                             if dict(l)["route"] == "/metrics")
        self.assertEqual(value(samples, "gateway_http_request_duration_seconds_count"), n + scrapes_before)
        self.assertEqual(value(samples, "gateway_http_request_duration_ms_count"), n + scrapes_before)
        for q in ("0.5", "0.95", "0.99"):
            self.assertIsNotNone(value(samples, "gateway_http_request_duration_ms", quantile=q), q)

        # JSON: parses, and agrees with the text on every counter (scraped again, after one more scrape)
        r = self.scrape("application/json")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(r.header("vary"), "Accept")
        js = json_samples(json.loads(r.body))
        for (name, lbl), v in samples.items():
            if types.get(name) != "counter" or dict(lbl).get("route") == "/metrics":
                continue
            self.assertEqual(js.get((name, lbl)), v, "%s %s" % (name, dict(lbl)))
        self.assertEqual(set(k for k in js if k[0] == "gateway_http_request_duration_seconds_bucket"),
                         set(k for k in samples if k[0] == "gateway_http_request_duration_seconds_bucket"))
        # what Prometheus itself sends gets text; HEAD has the headers and no body; POST is refused
        r = self.scrape("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
        self.assertEqual(r.header("content-type"), TEXT_TYPE)
        r = self.scrape(method="HEAD")
        self.assertEqual((r.status, r.body, r.header("content-type")), (200, b"", TEXT_TYPE))
        r = self.scrape(method="POST")
        self.assertErrorJson(r, 405, "Method Not Allowed")
        self.assertEqual(r.header("allow"), "GET, HEAD")

    def test_backend_counters_count_every_attempt(self):
        """retry.so (after metrics) retries 503s: every attempt is in the backend counters, the client's one
        request once in gateway_http_requests_total with the status it finally got."""
        self.api = self.start_upstream("api")
        self.users = self.start_upstream("users")
        retry = ("  - name: retry\n    max_retries: 2\n    initial_delay_ms: 1\n    max_delay_ms: 5\n"
                 "    budget: false\n")
        self.gw = self.start_gateway(lambda p: CONFIG.format(port=p, api_url=self.api.url,
                                                             users_url=self.users.url, metrics="") + retry)
        for _ in range(4):
            st, h, _ = g.http_request(self.gw.port, "GET", "/api/status/503")
            self.assertEqual(st, 503)
            self.assertEqual(h.get("x-retry-count"), "2")
        for _ in range(3):
            self.assertEqual(g.http_request(self.gw.port, "GET", "/users/echo")[0], 200)
        _, samples, _ = self.settled(7)
        self.assertEqual(len(self.api.requests()), 12)
        self.assertEqual(value(samples, "gateway_backend_requests_total", service="api-service"), 12)
        self.assertEqual(value(samples, "gateway_backend_errors_total", service="api-service"), 12)
        self.assertEqual(value(samples, "gateway_backend_requests_total", service="user-service"), 3)
        self.assertEqual(value(samples, "gateway_backend_errors_total", service="user-service") or 0, 0)
        self.assertEqual(value(samples, "gateway_http_requests_total", method="GET", route="api", status="503"), 4)
        self.assertEqual(value(samples, "gateway_http_requests_total", method="GET", route="users", status="200"), 3)

    def test_quantiles_of_known_latencies(self):
        # buckets around the three latencies; the summary's quantiles from the sketch
        self.start("    buckets: [0.05, 0.15, 0.3, 0.6, 1]\n")
        # 100 requests: 40 of 100 ms, 50 of 200 ms, 10 of 400 ms. The sketch's q-quantile is the observation
        # of rank floor(q * (n - 1)): p50 is rank 49 (200 ms), p95 rank 94 and p99 rank 98 (400 ms).
        plan = [100] * 40 + [200] * 50 + [400] * 10
        errors = []
        lock = threading.Lock()
        work = list(plan)

        def client():
            while True:
                with lock:
                    if not work:
                        return
                    ms = work.pop()
                st, _, body = g.http_request(self.gw.port, "GET", "/api/slow?ms=%d&size=10" % ms,
                                             timeout=30 * g.SLOW)
                if st != 200:
                    with lock:
                        errors.append((ms, st, body[:200]))
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertFalse(any(t.is_alive() for t in threads), "clients still running after 120 s")
        self.assertEqual(errors, [])
        # Each request is counted in its log phase, just after its last byte went out: scrape until all 100
        # are in (bounded). Earlier scrapes are requests too, in the summary (each well under 50 ms): they
        # are the fastest, so they shift the ranks by as many places, which the plateaus absorb.
        time.sleep(0.1)
        for attempt in range(20):
            extra = self.scrapes
            text, (samples, _) = self.scrape_text()
            if value(samples, "gateway_http_request_duration_seconds_count") >= 100 + extra:
                break
            time.sleep(0.1)
        self.assertLessEqual(extra, 3)
        want = {"0.5": 200, "0.95": 400, "0.99": 400}
        got = {q: value(samples, "gateway_http_request_duration_ms", quantile=q) for q in want}
        sys.stderr.write("quantiles of 40x100 ms, 50x200 ms, 10x400 ms (+%d scrapes): %s\n" % (extra, got))
        for q, ms in want.items():
            self.assertLessEqual(abs(got[q] - ms), 0.05 * ms, "p%s = %s ms, want %d ms within 5 %%" % (q, got[q], ms))
        count = value(samples, "gateway_http_request_duration_ms_count")
        self.assertEqual(count, 100 + extra)
        total = value(samples, "gateway_http_request_duration_ms_sum")
        self.assertLessEqual(abs(total - sum(plan)), 0.05 * sum(plan), total)
        # the histogram: 0 under 50 ms (but the scrapes), 40 under 150 ms, 90 under 300 ms, 100 under 600 ms
        b = {le: value(samples, "gateway_http_request_duration_seconds_bucket", le=le)
             for le in ("0.05", "0.15", "0.3", "0.6", "1", "+Inf")}
        self.assertEqual(b, {"0.05": extra, "0.15": 40 + extra, "0.3": 90 + extra, "0.6": 100 + extra,
                             "1": 100 + extra, "+Inf": 100 + extra})
        s = value(samples, "gateway_http_request_duration_seconds_sum")
        self.assertAlmostEqual(s * 1000, total, delta=0.001 * total)

    def test_prometheus_server_scrapes_the_gateway(self):
        exe = shutil.which("prometheus")
        if not exe:
            self.skipTest("prometheus not installed (Debian package prometheus; scripts/install-deps.sh)")
        self.start()
        sent = 37
        for i in range(sent):
            st, _, _ = g.http_request(self.gw.port, "GET", "/api/echo?i=%d" % i)
            self.assertEqual(st, 200)
        pdir = g.new_tmp_dir("prometheus-")
        web = g.free_port()
        conf = os.path.join(pdir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: gateway\n    metrics_path: /metrics\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % self.gw.port)
        prom = self.start_proc([exe, "--config.file=" + conf, "--storage.tsdb.path=" + os.path.join(pdir, "data"),
                                "--web.listen-address=127.0.0.1:%d" % web, "--log.level=warn",
                                "--storage.tsdb.retention.time=1h"], "prometheus", cwd=pdir)
        base = "http://127.0.0.1:%d" % web

        def query(expr):
            url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    doc = json.loads(r.read())
            except OSError:
                return None
            if doc.get("status") != "success":
                return None
            return doc["data"]["result"]

        expr = 'gateway_http_requests_total{job="gateway",method="GET",route="api",status="200"}'
        last = [None]

        def scraped():
            if not prom.alive():
                return True
            last[0] = query(expr)
            return last[0] and float(last[0][0]["value"][1]) == sent
        g.wait_until(scraped, 60 * g.SLOW, interval=0.5)
        res = last[0]
        self.assertTrue(prom.alive(), "prometheus exited:\n%s" % prom.log())
        self.assertTrue(res, "prometheus did not return %s within %ds; its log:\n%s"
                        % (expr, 60 * g.SLOW, prom.log()))
        self.assertEqual(len(res), 1, res)
        self.assertEqual(float(res[0]["value"][1]), sent)
        self.assertEqual(res[0]["metric"]["instance"], "127.0.0.1:%d" % self.gw.port)
        up = query('up{job="gateway"}')
        self.assertEqual(float(up[0]["value"][1]), 1.0)
        # the summary and the histogram arrive as such: a quantile series and a histogram_quantile answer
        q = query('gateway_http_request_duration_ms{job="gateway",quantile="0.99"}')
        self.assertTrue(q and len(q) == 1, q)
        h = g.wait_until(lambda: query('histogram_quantile(0.5, rate(gateway_http_request_duration_seconds_bucket'
                                       '{job="gateway"}[30s]))'), 20 * g.SLOW, interval=0.5)
        self.assertTrue(h, "no histogram_quantile answer")
        self.assertEqual(prom.stop(), 0, prom.log())
        # its scrapes reached the gateway as GET /metrics, answered 200 (this test scraped nothing itself)
        samples = self.scrape_text()[1][0]
        self.assertGreaterEqual(value(samples, "gateway_http_requests_total", method="GET", route="/metrics",
                                      status="200"), 2)


if __name__ == "__main__":
    g.main()
