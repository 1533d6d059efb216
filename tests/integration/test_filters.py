#!/usr/bin/env python3
# ctest-labels: asan
"""Filter ABI: --check-filter, config checks (gateway -t), refusal at start, the search path, pipeline order,
enabled: false, per-route settings, phase results (RESPOND / ERROR / WAIT in every phase), the lifecycle
calls, /info. Uses the fixture filters from tests/fixtures (see gwfilters.py)."""

import hashlib
import json
import os
import re
import shutil
import threading
import time

import gwfilters as gf
import gwtest as g
from gwfilters import counter, fx, tagger, waiter


def assertMentions(tc, text, what, context=""):
    """text contains `what`; a version like "2.0" must stand alone (not inside "2.0.0" or "12.0")."""
    if re.fullmatch(r"\d+\.\d+", what):
        tc.assertRegex(text, r"(?<![\d.])%s(?!\.?\d)" % re.escape(what),
                       "%s: expected version %s in:\n%s" % (context, what, text))
    else:
        tc.assertIn(what, text, "%s: expected %r in:\n%s" % (context, what, text))


# ------------------------------------------------------------------------------------------------------
# gateway --check-filter


class CheckFilterTest(gf.FilterTestCase):
    def test_compatible_fixtures_described(self):
        size = gf.desc_struct_size()
        for fixture, (name, version, phases) in sorted(gf.FIXTURE_INFO.items()):
            with self.subTest(fixture=fixture):
                rc, out = self.check_filter(fx(fixture))
                self.assertEqual(rc, 0, "--check-filter %s.so: expected exit 0 (compatible), got %d:\n%s"
                                 % (fixture, rc, out))
                self.assertRegex(out, r"(?<![\w-])%s(?![\w-])" % re.escape(name), "name missing:\n" + out)
                self.assertIn(version, out, "version missing:\n" + out)
                self.assertRegex(out, r"(?<![\d.])%s(?![\d.])" % re.escape(gf.ABI_TEXT),
                                 "ABI major.minor missing:\n" + out)
                self.assertRegex(out, r"(?<!\d)%d(?!\d)" % size, "struct size %d missing:\n%s" % (size, out))
                for ph in phases:
                    self.assertRegex(out, r"(?<![A-Za-z_])(on_)?%s(?![A-Za-z_])" % ph,
                                     "implemented phase %r not listed:\n%s" % (ph, out))
                self.assertNotRegex(out.lower(), r"\brefus", "compatible filter reported as refused:\n" + out)

    def check_refused(self, fixture, must_contain):
        path = fx(fixture)
        rc, out = self.check_filter(path)
        self.assertEqual(rc, 1, "--check-filter %s.so: expected exit 1 (refused), got %d:\n%s" % (fixture, rc, out))
        self.assertIn(os.path.basename(path), out, "the refusal should name the file:\n" + out)
        for s in must_contain:
            assertMentions(self, out, s)
        return out

    def test_abi_major_mismatch_refused(self):
        self.check_refused("abi_major2", ["%d.0" % (gf.ABI_MAJOR + 1), gf.ABI_TEXT])

    def test_abi_minor_newer_refused(self):
        self.check_refused("abi_minor_newer", ["%d.%d" % (gf.ABI_MAJOR, gf.ABI_MINOR + 1), gf.ABI_TEXT])

    def test_missing_descriptor_symbol_refused(self):
        self.check_refused("no_symbol", ["gw_filter_descriptor"])

    def test_not_a_shared_object_refused(self):
        bogus = os.path.join(self.tmp, "bogus.so")
        with open(bogus, "w") as f:
            f.write("this is not an ELF file\n")
        rc, out = self.check_filter(bogus)
        self.assertEqual(rc, 1, "text file: expected exit 1, got %d:\n%s" % (rc, out))
        self.assertIn("bogus.so", out, out)
        missing = os.path.join(self.tmp, "does-not-exist.so")
        rc, out = self.check_filter(missing)
        self.assertEqual(rc, 1, "missing file: expected exit 1, got %d:\n%s" % (rc, out))
        self.assertIn("does-not-exist.so", out, out)


# ------------------------------------------------------------------------------------------------------
# gateway -t and refusal at start


