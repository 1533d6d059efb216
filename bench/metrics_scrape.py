#!/usr/bin/env python3
"""bench/metrics_scrape.py - what a GET /metrics costs at 10 routes x 10 statuses x 5 methods.

Usage: bench/metrics_scrape.py BUILD_DIR [SCRAPES]      (BUILD_DIR holds `gateway` and `plugins/metrics.so`)

Starts, on 127.0.0.1 and ports chosen at run time, an upstream (tests/integration/upstream.py) and a gateway
(`workers: 2`, 10 routes /r0../r9 to it, `pipeline: [metrics]`), sends every combination of route, method
(GET POST PUT DELETE PATCH) and upstream status (200 201 204 301 400 401 404 500 502 503) twice, so that
gateway_http_requests_total has 500 series (each on both workers' slots, merged at the scrape), then
scrapes SCRAPES times (default 500) text, then as many JSON, over one keep-alive connection, and prints: the
bytes of each body, the wall time per scrape (median and p99, client side), and the gateway's CPU time
(all its threads, from /proc/PID/task/*/schedstat) per scrape, next to the CPU time per request of GET /health over the
same connection for scale. Every process started here is stopped by PID at the end."""

import http.client
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

ROUTES = ["r%d" % i for i in range(10)]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
STATUSES = [200, 201, 204, 301, 400, 401, 404, 500, 502, 503]


def cpu_ns(pid):
    """CPU time of every thread of pid so far, in ns (the first field of /proc/PID/task/TID/schedstat)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total


def timed(conn, method, path, headers=None):
    t0 = time.perf_counter()
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    took = time.perf_counter() - t0
    if r.status != 200:
        raise SystemExit("%s %s: %d %r" % (method, path, r.status, body[:200]))
    return took, body


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    build = os.path.abspath(sys.argv[1])
    scrapes = int(sys.argv[2]) if len(sys.argv) == 3 else 500
    os.environ.setdefault("GW_BIN", os.path.join(build, "gateway"))
    import gwtest as g

    tmp = g.new_tmp_dir("bench-metrics-")
    up = g.Upstream(tmp, "upstream")
    port = g.free_port()
    routes = [{"prefix": "/" + r, "name": r, "service": "up", "strip_prefix": True} for r in ROUTES]
    cfg = g.base_config(port, [{"name": "up", "targets": [up.url]}], routes, workers=2,
                        pipeline=[{"name": "metrics"}], log={"level": "warn"})
    gw = g.Gateway(tmp, cfg, port=port)
    try:
        conn = http.client.HTTPConnection(g.LOCALHOST, port, timeout=30)
        conn2 = http.client.HTTPConnection(g.LOCALHOST, port, timeout=30)
        sent = 0
        for rep in range(2):
            c = conn if rep == 0 else conn2  # two connections: the kernel may put them on both workers
            for r in ROUTES:
                for m in METHODS:
                    for st in STATUSES:
                        c.request(m, "/%s/status/%d" % (r, st))
                        c.getresponse().read()
                        sent += 1
        _, text = timed(conn, "GET", "/metrics")
        series = [ln for ln in text.decode().split("\n") if ln.startswith("gateway_http_requests_total{")]
        if len(series) != 500:
            raise SystemExit("expected 500 series of gateway_http_requests_total, got %d" % len(series))
        # a warm-up, then the measured scrapes, text and JSON in turn
        for _ in range(20):
            timed(conn, "GET", "/metrics")
        walls, sizes, cpu = {}, {}, {}
        for kind in ("text", "json"):
            hdrs = {"Accept": "application/json"} if kind == "json" else None
            walls[kind] = []
            c0 = cpu_ns(gw.pid)
            for i in range(scrapes):
                took, body = timed(conn, "GET", "/metrics", hdrs)
                walls[kind].append(took)
                sizes[kind] = len(body)
            cpu[kind] = (cpu_ns(gw.pid) - c0) / 1e9 / scrapes
        health = 5 * scrapes
        h0 = cpu_ns(gw.pid)
        for _ in range(health):
            timed(conn, "GET", "/health")
        cpu_health = (cpu_ns(gw.pid) - h0) / 1e9 / health
        print("series: %d of gateway_http_requests_total (%d requests sent; 2 workers); %d scrapes of each kind"
              % (len(series), sent, scrapes))
        for kind in ("text", "json"):
            w = sorted(walls[kind])
            print("%-4s  %6d bytes   wall per scrape: median %.2f ms, p99 %.2f ms   gateway CPU per scrape %.0f us"
                  " = %.0f x GET /health" % (kind, sizes[kind], 1000 * statistics.median(w),
                                            1000 * w[int(0.99 * (len(w) - 1))], 1e6 * cpu[kind],
                                            cpu[kind] / cpu_health))
        print("GET /health: gateway CPU per request %.1f us (%d requests)" % (1e6 * cpu_health, health))
        conn.close()
        conn2.close()
    finally:
        gw.stop()
        up.stop()


if __name__ == "__main__":
    main()
