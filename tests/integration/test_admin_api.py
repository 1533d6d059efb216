#!/usr/bin/env python3
# ctest-labels: asan
"""The core's admin endpoints behind adminauth: POST /admin/reload does what SIGHUP does and answers with
the outcome (200 with the new generation; 422 with the file:line:col message while the running generation
stays and keeps serving), concurrent reload requests all get an answer, and GET /admin/config shows the
configuration as the gateway read it (environment applied) as JSON, with every secret redacted (settings a
filter flags secret, and keys named like passwords). Without credentials both are 401 (adminauth); with
adminauth disabled they refuse with 403 rather than being open."""

import base64
import json
import os
import threading

import gwtest as g

PASSWORD = "s3cret-Admin-pw"
REDIS_PASSWORD = "redis-pw-never-shown"


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


AUTH = [("Authorization", basic("admin", PASSWORD))]


class AdminApiTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()

    def config(self, port, adminauth=True, extra_route=None, store=None):
        routes = [{"prefix": "/api", "service": "up"}]
        if extra_route:
            routes.append(extra_route)
        pipeline = [{"name": "adminauth", "enabled": adminauth, "password": "${ADMIN_PASSWORD}"},
                    {"name": "apikey"}]
        return g.base_config(port, [{"name": "up", "targets": [self.up.url]}], routes, pipeline=pipeline,
                             store=store or {"type": "embedded", "path": os.path.join(self.tmp, "store")},
                             log={"level": "info"})

    def start(self, **kw):
        return self.start_gateway(lambda p: self.config(p, **kw), env={"ADMIN_PASSWORD": PASSWORD})

    def call(self, gw, method, path, headers=AUTH, timeout=10.0):
        return g.simple_request(gw.port, method, path, list(headers), timeout=timeout * g.SLOW)

    def test_reload_success_and_failure(self):
        gw = self.start()
        r = self.call(gw, "POST", "/admin/reload")
        self.assertEqual(r.status, 200, r.summary())
        doc = r.json()
        self.assertEqual(doc["status"], "success", r.summary())
        self.assertEqual(doc["data"]["generation"], 2, r.summary())
        self.assertEqual(gw.info()["reloads"]["success"], 1)
        # a broken file: 422 naming file:line:col, generation 2 kept and still serving
        with open(gw.config_path, "a") as f:
            f.write("workers: [not, a, number]\n")
        r = self.call(gw, "POST", "/admin/reload")
        doc = self.assertErrorJson(r, 422, "Unprocessable Content")
        self.assertRegex(doc["message"], r"%s:\d+:\d+: " % os.path.basename(gw.config_path))
        self.assertIn("(generation 2 kept)", doc["message"])
        self.assertEqual(self.call(gw, "GET", "/api/x", headers=[]).status, 200)
        self.assertEqual(gw.info()["reloads"]["failure"], 1)
        self.assertIsNotNone(gw.wait_log(r"reload failed, generation 2 kept: .*:\d+:\d+: "))
        # fixed again: generation 3
        g.write_config(gw.config_path, self.config(gw.port))
        r = self.call(gw, "POST", "/admin/reload")
        self.assertEqual(r.json()["data"]["generation"], 3, r.summary())

    def test_concurrent_reloads_all_answered(self):
        gw = self.start()
        results = []

        def one():
            r = self.call(gw, "POST", "/admin/reload")
            results.append((r.status, r.json().get("data", {}).get("generation")))

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30 * g.SLOW)
        self.assertEqual(len(results), 6, results)
        self.assertTrue(all(s == 200 and gen >= 2 for s, gen in results), results)
        # reloads were coalesced or not, but each answer names a generation that exists
        self.assertEqual(gw.info()["reloads"]["success"], max(gen for _, gen in results) - 1)

    def test_client_gone_during_reload(self):
        gw = self.start()
        conn = g.RawConn(gw.port, timeout=5 * g.SLOW)
        conn.send(g.request_bytes("POST", "/admin/reload", headers=AUTH + [("Content-Length", "0")]))
        conn.close()  # at once: the request ends while the ticket may still be queued
        r = self.call(gw, "POST", "/admin/reload")
        self.assertEqual(r.status, 200, r.summary())
        self.assertTrue(gw.alive())

    def test_config_dump_redacts_secrets(self):
        extra = {"prefix": "/k", "service": "up", "filters": {"apikey": {"require": True}}}
        # a Redis store nobody listens on: the gateway starts all the same (and keeps trying)
        store = {"type": "redis", "host": "127.0.0.1", "port": g.free_port(), "password": REDIS_PASSWORD}
        gw = self.start_gateway(lambda p: self.config(p, extra_route=extra, store=store),
                                env={"ADMIN_PASSWORD": PASSWORD})
        r = self.call(gw, "GET", "/admin/config")
        self.assertEqual(r.status, 200, r.summary())
        self.assertTrue(r.header("content-type").startswith("application/json"), r.summary())
        body = r.body.decode()
        self.assertNotIn(PASSWORD, body)
        self.assertNotIn(REDIS_PASSWORD, body)
        doc = json.loads(body)
        self.assertEqual(doc["status"], "success")
        data = doc["data"]
        self.assertEqual(data["generation"], 1)
        self.assertEqual(data["file"], gw.config_path)
        cfg = data["config"]
        aa = [e for e in cfg["pipeline"] if e["name"] == "adminauth"][0]
        self.assertEqual(aa["password"], "[redacted]")   # flagged secret in adminauth's settings table
        self.assertEqual(cfg["store"]["password"], "[redacted]")  # named like a password
        self.assertEqual(cfg["store"]["host"], "127.0.0.1")
        self.assertEqual(cfg["workers"], 1)
        self.assertEqual(cfg["listeners"][0]["port"], gw.port)
        self.assertEqual(cfg["routes"][1]["filters"], {"apikey": {"require": True}})
        # HEAD as GET, without a body; a wrong method is 405 once authenticated
        self.assertEqual(self.call(gw, "HEAD", "/admin/config").status, 200)
        r = self.call(gw, "GET", "/admin/reload")
        self.assertErrorJson(r, 405, "Method Not Allowed")
        self.assertIn("POST", r.header("allow"))

    def test_without_credentials_401_and_without_adminauth_403(self):
        gw = self.start()
        for method, path in (("POST", "/admin/reload"), ("GET", "/admin/config")):
            r = self.call(gw, method, path, headers=[])
            self.assertErrorJson(r, 401, "Unauthorized")
        self.assertEqual(gw.info()["reloads"]["success"], 0)
        gw2 = self.start(adminauth=False)
        for method, path in (("POST", "/admin/reload"), ("GET", "/admin/config")):
            r = self.call(gw2, method, path, headers=[])
            doc = self.assertErrorJson(r, 403, "Forbidden")
            self.assertIn("adminauth", doc["message"])
        self.assertEqual(gw2.info()["reloads"]["success"], 0)


if __name__ == "__main__":
    g.main()