class ConfigCheckTest(gf.FilterTestCase):
    def cfg(self, pipeline, routes=None, **kw):
        return self.filter_config(g.free_port(), pipeline, routes=routes, **kw)

    @staticmethod
    def line_of(path, needle, nth=0):
        with open(path) as f:
            hits = [i + 1 for i, ln in enumerate(f.read().splitlines()) if needle in ln]
        return hits[nth]

    def test_good_pipeline_ok(self):
        log = os.path.join(self.tmp, "counter.log")
        routes = [{"prefix": "/", "service": "up", "filters": {"tagger": {"tag": "r"}, "waiter": {"delay": "1s"}}}]
        rc, out, path = self.check_config(self.cfg([tagger("a"), waiter("response"), counter("c1", log),
                                                    {"name": "swap", "file": fx("swap_a")}], routes=routes))
        self.assertEqual(rc, 0, "gateway -t on a good pipeline: expected 0, got %d:\n%s" % (rc, out))
        # -t may or may not create instances to run route_check; whatever it creates it must destroy, and no
        # worker ever starts
        recs = gf.read_counter_log(log)
        text = "\n".join(r["line"] for r in recs)
        self.assertEqual([r["inst"] for r in recs if r["event"] == "create"],
                         [r["inst"] for r in recs if r["event"] == "destroy"], text)
        self.assertEqual([r for r in recs if r["event"].startswith("worker")], [], text)
        self.assertEqual(self.counter_problems(recs), [], text)

    def test_bad_config_reason_reported_with_position(self):
        rc, out, path = self.check_config(self.cfg([tagger("a"), {"name": "bad_config", "reason": "no-way"}]))
        self.assertEqual(rc, 1, "gateway -t with bad_config: expected 1, got %d:\n%s" % (rc, out))
        line = self.line_of(path, "reason:")
        self.assertRegex(out, r"%s:%d:\d+: .*bad_config: refused: no-way" % (re.escape(os.path.basename(path)), line),
                         "expected '<file>:%d:<col>: ... bad_config: refused: no-way' in:\n%s" % (line, out))

    def test_bad_config_without_reason_points_at_entry(self):
        rc, out, path = self.check_config(self.cfg([{"name": "bad_config"}]))
        self.assertEqual(rc, 1, out)
        line = self.line_of(path, "name: bad_config")
        self.assertRegex(out, r"%s:%d:\d+: .*bad_config: this filter refuses every configuration"
                         % (re.escape(os.path.basename(path)), line), out)

    def test_disabled_filter_not_checked(self):
        rc, out, _ = self.check_config(self.cfg([tagger("a"), {"name": "bad_config", "enabled": False}]))
        self.assertEqual(rc, 0, "a disabled bad_config must not be checked; got %d:\n%s" % (rc, out))

    def test_filter_setting_errors(self):
        cases = [
            ([tagger("bad tag!")], "tag: invalid character"),
            ([tagger("a", colour="red")], "colour"),
            ([{"name": "tagger"}], "`tag` is required"),
            ([waiter("log")], "waiter: phase: expected"),
            ([waiter("request", delay="soon")], "'soon'"),
            ([counter("c", "counter.log", fail_create="maybe")], "'maybe'"),
        ]
        for pipeline, want in cases:
            with self.subTest(want=want):
                rc, out, path = self.check_config(self.cfg(pipeline))
                self.assertEqual(rc, 1, "expected exit 1 for %r, got %d:\n%s" % (pipeline, rc, out))
                self.assertRegex(out, r"%s:\d+:\d+: " % re.escape(os.path.basename(path)),
                                 "no file:line:col in:\n" + out)
                self.assertIn(want, out)

    def test_route_settings_checked(self):
        routes = [{"prefix": "/ok", "service": "up", "filters": {"tagger": {"tag": "r1"}}},
                  {"prefix": "/bad", "service": "up", "filters": {"tagger": {"tag": "no good"}}}]
        rc, out, path = self.check_config(self.cfg([tagger("a")], routes=routes))
        self.assertEqual(rc, 1, "route_check should reject tag 'no good'; got %d:\n%s" % (rc, out))
        line = self.line_of(path, "tag: \"no good\"")
        self.assertRegex(out, r"%s:%d:\d+: .*tag: invalid character" % (re.escape(os.path.basename(path)), line), out)
        # an entry-only key is not a route setting
        routes = [{"prefix": "/x", "service": "up", "filters": {"tagger": {"error_if_header": "X-A"}}}]
        rc, out, _ = self.check_config(self.cfg([tagger("a")], routes=routes))
        self.assertEqual(rc, 1, out)
        self.assertIn("error_if_header", out)
        routes = [{"prefix": "/x", "service": "up", "filters": {"tagger": {"tag": "r2"}}}]
        rc, out, _ = self.check_config(self.cfg([tagger("a")], routes=routes))
        self.assertEqual(rc, 0, out)

    def test_missing_and_incompatible_filters_fail_check(self):
        for pipeline, want in (([{"name": "nosuchfilter"}], ["nosuchfilter"]),
                               ([{"name": "abi_major2"}], ["abi_major2.so", "%d.0" % (gf.ABI_MAJOR + 1), gf.ABI_TEXT]),
                               ([{"name": "no_symbol"}], ["gw_filter_descriptor"])):
            with self.subTest(pipeline=pipeline):
                rc, out, _ = self.check_config(self.cfg(pipeline))
                self.assertEqual(rc, 1, "expected exit 1, got %d:\n%s" % (rc, out))
                for w in want:
                    assertMentions(self, out, w)


