"""Shared pieces of the Filter ABI integration tests (test_filters, test_reload*, test_wait_disconnect).

The fixture filters are built from tests/fixtures into GW_FIXTURES_DIR as <name>.so:
  abi_major2, abi_minor_newer, no_symbol  refused by the loader (other major / newer minor / no descriptor)
  bad_config                              config_check always fails
  tagger                                  X-Tags / X-Resp-Tags, deny_if_tag_seen, error_if_header, endpoint
  waiter                                  GW_WAIT + timer + resume in a chosen phase
  counter                                 lifecycle log (create / worker_init / worker_fini / destroy)
  swap_a, swap_b                          the same filter "swap" built twice (X-Swap: a | b)
"""

import ctypes
import json
import os
import re
import shutil
import time

import gwtest as g

ABI_MAJOR, ABI_MINOR = g.filter_abi()
ABI_TEXT = "%d.%d" % (ABI_MAJOR, ABI_MINOR)

FIXTURES = ("abi_major2", "abi_minor_newer", "no_symbol", "bad_config", "tagger", "waiter", "counter",
            "swap_a", "swap_b", "bodyguard", "abi10")

# name, version and implemented phases of the loadable fixtures (as in their descriptors)
FIXTURE_INFO = {
    "tagger": ("tagger", "1.3.0", ("request", "response")),
    "waiter": ("waiter", "0.9.1", ("request", "upstream_request", "upstream_response", "response")),
    "counter": ("counter", "1.0.0", ("response",)),
    "bad_config": ("bad_config", "1.0.0", ("request",)),
    "swap_a": ("swap", "1.0.0-a", ("response",)),
    "swap_b": ("swap", "1.0.0-b", ("response",)),
}

PHASES = ("request", "upstream_request", "upstream_response", "response")


def desc_struct_size():
    """sizeof(gw_filter_desc) on this platform: 2+2+4, 3 strings, 8 callbacks, 5 phases, size_t, 8 reserved."""
    p = ctypes.sizeof(ctypes.c_void_p)
    return 8 + 3 * p + 8 * p + 5 * p + ctypes.sizeof(ctypes.c_size_t) + 8 * p


def fx(name):
    return g.fixture_path(name)


def upstream_view(resp):
    """The request headers the upstream saw, from its echo JSON body: [(name, value)]."""
    doc = resp.json()
    if "headers" not in doc:
        raise AssertionError("not an upstream echo body: %r" % resp.body[:300])
    return [tuple(h) for h in doc["headers"]]


def seen_tags(resp):
    """X-Tags as the upstream saw it (all fields joined), or None when absent."""
    vals = g.hall(upstream_view(resp), "x-tags")
    return ",".join(vals) if vals else None


def split_tags(value):
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def tagger(tag, **kw):
    e = {"name": "tagger", "tag": tag}
    e.update(kw)
    return e


def waiter(phase, delay="50ms", **kw):
    e = {"name": "waiter", "phase": phase, "delay": delay}
    e.update(kw)
    return e


def counter(tag, log_path, **kw):
    e = {"name": "counter", "tag": tag, "log_path": log_path}
    e.update(kw)
    return e


def read_counter_log(path):
    """Parsed counter.so lines: [{"event":..., "tag":..., "inst":..., "worker":..., "workers":..., "n":...}]."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for ln in lines:
        if not ln.startswith("counter "):
            continue
        rec = dict(kv.split("=", 1) for kv in ln.split()[1:] if "=" in kv)
        rec["line"] = ln
        out.append(rec)
    return out


def copy_over(src, dst):
    """Replaces dst's content in place (like cp onto an existing file: same inode, truncated and written)."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data)


