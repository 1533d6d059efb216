#!/usr/bin/env python3
# ctest-labels: asan
"""SIGHUP reload, the quick cases: a new generation serves new requests (also on an open keep-alive
connection) while in-flight requests finish on theirs; failed reloads (broken YAML, missing, incompatible
or misconfigured filter, failing create) keep the running generation and are counted and logged; a .so
replaced on disk takes effect on the next reload; the old instances get worker_fini on every worker
they were initialised on and destroy once. The long run under load is test_reload.py."""

import os
import signal
import time

import gwfilters as gf
import gwtest as g
from gwfilters import counter, fx, tagger, waiter


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


class ReloadCasesTest(gf.FilterTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    def cfg(self, port, pipeline, **kw):
        kw.setdefault("routes", [{"prefix": "/api", "service": "up"}])
        return self.filter_config(port, pipeline, up=self.up, **kw)

    def start(self, pipeline, **kw):
        return self.start_gateway(lambda p: self.cfg(p, pipeline, **kw))

    def reload_ok(self, gw, cfg, generation):
        off = gw.log_size()
        ok, info = gw.reload(cfg)
        self.assertTrue(ok, "reload should succeed; /info %r; log:\n%s" % (info, gw.log_since(off)[-4000:]))
        self.assertEqual(info.get("generation"), generation, "/info after the reload: %r" % info)
        line = gw.wait_log(r"reload.*generation %d\b" % generation, off, timeout=3)
        self.assertIsNotNone(line, "no log line with 'reload' and 'generation %d'; log since SIGHUP:\n%s"
                             % (generation, gw.log_since(off)[-4000:]))
        return info

    def reload_fails(self, gw, cfg, reason_parts, what):
        before = gw.info()
        off = gw.log_size()
        ok, info = gw.reload(cfg)
        self.assertFalse(ok, "%s: the reload should fail; /info %r" % (what, info))
        self.assertEqual(info.get("generation"), before.get("generation"), "%s: generation changed" % what)
        self.assertEqual(info["reloads"]["failure"], before["reloads"]["failure"] + 1, what)
        self.assertEqual(info["reloads"]["success"], before["reloads"]["success"], what)
        self.assertEqual(info.get("filters"), before.get("filters"), "%s: /info filters changed" % what)
        line = gw.wait_log(r"reload failed", off, timeout=3)
        self.assertIsNotNone(line, "%s: no 'reload failed' line; log since SIGHUP:\n%s"
                             % (what, gw.log_since(off)[-4000:]))
        text = gw.log_since(off)
        tail = text[text.find("reload failed"):][:2000]
        for part in reason_parts:
            self.assertIn(part, tail, "%s: the reason (%r) should be logged with 'reload failed':\n%s"
                          % (what, part, text[-4000:]))
        self.assertTrue(gw.alive())
        return info

    # ---------------------------------------------------------------------------------------------------

    def test_new_generation_on_open_connection(self):
        gw = self.start([tagger("a")])
        self.assertEqual(gw.info().get("generation"), 1)
        with g.RawConn(gw.port, timeout=5 * g.SLOW) as c:
            c.send(g.request_bytes("GET", "/api/1"))
            self.assertTags(c.read_response(), ["a"], ["a"], "generation 1")
            self.reload_ok(gw, self.cfg(gw.port, [tagger("b")]), 2)
            c.send(g.request_bytes("GET", "/api/2"))
            self.assertTags(c.read_response(), ["b"], ["b"], "same connection after the reload")
            self.assertEqual(self.get_ok(gw.port, "/_tagger/b").json(), {"tag": "b"})
            self.assertErrorJson(self.get(gw.port, "/_tagger/a"), 404, "Not Found")
            # an unchanged file reloads too
            info = self.reload_ok(gw, None, 3)
            self.assertEqual(info["reloads"], {"success": 2, "failure": 0})
            c.send(g.request_bytes("GET", "/api/3"))
            self.assertTags(c.read_response(), ["b"], ["b"], "after reloading the same file")

    def test_idle_upstream_connections_survive_a_reload(self):
        # a reload keeps the idle connections to targets that did not change, and opens none anew for them
        gw = self.start([tagger("a")], workers=1)
        first = self.get_ok(gw.port, "/api/x").json()["conn_id"]
        self.assertEqual(self.get_ok(gw.port, "/api/x").json()["conn_id"], first, "reused before the reload")
        self.reload_ok(gw, self.cfg(gw.port, [tagger("b")], workers=1), 2)
        after = self.get_ok(gw.port, "/api/x").json()
        self.assertEqual(after["conn_id"], first, "the upstream connection after the reload: %r" % after)

    def test_in_flight_request_finishes_on_its_generation(self):
        # only /api/slow waits: /info (polled by the reload helper) goes through the pipeline too
        routes = [{"prefix": "/api/slow", "service": "up", "filters": {"waiter": {"delay": "1500ms"}}},
                  {"prefix": "/api", "service": "up"}]
        gw = self.start([tagger("old"), waiter("request", "1ms")], routes=routes)
        slow = g.RawConn(gw.port, timeout=10 * g.SLOW)
        self.addCleanup(slow.close)
        t0 = time.monotonic()
        slow.send(g.request_bytes("GET", "/api/slow"))
        time.sleep(0.2)
        self.reload_ok(gw, self.cfg(gw.port, [tagger("new"), waiter("request", "1ms")], routes=routes), 2)
        r = self.get(gw.port, "/api/fast")
        done = time.monotonic() - t0
        self.assertTags(r, ["new"], ["new"], "request started after the reload")
        self.assertLess(done, 1.5, "the reload and a new request should not wait for the in-flight one "
                        "(took %.2fs)" % done)
        r = slow.read_response()
        self.assertTags(r, ["old"], ["old"], "request in flight during the reload")
        self.assertGreaterEqual(time.monotonic() - t0, 1.5 - 0.02)  # timers may fire a hair early

    def test_reorder_and_toggle_by_reload(self):
        gw = self.start([tagger("x"), tagger("y")])
        self.assertTags(self.get(gw.port, "/api/1"), ["x", "y"], ["y", "x"], "generation 1")
        self.reload_ok(gw, self.cfg(gw.port, [tagger("y"), tagger("x")]), 2)
        self.assertTags(self.get(gw.port, "/api/2"), ["y", "x"], ["x", "y"], "reordered")
        self.reload_ok(gw, self.cfg(gw.port, [tagger("y"), tagger("x", enabled=False)]), 3)
        self.assertTags(self.get(gw.port, "/api/3"), ["y"], ["y"], "x disabled")
        self.assertErrorJson(self.get(gw.port, "/_tagger/x"), 404, "Not Found")
        self.assertEqual(self.get_ok(gw.port, "/_tagger/y").json(), {"tag": "y"})
        self.assertEqual(self.info_filters(gw), [("tagger", "1.3.0", gf.ABI_TEXT)])
        self.reload_ok(gw, self.cfg(gw.port, [tagger("y", enabled=False), tagger("x")]), 4)
        self.assertTags(self.get(gw.port, "/api/4"), ["x"], ["x"], "x enabled again, y disabled")
        self.assertEqual(self.get_ok(gw.port, "/_tagger/x").json(), {"tag": "x"})
        self.assertErrorJson(self.get(gw.port, "/_tagger/y"), 404, "Not Found")

    def test_broken_yaml_keeps_generation(self):
        gw = self.start([tagger("a")])
        self.reload_fails(gw, "listeners:\n  - port: [1, 2\npipeline: {{\n", [], "broken YAML")
        self.assertTags(self.get(gw.port, "/api/x"), ["a"], ["a"], "after the failed reload")
        self.assertEqual(self.get_ok(gw.port, "/_tagger/a").json(), {"tag": "a"})
        info = self.reload_ok(gw, self.cfg(gw.port, [tagger("b")]), 2)
        self.assertEqual(info["reloads"], {"success": 1, "failure": 1})
        self.assertTags(self.get(gw.port, "/api/x"), ["b"], ["b"], "after the good reload")

    def test_failed_reload_reasons(self):
        gw = self.start([tagger("a")])
        cases = [
            ([tagger("b"), {"name": "nosuchfilter"}], ["nosuchfilter"], "missing filter"),
            ([tagger("b"), {"name": "bad_config", "reason": "not-today"}], ["bad_config: refused: not-today"],
             "failing config_check"),
            ([tagger("bad tag")], ["tag: invalid character"], "invalid filter setting"),
            ([{"name": "tagger", "tag": "b", "file": fx("abi_major2")}],
             ["abi_major2.so", "%d.0" % (gf.ABI_MAJOR + 1)], "incompatible file"),
            ([{"name": "no_symbol"}], ["gw_filter_descriptor"], "no descriptor"),
        ]
        for n, (pipeline, reason, what) in enumerate(cases, 1):
            info = self.reload_fails(gw, self.cfg(gw.port, pipeline), reason, what)
            self.assertEqual(info["reloads"], {"success": 0, "failure": n})
            self.assertTags(self.get(gw.port, "/api/x"), ["a"], ["a"], "after: " + what)

    def test_missing_filter_error_names_line_and_column(self):
        gw = self.start([tagger("a")])
        off = gw.log_size()
        self.reload_fails(gw, self.cfg(gw.port, [tagger("b"), {"name": "nosuchfilter"}]), ["nosuchfilter"],
                          "missing filter")
        text = gw.log_since(off)
        self.assertRegex(text, r"reload failed.*\.yaml:\d+:\d+: pipeline filter 'nosuchfilter': ",
                         "file:line:col expected:\n" + text[-2000:])

    def test_incompatible_so_copied_over_plugin(self):
        pd = self.private_plugin_dir({"tagger.so": "tagger"})
        gw = self.start([tagger("a")], plugin_dir=pd)
        gf.copy_over(fx("abi_major2"), os.path.join(pd, "tagger.so"))
        self.reload_fails(gw, self.cfg(gw.port, [tagger("b")], plugin_dir=pd),
                          ["%d.0" % (gf.ABI_MAJOR + 1), gf.ABI_TEXT], "abi_major2.so copied over tagger.so")
        self.assertTags(self.get(gw.port, "/api/x"), ["a"], ["a"], "the running generation is kept")
        gf.copy_over(fx("tagger"), os.path.join(pd, "tagger.so"))
        self.reload_ok(gw, self.cfg(gw.port, [tagger("b")], plugin_dir=pd), 2)
        self.assertTags(self.get(gw.port, "/api/x"), ["b"], ["b"], "tagger.so back in place")

    def test_so_replaced_on_disk(self):
        pd = self.private_plugin_dir({"swap.so": "swap_a"})
        gw = self.start([{"name": "swap"}], plugin_dir=pd)
        cfg = self.cfg(gw.port, [{"name": "swap"}], plugin_dir=pd)
        self.assertEqual(self.get_ok(gw.port, "/api/x").header("x-swap"), "a")
        self.assertEqual(self.info_filters(gw), [("swap", "1.0.0-a", gf.ABI_TEXT)])
        for gen, variant in ((2, "b"), (3, "a"), (4, "b")):
            gf.copy_over(fx("swap_" + variant), os.path.join(pd, "swap.so"))
            # the file changed on disk, but nothing happens before SIGHUP
            self.assertEqual(self.get_ok(gw.port, "/api/x").header("x-swap"), "ab"[gen % 2],
                             "the new file must not take effect before the reload")
            self.reload_ok(gw, cfg, gen)
            r = self.get_ok(gw.port, "/api/x")
            self.assertEqual(r.header("x-swap"), variant, "generation %d: %s" % (gen, r.summary()))
            self.assertEqual(self.info_filters(gw), [("swap", "1.0.0-" + variant, gf.ABI_TEXT)])

    def test_old_instance_finalised_after_reload(self):
        log_path = os.path.join(self.tmp, "counter.log")
        gw = self.start([counter("gen1", log_path), tagger("a")], workers=2)
        conns = [g.RawConn(gw.port, timeout=5 * g.SLOW) for _ in range(8)]
        for c in conns:
            self.addCleanup(c.close)
        for c in conns:
            c.send(g.request_bytes("GET", "/api/x"))
            r = c.read_response()
            self.assertEqual(r.header("x-counter-generation"), "gen1", r.summary())
        self.reload_ok(gw, self.cfg(gw.port, [counter("gen2", log_path), tagger("b")], workers=2), 2)
        # the connections stay open (idle); they must not pin the old generation
        for c in conns[:4]:
            c.send(g.request_bytes("GET", "/api/y"))
            r = c.read_response()
            self.assertEqual(r.header("x-counter-generation"), "gen2", r.summary())

        def old_destroyed():
            recs = gf.read_counter_log(log_path)
            return recs if any(r["event"] == "destroy" and r["tag"] == "gen1" for r in recs) else None
        recs = g.wait_until(old_destroyed, 10 * g.SLOW, interval=0.05)
        all_recs = gf.read_counter_log(log_path)
        text = "\n".join(r["line"] for r in all_recs)
        self.assertIsNotNone(recs, "gen1 was not destroyed within %.0fs of the reload (4 of its 8 "
                             "connections still open and idle); counter log:\n%s" % (10 * g.SLOW, text))
        self.assertEqual(self.counter_problems(all_recs), [], text)
        old = [r for r in recs if r["tag"] == "gen1"]
        ev = lambda e: [r for r in old if r["event"] == e]  # noqa: E731
        self.assertEqual(len(ev("create")), 1, text)
        inits = sorted(r["worker"] for r in ev("worker_init"))
        finis = sorted(r["worker"] for r in ev("worker_fini"))
        self.assertTrue(inits, "gen1 never got worker_init:\n" + text)
        self.assertEqual(finis, inits, "gen1: worker_fini once on every worker it was initialised on:\n" + text)
        self.assertEqual(finis, ["0", "1"], "gen1: worker_fini on each of the 2 workers:\n" + text)
        self.assertEqual(len(ev("destroy")), 1, text)
        self.assertEqual(old[-1]["event"], "destroy", "gen1's destroy must come after its worker_fini calls:\n" + text)
        new = [r for r in recs if r["tag"] == "gen2"]
        self.assertEqual([r["event"] for r in new if r["event"] in ("create", "destroy")], ["create"], text)
        # stop: gen2 is finalised too
        for c in conns:
            c.close()
        rc = gw.stop(term_timeout=10 * g.SLOW)
        self.assertEqual(rc, 0, gw.log(4000))
        recs = gf.read_counter_log(log_path)
        text = "\n".join(r["line"] for r in recs)
        new = [r for r in recs if r["tag"] == "gen2"]
        self.assertEqual(sorted(r["worker"] for r in new if r["event"] == "worker_fini"),
                         sorted(r["worker"] for r in new if r["event"] == "worker_init"), text)
        self.assertEqual([r["event"] for r in new if r["event"] == "destroy"], ["destroy"], text)
        self.assertEqual(self.counter_problems(recs), [], text)

    def test_failed_create_on_reload_cleans_up(self):
        log_path = os.path.join(self.tmp, "counter.log")
        gw = self.start([counter("gen1", log_path)])
        self.assertEqual(self.get_ok(gw.port, "/api/x").header("x-counter-generation"), "gen1")
        self.reload_fails(gw, self.cfg(gw.port, [counter("gen2", log_path),
                                                 counter("gen3", log_path, fail_create=True)]),
                          ["counter: create refused"], "a create() failing")
        self.assertEqual(self.get_ok(gw.port, "/api/x").header("x-counter-generation"), "gen1")

        def settled():
            recs = gf.read_counter_log(log_path)
            made = [r for r in recs if r["tag"] == "gen2" and r["event"] == "create"]
            gone = [r for r in recs if r["tag"] == "gen2" and r["event"] == "destroy"]
            return recs if len(made) == len(gone) else None
        recs = g.wait_until(settled, 5 * g.SLOW, interval=0.05)
        text = "\n".join(r["line"] for r in gf.read_counter_log(log_path))
        self.assertIsNotNone(recs, "gen2 was created by the failed reload but not destroyed:\n" + text)
        self.assertEqual([r for r in recs if r["tag"] in ("gen2", "gen3") and r["event"].startswith("worker")], [],
                         "instances of a failed reload must never reach the workers:\n" + text)
        self.assertEqual([r for r in recs if r["tag"] == "gen1" and r["event"] in ("worker_fini", "destroy")], [],
                         "the running generation was finalised by a failed reload:\n" + text)
        self.assertEqual(self.counter_problems(recs), [], text)

    def test_old_module_stays_loaded_while_its_callback_runs(self):
        # A request of generation 1 waits in its response phase while generation 2 takes over. When the
        # waiter's timer fires, host->resume() finishes that last request of generation 1, and the waiter
        # keeps running its own code for a while after resume() returns. Generation 1 (its instances and
        # its private copy of waiter.so) may only go once that callback has returned.
        routes = [{"prefix": "/api", "service": "up"}]
        gw = self.start([waiter("response", "600ms", work_after_resume="300ms")], routes=routes)
        old = g.RawConn(gw.port, timeout=10 * g.SLOW)
        self.addCleanup(old.close)
        off = gw.log_size()
        old.send(g.request_bytes("GET", "/api/old"))
        time.sleep(0.1)
        # no /info polling here: /info would go through generation 1's waiter too
        g.write_config(gw.config_path, self.cfg(gw.port, [tagger("new")], routes=routes))
        gw.proc.signal(signal.SIGHUP)
        self.assertIsNotNone(gw.wait_log(r"reload.*generation 2\b", off, timeout=3),
                             "no reload line; log:\n" + gw.log_since(off))
        self.assertTags(self.get(gw.port, "/api/new"), ["new"], ["new"], "generation 2")
        try:
            r = old.read_response()
        except g.ConnClosed as e:
            r = e
        time.sleep(0.5)  # the waiter's work after resume is over
        rc = gw.proc.popen.poll()
        self.assertIsNone(rc, "the gateway died (exit status %s): generation 1 was unloaded while its waiter's "
                          "timer callback was still running; log:\n%s" % (rc, gw.log(6000)))
        self.assertIsInstance(r, g.Response, "the request of generation 1 got no response: %s" % r)
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.header("x-waited"), "response", r.summary())
        self.assertTags(self.get(gw.port, "/api/new"), ["new"], ["new"], "generation 2, later")
        rc = gw.stop(term_timeout=10 * g.SLOW)
        self.assertEqual(rc, 0, gw.log(4000))
        self.assertIsNone(gw.sanitizer_report())

    def test_many_reloads_leak_nothing(self):
        gw = self.start([tagger("a"), waiter("response", "1ms")])
        self.get_ok(gw.port, "/api/warm")
        self.reload_ok(gw, self.cfg(gw.port, [tagger("b"), waiter("response", "1ms")]), 2)
        self.get_ok(gw.port, "/api/warm")
        fds_before = fd_count(gw.pid)
        for gen in range(3, 33):
            tag = "ab"[gen % 2]
            self.reload_ok(gw, self.cfg(gw.port, [tagger(tag), waiter("response", "1ms")]), gen)
            self.assertTags(self.get(gw.port, "/api/x"), [tag], [tag], "generation %d" % gen)
        if fds_before is not None:
            fds = g.wait_until(lambda: (lambda n: n if n is not None and n <= fds_before + 4 else None)(
                fd_count(gw.pid)), 5 * g.SLOW, interval=0.1)
            self.assertIsNotNone(fds, "open descriptors grew from %d to %s over 30 reloads"
                                 % (fds_before, fd_count(gw.pid)))
        rc = gw.stop(term_timeout=10 * g.SLOW)
        self.assertEqual(rc, 0, gw.log(4000))
        self.assertIsNone(gw.sanitizer_report())


if __name__ == "__main__":
    g.main()
