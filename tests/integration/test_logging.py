#!/usr/bin/env python3
# ctest-labels: asan
"""logging.so (plugins/logging) in a running gateway with real upstreams. Every request leaves exactly one
JSON access-log line on the gateway's output (stdout) with its request_id (the response's X-Request-Id),
route, status and duration_ms; paths and headers with quotes, newlines and raw bytes stay one valid line;
W3C traceparent is kept (valid) or started (absent, invalid) and forwarded upstream with this hop as the
parent, its trace id in the line; a file output follows a rename + SIGUSR1 with nothing lost; a SIGHUP
reload and a graceful stop with requests in flight lose no line; log.format json makes the gateway's own
lines (and a filter's, with "filter") JSON."""

import base64
import json
import os
import re
import signal
import threading
import time
import unittest

import gwtest as g

PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(g.GW_BIN)), "plugins")
LOGGING_SO = os.path.join(PLUGIN_DIR, "logging.so")
TRACEPARENT_RX = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
ACCESS_KEYS = ("time", "level", "request_id", "trace_id", "method", "path", "route", "status",
               "duration_ms", "upstream", "upstream_status", "retries", "client_ip", "api_key_id",
               "bytes_in", "bytes_out", "user_agent")


def split_lines(text):
    """(access lines as dicts, other lines as text); an access line that is not valid JSON fails."""
    access, other = [], []
    for line in text.split("\n"):
        if not line:
            continue
        if line.startswith("{") and '"duration_ms"' in line:
            access.append(json.loads(line))  # a broken line raises here
        else:
            other.append(line)
    return access, other