class StartRefusalTest(gf.FilterTestCase):
    def refuse(self, pipeline, want, what, **kw):
        log = self.expect_refusal(lambda p: self.filter_config(p, pipeline, **kw), what)
        for w in want:
            assertMentions(self, log, w, what)
        return log

    def test_disabled_filter_is_not_loaded(self):
        up = self.start_upstream()
        gw = self.start_filters([tagger("a"), {"name": "nosuchfilter", "enabled": False},
                                 {"name": "abi_major2", "enabled": False}], up=up)
        self.assertTags(self.get(gw.port, "/echo"), ["a"], ["a"], "next to disabled unloadable filters")

    def test_missing_filter(self):
        self.refuse([tagger("a"), {"name": "nosuchfilter"}], ["nosuchfilter"], "missing filter")

    def test_missing_file(self):
        path = os.path.join(self.tmp, "gone", "tagger.so")
        self.refuse([{"name": "tagger", "tag": "a", "file": path}], [path], "missing file:")

    def test_incompatible_filters(self):
        self.refuse([{"name": "abi_major2"}], ["abi_major2.so", "%d.0" % (gf.ABI_MAJOR + 1), gf.ABI_TEXT],
                    "abi_major2")
        self.refuse([{"name": "abi_minor_newer"}],
                    ["abi_minor_newer.so", "%d.%d" % (gf.ABI_MAJOR, gf.ABI_MINOR + 1), gf.ABI_TEXT],
                    "abi_minor_newer")
        self.refuse([{"name": "no_symbol"}], ["no_symbol.so", "gw_filter_descriptor"], "no_symbol")

    def test_failed_config_check(self):
        self.refuse([{"name": "bad_config", "reason": "stop-here"}], ["bad_config: refused: stop-here"],
                    "bad_config")

    def test_failed_create(self):
        log_path = os.path.join(self.tmp, "counter.log")
        self.refuse([counter("c1", log_path), counter("c2", log_path, fail_create=True)],
                    ["counter: create refused"], "counter fail_create")
        recs = gf.read_counter_log(log_path)
        created = [r for r in recs if r["event"] == "create"]
        destroyed = [r for r in recs if r["event"] == "destroy"]
        self.assertEqual([r["inst"] for r in destroyed], [r["inst"] for r in created],
                         "instances created before the failing create() must be destroyed once each:\n%s"
                         % "\n".join(r["line"] for r in recs))