class FilterTestCase(g.GatewayTestCase):
    """GatewayTestCase with the fixture filters: plugin_dir defaults to GW_FIXTURES_DIR."""

    def setUp(self):
        super().setUp()
        missing = [n for n in FIXTURES if not os.path.exists(fx(n))]
        if missing:
            self.fail("fixture filters missing in %s: %s (build the tests first, or set GW_FIXTURES_DIR)"
                      % (g.GW_FIXTURES_DIR, ", ".join(missing)))

    # -- configs --
    def filter_config(self, port, pipeline, up=None, routes=None, services=None, plugin_dir=True, **extra):
        """base_config with a pipeline; routes default to [/ -> up] (or none when up is None)."""
        if services is None:
            services = [{"name": "up", "targets": [up.url if up else "http://127.0.0.1:9"]}]
        if routes is None:
            routes = [{"prefix": "/", "service": "up"}]
        cfg = g.base_config(port, services, routes, **extra)
        if plugin_dir is True:
            cfg["plugin_dir"] = g.GW_FIXTURES_DIR
        elif plugin_dir:
            cfg["plugin_dir"] = plugin_dir
        cfg["pipeline"] = pipeline
        return cfg

    def start_filters(self, pipeline, up=None, routes=None, **kw):
        return self.start_gateway(lambda p: self.filter_config(p, pipeline, up=up, routes=routes, **kw))

    def check_config(self, cfg, name="check"):
        """gateway -t -c <cfg>; returns (rc, stdout+stderr, config path). Fails on a sanitizer report."""
        path = os.path.join(self.tmp, "%s.yaml" % name)
        g.write_config(path, cfg)
        rc, out, err = g.run_gateway_cli(["-t", "-c", path], cwd=self.tmp)
        text = out + err
        for m in g.SANITIZER_MARKERS:
            self.assertNotIn(m, text, "sanitizer report from gateway -t:\n%s" % text[:6000])
        return rc, text, path

    def check_filter(self, path):
        """gateway --check-filter <path>; returns (rc, stdout+stderr)."""
        rc, out, err = g.run_gateway_cli(["--check-filter", path], cwd=self.tmp)
        text = out + err
        for m in g.SANITIZER_MARKERS:
            self.assertNotIn(m, text, "sanitizer report from --check-filter:\n%s" % text[:6000])
        return rc, text

    def expect_refusal(self, cfg, what, timeout=10.0):
        """Starts the gateway on cfg (a callable port -> cfg) expecting it to exit 1 at once without ever
        listening. Returns its log."""
        port = g.free_port()
        gw = g.Gateway(self.tmp, cfg(port), port=port, wait=False, name="refused%d" % len(self._gateways))
        gw.expect_exit = True
        self._gateways.append(gw)
        rc = gw.proc.wait(timeout * g.SLOW)
        log = gw.log()
        if rc is None:
            listening = g.port_accepts(port)
            self.fail("%s: the gateway should refuse to start (exit 1) but is still running after %.0fs "
                      "(listening: %s); log:\n%s" % (what, timeout * g.SLOW, listening, log))
        self.assertEqual(rc, 1, "%s: expected exit code 1, got %r; log:\n%s" % (what, rc, log))
        return log

    # -- requests --
    def get(self, port, target, headers=(), timeout=5.0, method="GET"):
        return g.simple_request(port, method, target, headers, timeout=timeout * g.SLOW)

    def get_ok(self, port, target, headers=(), timeout=5.0):
        r = self.get(port, target, headers, timeout)
        self.assertEqual(r.status, 200, "GET %s: expected 200, got:\n%s" % (target, r.summary()))
        return r

    def timed_get(self, port, target, headers=(), timeout=5.0):
        t0 = time.monotonic()
        r = self.get(port, target, headers, timeout)
        return r, time.monotonic() - t0

    def info_filters(self, gw):
        """/info "filters" as [(name, version, abi)]."""
        doc = gw.info()
        self.assertIn("filters", doc, "/info has no top-level \"filters\": %s" % json.dumps(doc)[:600])
        return [(f.get("name"), f.get("version"), f.get("abi")) for f in doc["filters"]]

    def assertTags(self, resp, want_up, want_resp=NotImplemented, what=""):
        """Upstream saw X-Tags == want_up (list, or None: absent) and, unless want_resp is left out, the
        client got X-Resp-Tags == want_resp (list or None)."""
        self.assertEqual(resp.status, 200, "%s: expected 200, got:\n%s" % (what, resp.summary()))
        got_up = seen_tags(resp)
        self.assertEqual(split_tags(got_up) if got_up is not None else None, want_up,
                         "%s: X-Tags seen by the upstream %r; response:\n%s" % (what, got_up, resp.summary()))
        if want_resp is not NotImplemented:
            got = resp.header_all("x-resp-tags")
            self.assertEqual(split_tags(",".join(got)) if got else None, want_resp,
                             "%s: X-Resp-Tags %r; response:\n%s" % (what, got, resp.summary()))

    def private_plugin_dir(self, files):
        """A fresh plugin_dir holding copies: files = {"name.so": fixture name}."""
        d = g.new_tmp_dir("plugins-")
        for dst, src in files.items():
            shutil.copyfile(fx(src), os.path.join(d, dst))
        return d

    def counter_problems(self, recs):
        return [r["line"] for r in recs if "problem" in r]


def lines_matching(text, pattern):
    rx = re.compile(pattern)
    return [ln for ln in text.splitlines() if rx.search(ln)]