class LoggingCase(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(LOGGING_SO):
            self.fail("%s not built" % LOGGING_SO)
        self.up = self.start_upstream("up")

    def config(self, port, logging=None, workers=2, log=None, pipeline=None, **more):
        entry = dict({"name": "logging"}, **(logging or {}))
        services = [{"name": "up", "targets": [self.up.url]}]
        routes = [{"prefix": "/api", "service": "up", "name": "api"},
                  {"prefix": "/admin", "service": "up", "name": "admin"}]
        extra = dict({"workers": workers, "pipeline": [entry] + (pipeline or [])}, **more)
        if log:
            extra["log"] = log
        return g.base_config(port, services, routes, **extra)

    def get(self, gw, path="/api/x", headers=()):
        return g.simple_request(gw.port, "GET", path, list(headers), timeout=5.0 * g.SLOW)

    def wait_access(self, read, n, timeout=10.0):
        """Waits until read() holds at least n access lines; returns them (all of them)."""
        got = g.wait_until(lambda: (lambda a: a if len(a) >= n else None)(split_lines(read())[0]),
                           timeout * g.SLOW, interval=0.05)
        access = split_lines(read())[0]
        if got is None:
            self.fail("expected %d access lines, found %d; output:\n%s" % (n, len(access), read()[-4000:]))
        return access

    def settle(self, read, n):
        """n lines are there; wait a little more to be sure no extra line follows."""
        time.sleep(0.3 * g.SLOW)
        access = split_lines(read())[0]
        self.assertEqual(len(access), n, "access lines: %r" % access[-5:])
        return access


class StdoutTest(LoggingCase):
    def test_one_line_per_request(self):
        gw = self.start_gateway(lambda p: self.config(p))
        rids = []
        for i in range(20):
            path = "/api/item/%d?q=%d" % (i, i) if i % 4 else "/nowhere/%d" % i
            r = self.get(gw, path, [("User-Agent", "t/%d" % i)])
            self.assertIn(r.status, (200, 404))
            rids.append((r.header("X-Request-Id"), r.status, path))
        r = self.get(gw, "/api/mine", [("X-Request-Id", "client-given-123")])
        self.assertEqual(r.header("X-Request-Id"), "client-given-123")  # kept, and sent upstream
        self.assertEqual(g.hget(self.up.requests()[-1]["headers"], "X-Request-Id"), "client-given-123")
        rids.append(("client-given-123", 200, "/api/mine"))
        r = self.get(gw, "/api/theirs", [("X-Request-Id", 'not "sane" at all')])
        generated = r.header("X-Request-Id")
        self.assertRegex(generated, r"^[0-9a-f-]{36}$")  # replaced by a generated one
        self.assertEqual(g.hget(self.up.requests()[-1]["headers"], "X-Request-Id"), generated)
        rids.append((generated, 200, "/api/theirs"))
        access = self.wait_access(lambda: gw.log_since(0), len(rids))
        access = self.settle(lambda: gw.log_since(0), len(rids))
        by_id = {a["request_id"]: a for a in access}
        self.assertEqual(len(by_id), len(rids), "request ids must be unique")
        for rid, status, path in rids:
            self.assertIn(rid, by_id)
            a = by_id[rid]
            for k in ACCESS_KEYS:
                self.assertIn(k, a, a)
            self.assertEqual(a["status"], status, a)
            self.assertEqual(a["path"], path, a)
            self.assertEqual(a["method"], "GET")
            self.assertIsInstance(a["duration_ms"], float)
            self.assertGreaterEqual(a["duration_ms"], 0.0)
            self.assertLess(a["duration_ms"], 30000.0)
            self.assertEqual(a["client_ip"], "127.0.0.1")
            self.assertIsNone(a["api_key_id"])
            self.assertRegex(a["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            if status == 200:
                self.assertEqual(a["route"], "api")
                self.assertEqual(a["level"], "info")
                self.assertEqual(a["upstream_status"], 200)
                self.assertTrue(a["upstream"].startswith("http://127.0.0.1:"), a)
                self.assertGreater(a["bytes_out"], 0)
                self.assertEqual(a["retries"], 0)
            else:
                self.assertEqual(a["level"], "warn")
                self.assertIsNone(a["upstream_status"])

    def test_hostile_paths_and_headers_stay_one_line(self):
        gw = self.start_gateway(lambda p: self.config(p))
        targets = ['/api/a"b%0Ac', '/api/q?x="%0A\\', "/api/%22%0D%0A%7B%22forged%22:1%7D", "/api/caf%C3%A9%FF"]
        raw = b"/api/raw{}|^`\\\"z"  # (bytes >= 0x80 or controls in a target: the core answers 400 unparsed)
        seen = []
        for t in targets:
            r = self.get(gw, t, [("User-Agent", 'evil" \\ \t ua')])  # (the core refuses other controls)
            seen.append(r.header("X-Request-Id"))
        with g.RawConn(gw.port, timeout=5.0 * g.SLOW) as c:
            c.send(b"GET " + raw + b" HTTP/1.1\r\nHost: gw.test\r\nUser-Agent: \xc3\x28bad\r\n\r\n")
            r = c.read_response(timeout=5.0 * g.SLOW)
            seen.append(r.header("X-Request-Id"))
        access = self.wait_access(lambda: gw.log_since(0), len(seen))
        access = self.settle(lambda: gw.log_since(0), len(seen))
        self.assertEqual(sorted(a["request_id"] for a in access), sorted(seen))
        for a in access:
            self.assertNotIn("forged", a)
            self.assertEqual(set(a.keys()), set(ACCESS_KEYS))
        paths = [a["path"] for a in access]
        self.assertTrue(any('"' in p for p in paths), paths)
        self.assertIn(raw.decode("ascii"), paths)
        uas = [a["user_agent"] for a in access]
        self.assertIn('evil" \\ \t ua', uas)
        self.assertTrue(any(u and "\ufffd" in u for u in uas), uas)  # invalid UTF-8 replaced
        text = gw.log_since(0)
        for line in text.split("\n"):  # every line of the output is a whole line: JSON or the core's text
            self.assertTrue(line == "" or line.startswith("{") or re.match(r"^\d{4}-", line), repr(line))


class FieldsTest(LoggingCase):
    def test_api_key_and_body_bytes(self):
        """api_key_id is the key apikey accepted; bytes_in/bytes_out are the body bytes each way."""
        for so in ("adminauth", "apikey"):
            if not os.path.exists(os.path.join(PLUGIN_DIR, so + ".so")):
                self.skipTest(so + ".so not built")
        admin = [("Authorization", "Basic " + base64.b64encode(b"admin:s3cret").decode())]
        pipeline = [{"name": "adminauth", "password": "s3cret"}, {"name": "apikey"}]
        gw = self.start_gateway(lambda p: self.config(p, pipeline=pipeline, workers=1,
                                                      store={"type": "embedded", "path": self.tmp + "/data"}))
        body = json.dumps({"name": "app"}).encode()
        r = g.simple_request(gw.port, "POST", "/admin/apikeys", admin + [("Content-Type", "application/json")],
                             body=body, timeout=5.0 * g.SLOW)
        self.assertEqual(r.status, 201, r.summary())
        key = r.json()["data"]["api_key"]
        raw = r.json()["data"]["raw_key"]
        created = (r.header("X-Request-Id"), len(body), len(r.body))
        payload = b"x" * 1234
        r = g.simple_request(gw.port, "POST", "/api/echo?size=1", [("X-API-Key", raw)], body=payload,
                             timeout=5.0 * g.SLOW)
        self.assertEqual(r.status, 200, r.summary())
        with_key = (r.header("X-Request-Id"), len(payload), len(r.body))
        r = self.get(gw, "/api/anon")
        anon = (r.header("X-Request-Id"), 0, len(r.body))
        r = self.get(gw, "/api/bad", [("X-API-Key", "gw_" + "A" * 43)])
        self.assertEqual(r.status, 401)
        refused = (r.header("X-Request-Id"), 0, len(r.body))
        access = {a["request_id"]: a for a in self.wait_access(lambda: gw.log_since(0), 4)}
        for rid, bin_, bout in (created, with_key, anon, refused):
            self.assertEqual((access[rid]["bytes_in"], access[rid]["bytes_out"]), (bin_, bout), access[rid])
        self.assertEqual(access[with_key[0]]["api_key_id"], key["id"])
        self.assertEqual(access[with_key[0]]["method"], "POST")
        self.assertIsNone(access[anon[0]]["api_key_id"])
        self.assertIsNone(access[refused[0]]["api_key_id"])
        self.assertEqual(access[refused[0]]["status"], 401)
        self.assertIsNone(access[refused[0]]["upstream"])
        self.assertEqual(access[created[0]]["status"], 201)
        self.assertEqual(access[created[0]]["route"], "/admin/apikeys")  # an endpoint: its path
        self.assertNotIn(raw, gw.log_since(0))  # the raw key never reaches the log


    def test_retries_and_upstream_of_the_last_attempt(self):
        """With retry.so: a refused first target, the second answers; the line has retry's count and the
        target and status of the attempt that answered."""
        if not os.path.exists(os.path.join(PLUGIN_DIR, "retry.so")):
            self.skipTest("retry.so not built")
        dead = "http://127.0.0.1:%d" % g.free_port()
        cfg = lambda p: g.base_config(  # noqa: E731
            p, [{"name": "up", "targets": [dead, self.up.url], "passive_health": {"failures": 0}}],
            [{"prefix": "/api", "service": "up", "name": "api"}],
            pipeline=[{"name": "logging"}, {"name": "retry", "initial_delay_ms": 1, "budget": False}])
        gw = self.start_gateway(cfg)
        seen = []
        for i in range(4):
            r = self.get(gw, "/api/r/%d" % i)
            self.assertEqual(r.status, 200, r.summary())
            seen.append((r.header("X-Request-Id"), int(r.header("X-Retry-Count") or 0)))
        self.assertIn(1, [n for _, n in seen])
        access = {a["request_id"]: a for a in self.wait_access(lambda: gw.log_since(0), 4)}
        for rid, n in seen:
            a = access[rid]
            self.assertEqual(a["retries"], n, a)
            self.assertEqual(a["upstream"], self.up.url, a)
            self.assertEqual(a["upstream_status"], 200, a)


class TraceTest(LoggingCase):
    def upstream_header(self, name, idx=-1):
        reqs = self.up.requests()
        return g.hget(reqs[idx]["headers"], name)

    def test_traceparent_kept_started_and_forwarded(self):
        gw = self.start_gateway(lambda p: self.config(p, workers=1))
        trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        cases = [
            ("valid", [("traceparent", "00-%s-%s-01" % (trace, parent)), ("tracestate", "v=1")]),
            ("absent", []),
            ("invalid", [("traceparent", "00-%s-%s-01" % (trace.upper(), parent)), ("tracestate", "v=2")]),
            ("zero", [("traceparent", "00-%s-%s-01" % ("0" * 32, parent))]),
            ("future", [("traceparent", "cc-%s-%s-01-extra" % (trace, parent))]),
        ]
        up_tp, rids = {}, {}
        for name, hdrs in cases:
            r = self.get(gw, "/api/t/" + name, hdrs)
            self.assertEqual(r.status, 200)
            rids[name] = r.header("X-Request-Id")
            tp = self.upstream_header("traceparent")
            m = TRACEPARENT_RX.match(tp or "")
            self.assertTrue(m, "upstream traceparent %r (%s)" % (tp, name))
            self.assertNotEqual(m.group(2), parent)  # this hop is the parent now
            self.assertNotEqual(m.group(2), "0" * 16)
            up_tp[name] = (m.group(1), m.group(2), m.group(3), self.upstream_header("tracestate"))
        self.assertEqual(up_tp["valid"][:1], (trace,))
        self.assertEqual(up_tp["valid"][2], "01")
        self.assertEqual(up_tp["valid"][3], "v=1")
        self.assertEqual(up_tp["future"][0], trace)
        for name in ("absent", "invalid", "zero"):
            self.assertNotEqual(up_tp[name][0], trace)
            self.assertNotEqual(up_tp[name][0], "0" * 32)
        self.assertIsNone(up_tp["invalid"][3])  # tracestate of an unreadable parent is dropped
        self.assertNotEqual(up_tp["absent"][0], up_tp["invalid"][0])
        access = {a["request_id"]: a for a in self.wait_access(lambda: gw.log_since(0), len(cases))}
        for name, _ in cases:
            self.assertEqual(access[rids[name]]["trace_id"], up_tp[name][0], name)


class FileTest(LoggingCase):
    def test_file_output_rename_and_sigusr1(self):
        path = os.path.join(self.tmp, "access.log")
        gw = self.start_gateway(lambda p: self.config(p, {"output": path, "exclude": ["/api/skip"]}))

        def read(p=path):
            try:
                with open(p, "rb") as f:
                    return f.read().decode("utf-8")
            except FileNotFoundError:
                return ""
        ids = [self.get(gw, "/api/one/%d" % i).header("X-Request-Id") for i in range(10)]
        self.get(gw, "/api/skip/this")
        self.wait_access(read, 10)
        self.assertEqual(split_lines(gw.log_since(0))[0], [])  # not on stdout
        os.rename(path, path + ".1")
        more = [self.get(gw, "/api/between/%d" % i).header("X-Request-Id") for i in range(5)]
        gw.proc.signal(signal.SIGUSR1)
        self.assertTrue(g.wait_until(lambda: os.path.exists(path), 5 * g.SLOW), "file not reopened")
        after = [self.get(gw, "/api/two/%d" % i).header("X-Request-Id") for i in range(10)]
        new = self.wait_access(read, 10)
        time.sleep(0.3 * g.SLOW)
        old = split_lines(read(path + ".1"))[0]
        new = split_lines(read())[0]
        self.assertTrue(set(after) <= {a["request_id"] for a in new}, "lines after the reopen go to the new file")
        self.assertEqual(sorted(a["request_id"] for a in old + new), sorted(ids + more + after))
        self.assertFalse(any("/api/skip" in a["path"] for a in old + new))
        mode = os.stat(path).st_mode & 0o777
        self.assertEqual(mode & 0o007, 0, "the log file is not world-readable: %o" % mode)


    def test_rotation_under_load(self):
        """logrotate's way (rename, then SIGUSR1) while clients keep sending: the new file is created and
        gets every line of a request started after it appeared; across both files every request has
        exactly one whole line."""
        path = os.path.join(self.tmp, "access.log")
        gw = self.start_gateway(lambda p: self.config(p, {"output": path}))
        done, stop, reopened = [], threading.Event(), threading.Event()
        errors = []

        def client(n):
            for i in range(2000):  # bounded
                if stop.is_set():
                    return
                after = reopened.is_set()
                try:
                    r = g.simple_request(gw.port, "GET", "/api/rot/%d/%d" % (n, i), timeout=5.0 * g.SLOW)
                    done.append((r.header("X-Request-Id"), after))
                except Exception as e:  # reported below
                    errors.append(e)
                    return
        ts = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in ts:
            t.start()
        try:
            self.assertTrue(g.wait_until(lambda: len(done) >= 100, 20 * g.SLOW), "no traffic")
            os.rename(path, path + ".1")
            gw.proc.signal(signal.SIGUSR1)
            self.assertTrue(g.wait_until(lambda: os.path.exists(path), 5 * g.SLOW), "file not reopened")
            reopened.set()
            mark = len(done)
            self.assertTrue(g.wait_until(lambda: len(done) >= mark + 100, 20 * g.SLOW), "no traffic after")
        finally:
            stop.set()
            for t in ts:
                t.join(30)
        self.assertEqual(errors, [])
        gw.proc.signal(signal.SIGTERM)  # a graceful stop writes what is queued
        self.assertEqual(gw.proc.wait(15 * g.SLOW), 0)
        with open(path + ".1", "rb") as f:
            old_text = f.read().decode("utf-8")
        with open(path, "rb") as f:
            new_text = f.read().decode("utf-8")
        for text in (old_text, new_text):
            self.assertTrue(text.endswith("\n"))
            for line in text[:-1].split("\n"):
                json.loads(line)  # whole, valid lines only
        old = [a["request_id"] for a in split_lines(old_text)[0]]
        new = [a["request_id"] for a in split_lines(new_text)[0]]
        self.assertTrue(old and new)
        self.assertEqual(sorted(old + new), sorted(rid for rid, _ in done), "lost or doubled lines")
        late = {rid for rid, after in done if after}
        self.assertTrue(late and late <= set(new), "requests started after the reopen went to the old file")


class LifecycleTest(LoggingCase):
    def run_slow(self, gw, n, out):
        def one(i):
            try:
                r = g.simple_request(gw.port, "GET", "/api/slow?ms=400", timeout=10.0 * g.SLOW)
                out.append(r.header("X-Request-Id"))
            except Exception as e:  # reported by the assertions on `out`
                out.append(e)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        return ts

    def test_reload_and_stop_lose_no_line(self):
        cfg = lambda p: self.config(p)  # noqa: E731
        gw = self.start_gateway(cfg)
        out = []
        ts = self.run_slow(gw, 6, out)
        time.sleep(0.15 * g.SLOW)  # in flight on the first generation
        ok, _ = gw.reload(self.config(gw.port, {"sample": 1}))
        self.assertTrue(ok)
        ts += self.run_slow(gw, 6, out)
        for t in ts:
            t.join(30)
        self.assertFalse([o for o in out if isinstance(o, Exception)], out)
        access = self.wait_access(lambda: gw.log_since(0), len(out) + 2)  # + the two GET /info of the reload
        ids = {a["request_id"] for a in access}
        self.assertTrue(set(out) <= ids, "lines lost across the reload")
        # graceful stop with requests in flight: their lines are written before the process exits
        before = len(access)
        out2 = []
        ts = self.run_slow(gw, 4, out2)
        time.sleep(0.15 * g.SLOW)
        gw.proc.signal(signal.SIGTERM)
        for t in ts:
            t.join(30)
        self.assertEqual(gw.proc.wait(15 * g.SLOW), 0)
        access = split_lines(gw.log_since(0))[0]
        done = [o for o in out2 if not isinstance(o, Exception)]
        self.assertTrue(set(done) <= {a["request_id"] for a in access}, (done, len(access) - before))


class CoreJsonTest(LoggingCase):
    def test_log_format_json(self):
        entry = {"name": "adminauth", "username": "admin", "password": "s3cret"}
        gw = self.start_gateway(lambda p: self.config(p, log={"level": "info", "format": "json"},
                                                      pipeline=[entry]))
        r = self.get(gw, "/admin/apikeys", [("Authorization", "Basic YWRtaW46d3Jvbmc=")])
        self.assertEqual(r.status, 401)
        self.wait_access(lambda: gw.log_since(0), 1)
        self.assertTrue(gw.wait_log(r'"filter":"adminauth"', timeout=5.0))
        ok, _ = gw.reload(self.config(gw.port, log={"level": "info", "format": "json"}, pipeline=[entry]))
        self.assertTrue(ok)
        gw.proc.signal(signal.SIGUSR1)
        self.assertTrue(gw.wait_log(r'"msg":"SIGUSR1: ', timeout=5.0))
        gw.proc.signal(signal.SIGTERM)
        self.assertEqual(gw.proc.wait(15 * g.SLOW), 0)
        lines = [ln for ln in gw.log_since(0).split("\n") if ln]
        core = []
        for ln in lines:
            obj = json.loads(ln)  # every line, the gateway's own included, is JSON
            self.assertIn("time", obj)
            self.assertIn("level", obj)
            if "msg" in obj:
                core.append(obj)
        self.assertTrue(any(c.get("filter") == "adminauth" and c.get("request_id") == r.header("X-Request-Id")
                            for c in core), core)
        msgs = [c["msg"] for c in core if "filter" not in c]
        for start in ("listening on ", "reload: generation 2 serves", "SIGUSR1: ", "stopped"):
            self.assertTrue(any(m.startswith(start) for m in msgs), (start, msgs))
        access = [json.loads(ln) for ln in lines if '"duration_ms"' in ln]  # the 401, the GET /info of the reload
        self.assertEqual(len(access) + len(core), len(lines))
        self.assertEqual([a["status"] for a in access if a["path"] != "/info"], [401])


if __name__ == "__main__":
    unittest.main()