class SearchPathTest(gf.FilterTestCase):
    """Without `file`: plugin_dir, then <bin dir>/plugins, then <bin dir>/../lib/gateway/filters."""

    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        root = g.new_tmp_dir("install-")
        self.bin_dir = os.path.join(root, "bin")
        self.plugins = os.path.join(self.bin_dir, "plugins")
        self.libdir = os.path.join(root, "lib", "gateway", "filters")
        for d in (self.plugins, self.libdir):
            os.makedirs(d)
        self.bin = os.path.join(self.bin_dir, "gateway")
        shutil.copy2(g.GW_BIN, self.bin)

    def swap_seen(self, plugin_dir):
        gw = self.start_gateway(lambda p: self.filter_config(p, [{"name": "swap"}], up=self.up,
                                                             plugin_dir=plugin_dir), bin_path=self.bin)
        r = self.get_ok(gw.port, "/echo")
        gw.stop()
        return r.header("x-swap")

    def test_order(self):
        pd = self.private_plugin_dir({"swap.so": "swap_b"})
        shutil.copyfile(fx("swap_a"), os.path.join(self.plugins, "swap.so"))
        self.assertEqual(self.swap_seen(pd), "b", "plugin_dir comes before <bin>/plugins")
        self.assertEqual(self.swap_seen(None), "a", "without plugin_dir, <bin>/plugins is searched")
        os.unlink(os.path.join(self.plugins, "swap.so"))
        shutil.copyfile(fx("swap_b"), os.path.join(self.libdir, "swap.so"))
        self.assertEqual(self.swap_seen(None), "b", "then <bin>/../lib/gateway/filters")
        shutil.copyfile(fx("swap_a"), os.path.join(self.plugins, "swap.so"))
        self.assertEqual(self.swap_seen(None), "a", "<bin>/plugins comes before ../lib/gateway/filters")

    def test_explicit_file(self):
        other = self.private_plugin_dir({"renamed-tagger.so": "tagger"})
        gw = self.start_gateway(lambda p: self.filter_config(
            p, [{"name": "tagger", "tag": "f", "file": os.path.join(other, "renamed-tagger.so")}],
            up=self.up, plugin_dir=None))
        self.assertTags(self.get(gw.port, "/echo"), ["f"], ["f"], "tagger loaded with file:")


# ------------------------------------------------------------------------------------------------------
# the pipeline


class PipelineTest(gf.FilterTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    def test_order_follows_pipeline(self):
        gw = self.start_filters([tagger("one"), tagger("two")], up=self.up)
        self.assertTags(self.get(gw.port, "/echo"), ["one", "two"], ["two", "one"],
                        "pipeline one,two: request side in order, response side reversed")
        gw.stop()
        gw = self.start_filters([tagger("two"), tagger("one")], up=self.up)
        self.assertTags(self.get(gw.port, "/echo"), ["two", "one"], ["one", "two"], "pipeline two,one")

    def test_client_header_kept_and_appended(self):
        gw = self.start_filters([tagger("one")], up=self.up)
        self.assertTags(self.get(gw.port, "/echo", [("X-Tags", "client")]), ["client", "one"], ["one"])

    def test_reorder_changes_deny_status(self):
        gw = self.start_filters([tagger("one"), tagger("two", deny_if_tag_seen="one")], up=self.up)
        r = self.get(gw.port, "/echo/deny")
        doc = self.assertErrorJson(r, 403, "Forbidden")
        self.assertIn("tag one came first", doc["message"])
        self.assertEqual(r.header("x-request-id"), doc["request_id"])
        self.assertUpstreamSawNothing(self.up)
        gw.stop()
        gw = self.start_filters([tagger("two", deny_if_tag_seen="one"), tagger("one")], up=self.up)
        self.assertTags(self.get(gw.port, "/echo/deny"), ["two", "one"], NotImplemented,
                        "deny_if_tag_seen ahead of the tag it looks for")

    def test_disabled_filter_has_no_effect(self):
        log_path = os.path.join(self.tmp, "counter.log")
        routes = [{"prefix": "/api", "service": "up"}]
        gw = self.start_filters([tagger("off", enabled=False), tagger("on"),
                                 counter("c", log_path, enabled=False),
                                 {"name": "bad_config", "enabled": False}], up=self.up, routes=routes)
        r = self.get(gw.port, "/api/x")
        self.assertTags(r, ["on"], ["on"], "disabled tagger")
        self.assertIsNone(r.header("x-counter-generation"), r.summary())
        self.assertErrorJson(self.get(gw.port, "/_tagger/off"), 404, "Not Found")
        r = self.get_ok(gw.port, "/_tagger/on")
        self.assertEqual(r.json(), {"tag": "on"})
        self.assertEqual(self.info_filters(gw), [("tagger", "1.3.0", gf.ABI_TEXT)])
        self.assertFalse(os.path.exists(log_path), "a disabled counter was created (it wrote %s)" % log_path)

    def test_endpoint(self):
        routes = [{"prefix": "/api", "service": "up"}]
        gw = self.start_filters([tagger("ep")], up=self.up, routes=routes)
        r = self.get_ok(gw.port, "/_tagger/ep")
        self.assertTrue((r.header("content-type") or "").startswith("application/json"), r.summary())
        self.assertEqual(r.json(), {"tag": "ep"})
        self.assertErrorJson(self.get(gw.port, "/_tagger/other"), 404, "Not Found")
        self.assertErrorJson(self.get(gw.port, "/_tagger/ep/below"), 404, "Not Found")
        r = self.get(gw.port, "/_tagger/ep", method="DELETE")  # the endpoint serves GET (and so HEAD)
        self.assertErrorJson(r, 405, "Method Not Allowed")
        self.assertEqual(r.header("allow"), "GET, HEAD", r.summary())
        self.assertUpstreamSawNothing(self.up)

    def test_prefix_endpoint(self):
        routes = [{"prefix": "/api", "service": "up"}]
        gw = self.start_filters([tagger("pre", endpoint_prefix=True)], up=self.up, routes=routes)
        for path in ("/_tagger/pre", "/_tagger/pre/", "/_tagger/pre/a/b?q=1"):
            r = self.get_ok(gw.port, path)
            self.assertEqual(r.json(), {"tag": "pre"}, path)
        self.assertErrorJson(self.get(gw.port, "/_tagger/prefix"), 404, "Not Found")
        self.assertUpstreamSawNothing(self.up)

    def test_endpoint_goes_through_the_pipeline(self):
        routes = [{"prefix": "/api", "service": "up"}]
        gw = self.start_filters([tagger("gate", deny_if_tag_seen="client"), tagger("ep")], up=self.up,
                                routes=routes)
        r = self.get_ok(gw.port, "/_tagger/ep")
        self.assertEqual(r.json(), {"tag": "ep"})
        # the response phase runs for host->respond() answers too, in reverse pipeline order
        self.assertEqual(gf.split_tags(",".join(r.header_all("x-resp-tags"))), ["ep", "gate"], r.summary())
        # the request phase of the filter ahead of the endpoint's owner runs first
        self.assertErrorJson(self.get(gw.port, "/_tagger/ep", [("X-Tags", "client")]), 403, "Forbidden")
        self.assertUpstreamSawNothing(self.up)

    def test_per_route_settings(self):
        routes = [{"prefix": "/api/special", "service": "up", "filters": {"tagger": {"tag": "route"}}},
                  {"prefix": "/api/strict", "service": "up",
                   "filters": {"tagger": {"deny_if_tag_seen": "client"}}},
                  {"prefix": "/api", "service": "up"}]
        gw = self.start_filters([tagger("global")], up=self.up, routes=routes)
        self.assertTags(self.get(gw.port, "/api/special/x"), ["route"], ["route"], "route with its own tag")
        self.assertTags(self.get(gw.port, "/api/other"), ["global"], ["global"], "route without settings")
        self.assertTags(self.get(gw.port, "/api/strict/x"), ["global"], ["global"], "strict route, no X-Tags")
        self.assertErrorJson(self.get(gw.port, "/api/strict/x", [("X-Tags", "client")]), 403, "Forbidden")
        self.assertTags(self.get(gw.port, "/api/other", [("X-Tags", "client")]), ["client", "global"],
                        ["global"], "deny_if_tag_seen only on /api/strict")

    def test_gw_error_is_500_json(self):
        gw = self.start_filters([tagger("t", error_if_header="X-Fail")], up=self.up)
        doc = self.assertErrorJson(self.get(gw.port, "/echo", [("X-Fail", "1")]), 500, "Internal Server Error")
        self.assertTrue(doc["request_id"])
        self.assertUpstreamSawNothing(self.up)
        self.assertTags(self.get(gw.port, "/echo"), ["t"], ["t"], "without X-Fail")

    def test_info_lists_enabled_filters_in_order(self):
        log_path = os.path.join(self.tmp, "counter.log")
        gw = self.start_filters([tagger("a"), waiter("response", enabled=False), counter("c", log_path),
                                 {"name": "swap", "file": fx("swap_b")}, waiter("request", delay="1ms")],
                                up=self.up)
        doc = gw.info()
        self.assertEqual(self.info_filters(gw),
                         [("tagger", "1.3.0", gf.ABI_TEXT), ("counter", "1.0.0", gf.ABI_TEXT),
                          ("swap", "1.0.0-b", gf.ABI_TEXT), ("waiter", "0.9.1", gf.ABI_TEXT)],
                         json.dumps(doc))
        self.assertEqual(doc.get("generation"), 1, json.dumps(doc))
        self.assertEqual(doc.get("reloads"), {"success": 0, "failure": 0}, json.dumps(doc))
        gw2 = self.start_filters([], up=self.up)
        self.assertEqual(gw2.info().get("filters"), [])

    def test_filter_log_prefix(self):
        gw = self.start_filters([tagger("loud", log_requests=True)], up=self.up)
        r = self.get_ok(gw.port, "/echo", [("X-Request-Id", "rid-log-1")])
        line = gw.wait_log(r"tagger loud: request phase", timeout=3)
        self.assertIsNotNone(line, "no host->log line; log:\n" + gw.log(3000))
        self.assertIn("[filter:tagger]", line)
        self.assertIn("rid-log-1", line, "host->log with a request adds its id")
        self.assertEqual(r.header("x-request-id"), "rid-log-1")

    def test_keepalive_through_filters(self):
        gw = self.start_filters([tagger("k"), waiter("upstream_response", delay="5ms")], up=self.up)
        with g.RawConn(gw.port, timeout=5 * g.SLOW) as c:
            for i in range(20):
                c.send(g.request_bytes("GET", "/echo/%d" % i))
                r = c.read_response()
                self.assertTags(r, ["k"], ["k"], "request %d on one connection" % i)
                self.assertEqual(r.header("x-waited"), "upstream_response")
        self.assertEqual(self.up.accepted(), 1)


# ------------------------------------------------------------------------------------------------------
# GW_WAIT / resume


class WaitTest(gf.FilterTestCase):
    DELAY = 0.15
    # libevent measures timers from the time cached at the start of the loop iteration, so a wait may end
    # a few ms before `delay` has passed for the client
    TOL = 0.01

    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    def test_wait_in_each_phase(self):
        for phase in gf.PHASES:
            with self.subTest(phase=phase):
                gw = self.start_filters([tagger("t"), waiter(phase, "%dms" % (self.DELAY * 1000))], up=self.up)
                r, took = self.timed_get(gw.port, "/echo/" + phase)
                self.assertEqual(r.status, 200, "%s: %s" % (phase, r.summary()))
                self.assertGreaterEqual(took, self.DELAY - self.TOL, "%s: answered in %.3fs, before the %.3fs wait"
                                        % (phase, took, self.DELAY))
                if phase in ("request", "upstream_request"):
                    self.assertEqual(g.hall(gf.upstream_view(r), "x-waited"), [phase],
                                     "%s: the upstream should see X-Waited; saw %r" % (phase, gf.upstream_view(r)))
                    self.assertIsNone(r.header("x-waited"), r.summary())
                else:
                    self.assertEqual(r.header_all("x-waited"), [phase], r.summary())
                    self.assertEqual(g.hall(gf.upstream_view(r), "x-waited"), [])
                # the other filters still ran (the pipeline continued after resume)
                self.assertTags(r, ["t"], ["t"], phase)
                self.assertTrue(gw.alive())
                gw.stop()

    def test_resume_from_inside_the_phase(self):
        gw = self.start_filters([tagger("t")] + [waiter(ph, resume_inline=True) for ph in gf.PHASES], up=self.up)
        for i in range(3):
            r = self.get(gw.port, "/echo/%d" % i)
            self.assertTags(r, ["t"], ["t"], "resume() inside each phase")
            self.assertEqual(g.hall(gf.upstream_view(r), "x-waited"), ["request", "upstream_request"])
            self.assertEqual(r.header_all("x-waited"), ["upstream_response", "response"], r.summary())
        gw.stop()
        gw = self.start_filters([waiter("request", resume_inline=True, respond_after_wait=True)], up=self.up)
        r = self.get_ok(gw.port, "/echo")
        self.assertEqual(r.json(), {"waited": "request", "responded": True})
        gw.stop()
        gw = self.start_filters([waiter("upstream_response", resume_inline=True, error_after_wait=True)], up=self.up)
        self.assertErrorJson(self.get(gw.port, "/echo"), 500, "Internal Server Error")

    def test_two_waits_in_a_row(self):
        gw = self.start_filters([waiter("request", "150ms"), tagger("mid"), waiter("request", "150ms")],
                                up=self.up)
        r, took = self.timed_get(gw.port, "/echo")
        self.assertTags(r, ["mid"], ["mid"], "wait, tag, wait")
        self.assertEqual(g.hall(gf.upstream_view(r), "x-waited"), ["request", "request"])
        self.assertGreaterEqual(took, 0.3 - self.TOL)

    def test_waits_do_not_block_the_worker(self):
        gw = self.start_filters([waiter("request", "400ms")], up=self.up)
        results = [None] * 20

        def one(i):
            try:
                results[i] = self.get(gw.port, "/echo/%d" % i, timeout=10)
            except Exception as e:  # reported below
                results[i] = e

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        took = time.monotonic() - t0
        bad = [(i, r) for i, r in enumerate(results) if not isinstance(r, g.Response) or r.status != 200]
        self.assertEqual(bad, [], "concurrent waits")
        self.assertLess(took, 0.4 * 20 / 4 * g.SLOW,
                        "20 concurrent 400ms waits on one worker took %.2fs: waits seem to block" % took)

    def test_respond_after_wait(self):
        gw = self.start_filters([tagger("t"), waiter("request", "100ms", respond_after_wait=True)], up=self.up)
        r, took = self.timed_get(gw.port, "/echo")
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json(), {"waited": "request", "responded": True})
        self.assertEqual(r.header("x-waited"), "request")
        self.assertGreaterEqual(took, 0.1 - self.TOL)
        self.assertUpstreamSawNothing(self.up)

    def test_error_after_wait(self):
        for phase in ("request", "upstream_request", "upstream_response", "response"):
            with self.subTest(phase=phase):
                gw = self.start_filters([waiter(phase, "20ms", error_after_wait=True)], up=self.up)
                self.assertErrorJson(self.get(gw.port, "/echo"), 500, "Internal Server Error")
                if phase in ("request", "upstream_request"):
                    self.assertUpstreamSawNothing(self.up, settle=0.1)
                gw.stop()
                self.up.reset()

    def test_request_body_forwarded_after_waits(self):
        gw = self.start_filters([waiter("request", "100ms"), waiter("upstream_request", "100ms")], up=self.up)
        for size, chunked in ((1000, False), (300000, False), (200000, True)):
            with self.subTest(size=size, chunked=chunked):
                body = os.urandom(size)
                hdrs = [("Content-Type", "application/octet-stream")]
                wire = body
                if chunked:
                    hdrs.append(("Transfer-Encoding", "chunked"))
                    wire = g.chunked_encode(body, sizes=(7, 4096, 65536))
                r = g.simple_request(gw.port, "POST", "/upload", hdrs, wire, timeout=10 * g.SLOW)
                self.assertEqual(r.status, 200, r.summary())
                doc = r.json()
                self.assertEqual((doc["body_length"], doc["body_sha256"]),
                                 (size, hashlib.sha256(body).hexdigest()), "body changed on the way")
                self.assertEqual(g.hall(gf.upstream_view(r), "x-waited"), ["request", "upstream_request"])

    def test_pipelined_requests_with_waits(self):
        gw = self.start_filters([waiter("request", "30ms"), tagger("p"), waiter("response", "30ms")], up=self.up)
        with g.RawConn(gw.port, timeout=5 * g.SLOW) as c:
            c.send(b"".join(g.request_bytes("GET", "/echo/p%d" % i) for i in range(5)))
            for i in range(5):
                r = c.read_response()
                self.assertTags(r, ["p"], ["p"], "pipelined request %d" % i)
                self.assertEqual(r.json()["path"], "/echo/p%d" % i, "responses out of order")
                self.assertEqual(r.header("x-waited"), "response")

    def test_upstream_response_phase_runs_for_failed_attempt(self):
        dead = g.free_port()  # nothing listens there
        gw = self.start_gateway(lambda p: self.filter_config(
            p, [waiter("upstream_response", "200ms")],
            services=[{"name": "up", "targets": ["http://127.0.0.1:%d" % dead]}]))
        r, took = self.timed_get(gw.port, "/echo")
        self.assertErrorJson(r, 502, "Bad Gateway")
        self.assertGreaterEqual(took, 0.2 - self.TOL, "upstream_response should run (and wait) for a failed "
                                "attempt too; answered in %.3fs" % took)

    def test_respond_after_wait_in_upstream_request(self):
        gw = self.start_filters([waiter("upstream_request", "50ms", respond_after_wait=True)], up=self.up)
        r = self.get_ok(gw.port, "/echo")
        self.assertEqual(r.json(), {"waited": "upstream_request", "responded": True})
        self.assertUpstreamSawNothing(self.up)

    def test_response_body_intact_after_waits(self):
        gw = self.start_filters([waiter("upstream_response", "100ms"), waiter("response", "100ms")], up=self.up)
        for path, n in (("/bytes/%d", 3000000), ("/chunked/%d", 1500000)):
            with self.subTest(path=path):
                r = self.get(gw.port, path % n, timeout=20)
                self.assertEqual(r.status, 200, r.summary())
                self.assertEqual(len(r.body), n)
                self.assertTrue(r.body == g.pattern_bytes(n), "response body differs from the upstream's")
                self.assertEqual(r.header_all("x-waited"), ["upstream_response", "response"], r.summary())

    def test_route_overrides_delay(self):
        routes = [{"prefix": "/slow", "service": "up", "filters": {"waiter": {"delay": "600ms"}}},
                  {"prefix": "/", "service": "up"}]
        gw = self.start_filters([waiter("response", "10ms")], up=self.up, routes=routes)
        _, fast = self.timed_get(gw.port, "/fast")
        r, slow = self.timed_get(gw.port, "/slow/x")
        self.assertEqual(r.status, 200, r.summary())
        self.assertGreaterEqual(slow, 0.6 - self.TOL)
        self.assertLess(fast, slow - 0.3, "route setting should only slow /slow (fast %.3fs, slow %.3fs)"
                        % (fast, slow))


# ------------------------------------------------------------------------------------------------------
# lifecycle calls


class LifecycleTest(gf.FilterTestCase):
    def test_create_init_fini_destroy_on_stop(self):
        up = self.start_upstream()
        log_path = os.path.join(self.tmp, "counter.log")
        gw = self.start_filters([counter("gen1", log_path)], up=up, workers=2)
        conns = [g.RawConn(gw.port, timeout=5 * g.SLOW) for _ in range(8)]
        try:
            for i in range(4):
                for c in conns:
                    c.send(g.request_bytes("GET", "/echo/%d" % i))
                    r = c.read_response()
                    self.assertEqual(r.status, 200, r.summary())
                    self.assertEqual(r.header("x-counter-generation"), "gen1", r.summary())
        finally:
            for c in conns:
                c.close()
        rc = gw.stop(term_timeout=10 * g.SLOW)
        self.assertEqual(rc, 0, "exit code after SIGTERM; log:\n" + gw.log(4000))
        recs = gf.read_counter_log(log_path)
        text = "\n".join(r["line"] for r in recs)
        self.assertEqual(self.counter_problems(recs), [], text)
        ev = lambda e: [r for r in recs if r["event"] == e]  # noqa: E731
        self.assertEqual(len(ev("create")), 1, text)
        inits = ev("worker_init")
        self.assertTrue(inits, "no worker_init:\n" + text)
        self.assertTrue(all(r["workers"] == "2" for r in inits), text)
        self.assertEqual(sorted(r["worker"] for r in ev("worker_fini")), sorted(r["worker"] for r in inits),
                         "every worker_init needs one worker_fini:\n" + text)
        self.assertEqual(len(ev("destroy")), 1, text)
        self.assertEqual(recs[-1]["event"], "destroy", "destroy must come last:\n" + text)
        self.assertTrue(recs[0]["event"] == "create", text)

    def test_failed_worker_init_gives_500(self):
        up = self.start_upstream()
        log_path = os.path.join(self.tmp, "counter.log")
        gw = self.start_filters([counter("bad", log_path, fail_worker_init=True)], up=up)
        for _ in range(3):
            self.assertErrorJson(self.get(gw.port, "/echo"), 500, "Internal Server Error")


if __name__ == "__main__":
    g.main()
