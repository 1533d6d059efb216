#!/usr/bin/env python3
# ctest-labels: asan
"""apikey.so (plugins/apikey) in a running gateway with the embedded store, behind adminauth when that filter
is built: the seed README's session (create a key, call /api/auth/me with X-API-Key and with Bearer), what
the upstream sees (X-Consumer-ID/Name, never the key), a backend's own Bearer token passed through, list /
revoke / delete with exact statuses and bodies, a revoked key refused at once on every worker, keys that
survive a restart and a kill -9 right after the 201, and a route that requires a key."""

import base64
import hashlib
import json
import os
import re
import signal

import gwtest as g

PASSWORD = "Adm1n-pass"
PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(g.GW_BIN)), "plugins")
APIKEY_SO = os.path.join(PLUGIN_DIR, "apikey.so")
ADMINAUTH_SO = os.path.join(PLUGIN_DIR, "adminauth.so")
CREATED = "API key created. Save the raw_key - it won't be shown again!"
JWT = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl"
RAW_KEY = re.compile(r"^gw_[A-Za-z0-9_-]{43}$")
ID = re.compile(r"^[0-9a-f]{32}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")


def basic():
    return "Basic " + base64.b64encode(("admin:%s" % PASSWORD).encode()).decode()


class ApiKeyTestCase(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(APIKEY_SO):
            self.fail("%s not built" % APIKEY_SO)
        self.with_adminauth = os.path.exists(ADMINAUTH_SO)
        self.up = self.start_upstream("auth-service")
        self.data = os.path.join(self.tmp, "data")

    def config(self, port, workers=1):
        pipeline = []
        if self.with_adminauth:
            pipeline.append({"name": "adminauth", "password": PASSWORD})
        pipeline.append({"name": "apikey"})
        services = [{"name": "auth-service", "targets": [self.up.url]}]
        routes = [{"prefix": "/api/auth", "service": "auth-service"},
                  {"prefix": "/api/private", "service": "auth-service", "filters": {"apikey": {"require": True}}}]
        return g.base_config(port, services, routes, workers=workers, pipeline=pipeline,
                             store={"type": "embedded", "path": self.data})

    def start(self, workers=1):
        return self.start_gateway(lambda p: self.config(p, workers))

    # -- requests --
    def admin(self, gw, method, path, body=None, auth=True):
        headers = []
        if auth and self.with_adminauth:
            headers.append(("Authorization", basic()))
        data = b""
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            data = data.encode() if isinstance(data, str) else data
            headers.append(("Content-Type", "application/json"))
        return g.simple_request(gw.port, method, path, headers, body=data, timeout=5.0 * g.SLOW)

    def call(self, gw, path="/api/auth/me", headers=()):
        return g.simple_request(gw.port, "GET", path, list(headers), timeout=5.0 * g.SLOW)

    def create(self, gw, body):
        r = self.admin(gw, "POST", "/admin/apikeys", body)
        self.assertEqual(r.status, 201, r.summary())
        doc = r.json()
        return doc["data"]["api_key"], doc["data"]["raw_key"]

    # -- assertions --
    def assertConsumer(self, resp, key, raw):
        """200 from the upstream, which saw the consumer and none of the key."""
        self.assertEqual(resp.status, 200, resp.summary())
        seen = resp.json()["headers"]
        self.assertEqual(g.hall(seen, "x-consumer-id"), [key["id"]], resp.summary())
        self.assertEqual(g.hall(seen, "x-consumer-name"), [key["name"]], resp.summary())
        self.assertEqual(g.hall(seen, "x-api-key"), [], resp.summary())
        self.assertNotIn(raw, json.dumps(seen))
        return seen

    def assert401(self, resp, message):
        doc = self.assertErrorJson(resp, 401, "Unauthorized")
        self.assertEqual(doc["message"], message, resp.summary())

    def assertSuccess(self, resp, message):
        self.assertEqual(resp.status, 200, resp.summary())
        self.assertTrue((resp.header("content-type") or "").startswith("application/json"), resp.summary())
        self.assertEqual(resp.json(), {"status": "success", "message": message})

    def listed(self, gw):
        r = self.admin(gw, "GET", "/admin/apikeys")
        self.assertEqual(r.status, 200, r.summary())
        doc = r.json()
        self.assertEqual(doc.get("status"), "success", r.summary())
        return doc["data"], r.body.decode()


class ApiKeyTest(ApiKeyTestCase):
    def test_seed_session(self):
        gw = self.start()
        r = self.admin(gw, "POST", "/admin/apikeys", {"name": "my-app", "rate_limit": 100})
        self.assertEqual(r.status, 201, r.summary())
        self.assertTrue(r.header("content-type").startswith("application/json"), r.summary())
        doc = r.json()
        self.assertEqual(doc["status"], "success")
        self.assertEqual(doc["message"], CREATED)
        self.assertEqual(sorted(doc["data"]), ["api_key", "raw_key"])
        key, raw = doc["data"]["api_key"], doc["data"]["raw_key"]
        self.assertRegex(raw, RAW_KEY)
        self.assertRegex(key["id"], ID)
        self.assertRegex(key["created_at"], TIME)
        self.assertEqual({k: v for k, v in key.items() if k not in ("id", "created_at")},
                         {"name": "my-app", "rate_limit": 100, "active": True})

        # curl -H "X-API-Key: ..." /api/auth/me
        seen = self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw)]), key, raw)
        self.assertEqual(g.hall(seen, "authorization"), [])
        # curl -H "Authorization: Bearer ..." /api/auth/me
        seen = self.assertConsumer(self.call(gw, headers=[("Authorization", "Bearer " + raw)]), key, raw)
        self.assertEqual(g.hall(seen, "authorization"), [])
        reqs = self.up.requests()
        self.assertEqual([q["path"] for q in reqs], ["/api/auth/me", "/api/auth/me"])
        for q in reqs:
            self.assertNotIn(raw, q["head"])

        # a backend's JWT passes untouched, anonymously; a client's own X-Consumer-ID does not get through
        r = self.call(gw, headers=[("Authorization", JWT), ("X-Consumer-ID", "admin")])
        self.assertEqual(r.status, 200, r.summary())
        seen = r.json()["headers"]
        self.assertEqual(g.hall(seen, "authorization"), [JWT])
        self.assertEqual(g.hall(seen, "x-consumer-id"), [])
        # a key and the backend's token together: both jobs done
        seen = self.assertConsumer(self.call(gw, headers=[("Authorization", JWT), ("X-API-Key", raw)]), key, raw)
        self.assertEqual(g.hall(seen, "authorization"), [JWT])

        # unknown keys, the required route
        self.assert401(self.call(gw, headers=[("X-API-Key", "gw_not-a-key")]), "Invalid API key")
        self.assert401(self.call(gw, headers=[("Authorization", "Bearer gw_not-a-key")]), "Invalid API key")
        self.assert401(self.call(gw, "/api/private/x"), "API key required")
        self.assertConsumer(self.call(gw, "/api/private/x", [("X-API-Key", raw)]), key, raw)
        # the key never reaches the log
        self.assertNotIn(raw[3:], gw.log(200000))

    def test_list_revoke_delete(self):
        gw = self.start(workers=2)
        self.assertEqual(self.listed(gw)[0], [])
        keys = []
        for body in ({"name": "first", "rate_limit": 10}, {"name": "second", "expires_at": "2099-01-02T03:04:05+01:00"},
                     {"name": "third"}):
            keys.append(self.create(gw, body))
        data, text = self.listed(gw)
        self.assertEqual([k["id"] for k in data], [k["id"] for k, _ in keys])
        self.assertEqual(data, [k for k, _ in keys])
        self.assertEqual(data[1]["expires_at"], "2099-01-02T02:04:05Z")
        self.assertEqual(data[2]["rate_limit"], 0)
        for _, raw in keys:
            self.assertNotIn(raw[3:], text)
        self.assertNotIn("raw_key", text)

        # every worker has the key cached as valid...
        (k1, raw1) = keys[1]
        for _ in range(8):
            self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw1)]), k1, raw1)
        # ...and refuses it right after the revoke
        self.assertSuccess(self.admin(gw, "POST", "/admin/apikeys/%s/revoke" % k1["id"]), "API key revoked")
        for _ in range(8):
            self.assert401(self.call(gw, headers=[("X-API-Key", raw1)]), "API key has been revoked")
        self.assertSuccess(self.admin(gw, "POST", "/admin/apikeys/%s/revoke" % k1["id"]), "API key revoked")
        data, _ = self.listed(gw)
        self.assertEqual([k["active"] for k in data], [True, False, True])

        (k0, raw0) = keys[0]
        self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw0)]), k0, raw0)
        self.assertSuccess(self.admin(gw, "DELETE", "/admin/apikeys/%s" % k0["id"]), "API key deleted")
        for _ in range(4):
            self.assert401(self.call(gw, headers=[("X-API-Key", raw0)]), "Invalid API key")
        data, _ = self.listed(gw)
        self.assertEqual([k["id"] for k in data], [keys[1][0]["id"], keys[2][0]["id"]])

        for method, path in (("DELETE", "/admin/apikeys/%s" % k0["id"]), ("POST", "/admin/apikeys/%s/revoke" % k0["id"]),
                             ("DELETE", "/admin/apikeys/ffffffffffffffffffffffffffffffff"),
                             ("DELETE", "/admin/apikeys/not-an-id")):
            doc = self.assertErrorJson(self.admin(gw, method, path), 404, "Not Found")
            self.assertEqual(doc["message"], "API key not found")

    def test_bad_requests(self):
        gw = self.start()
        for body, message in ((b"{", "The request body is not valid JSON"),
                              ({}, "name is required"),
                              ({"name": ""}, "name must not be empty"),
                              ({"name": 1}, "name must be a string"),
                              ({"name": "a", "rate_limit": -1},
                               "rate_limit must be at least 1 (leave it out for the default limit)"),
                              ({"name": "a", "rate_limit": "5"}, "rate_limit must be an integer (requests per minute)"),
                              ({"name": "a", "expires_at": "next week"},
                               "expires_at must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z"),
                              ({"name": "a", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at must be in the future")):
            with self.subTest(body=body):
                doc = self.assertErrorJson(self.admin(gw, "POST", "/admin/apikeys", body), 400, "Bad Request")
                self.assertEqual(doc["message"], message)
        r = self.admin(gw, "POST", "/admin/apikeys", b'{"name":"' + b"x" * 70000 + b'"}')
        self.assertErrorJson(r, 413, "Content Too Large")
        r = self.admin(gw, "PUT", "/admin/apikeys", {"name": "a"})
        self.assertErrorJson(r, 405, "Method Not Allowed")
        self.assertEqual(r.header("allow"), "GET, HEAD, POST", r.summary())
        self.assertEqual(self.listed(gw)[0], [])
        r = self.admin(gw, "HEAD", "/admin/apikeys")
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.body, b"")
        if self.with_adminauth:  # adminauth in front guards the endpoints
            r = self.admin(gw, "GET", "/admin/apikeys", auth=False)
            self.assertErrorJson(r, 401, "Unauthorized")
            r = self.admin(gw, "POST", "/admin/apikeys", {"name": "sneaky"}, auth=False)
            self.assertErrorJson(r, 401, "Unauthorized")
            self.assertEqual(self.listed(gw)[0], [])
        self.assertUpstreamSawNothing(self.up)


    def test_bad_text_refused_and_list_stays_json(self):
        """Invalid UTF-8, a NUL escape or a duplicated key in a create body: 400 naming the field, nothing
        stored. A record stored with bad bytes before (an older version let them in) is listed with U+FFFD, so
        the list always parses as strict UTF-8 JSON."""
        os.makedirs(self.data, exist_ok=True)
        old = (b'{"id":"00112233445566778899aabbccddeeff","name":"old\xff\xfe\xc0\xafname","active":true,'
               b'"created_at":"2020-01-01T00:00:00Z"}')
        rkey = b"apikey:k:" + b"ab" * 32
        with open(os.path.join(self.data, "store.db"), "wb") as f:
            f.write(b"gateway-store 1\n%d %d\n%s%s\n" % (len(rkey), len(old), rkey, old))
        gw = self.start()
        for body, message in ((b'{"name":"\xff\xfe"}', "The request body is not valid UTF-8"),
                              (b'{"name":"\xed\xa0\x80"}', "The request body is not valid UTF-8"),
                              (b'{"name":"\xc0\xaf"}', "The request body is not valid UTF-8"),
                              (b'{"name":"a\\u0000b"}', "name must not contain NUL characters (\\u0000)"),
                              (b'{"name":"a","name":"b"}', "name is given more than once"),
                              (b'{"name":"a\\u0085"}', "name must not contain control characters")):
            with self.subTest(body=body):
                doc = self.assertErrorJson(self.admin(gw, "POST", "/admin/apikeys", body), 400, "Bad Request")
                self.assertEqual(doc["message"], message)
        key, _ = self.create(gw, {"name": "caf\u00e9 \u2713"})
        r = self.admin(gw, "GET", "/admin/apikeys")
        self.assertEqual(r.status, 200, r.summary())
        doc = json.loads(r.body.decode("utf-8", errors="strict"))
        self.assertEqual([k["name"] for k in doc["data"]], ["old\ufffd\ufffd\ufffd\ufffdname", "caf\u00e9 \u2713"])
        self.assertEqual(doc["data"][1], key)


    def test_stored_bad_records(self):
        """Records written by an older version or into data/store.db directly: a name with control
        characters, raw bad bytes or an escaped NUL is forwarded as printable UTF-8 ('?' for each bad byte,
        U+FFFD for the NUL), never raw or cut at the NUL; records that do not parse (a lone surrogate
        escape is read as U+FFFD, but broken JSON) are listed as invalid under the id they name, can be
        deleted, and their key gets 401 instead of 500, logged once."""
        os.makedirs(self.data, exist_ok=True)
        raw_bad_name, raw_broken = "gw_" + "A" * 43, "gw_" + "B" * 43
        recs = [
            (raw_bad_name, b'{"id":"00112233445566778899aabbccddeeff","name":"a\\u0000b\x01\x7f\xc2\x85\xff\xfe\xc3\xa9",'
                           b'"active":true,"created_at":"2020-01-01T00:00:00Z"}'),
            ("gw_" + "C" * 43, b'{"id":"0123456789abcdef0123456789abcdef","name":"s\\ud800","active":true,'
                               b'"created_at":"2020-01-02T00:00:00Z"}'),
            (raw_broken, b'{"id":"ffeeddccbbaa99887766554433221100","name":"x","active":'),
        ]
        out = b"gateway-store 1\n"
        for raw, rec in recs:
            rkey = b"apikey:k:" + hashlib.sha256(raw.encode()).hexdigest().encode()
            out += b"%d %d\n%s%s\n" % (len(rkey), len(rec), rkey, rec)
        with open(os.path.join(self.data, "store.db"), "wb") as f:
            f.write(out)
        gw = self.start()
        r = self.call(gw, headers=[("X-API-Key", raw_bad_name)])
        self.assertEqual(r.status, 200, r.summary())
        name = g.hall(r.json()["headers"], "x-consumer-name")
        self.assertEqual([n.encode("latin-1") for n in name], ["a\ufffdb?????\u00e9".encode()], r.summary())
        for _ in range(3):
            self.assert401(self.call(gw, headers=[("X-API-Key", raw_broken)]), "Invalid API key record")
        r = self.admin(gw, "GET", "/admin/apikeys")
        self.assertEqual(r.status, 200, r.summary())
        data = json.loads(r.body.decode("utf-8", errors="strict"))["data"]
        self.assertEqual([(k["id"][:4], k["name"], k.get("invalid", False)) for k in data],
                         [("0011", "a\ufffdb\x01\x7f\x85\ufffd\ufffd\u00e9", False), ("0123", "s\ufffd", False),
                          ("ffee", "(invalid record)", True)], r.summary())
        self.assertTrue(gw.wait_log(r"is not a valid API key record: its key is refused", timeout=5.0), gw.log(6000))
        self.assertEqual(len(re.findall(r"is not a valid API key record: its key is refused", gw.log(200000))), 1,
                         gw.log(6000))
        self.assertSuccess(self.admin(gw, "DELETE", "/admin/apikeys/ffeeddccbbaa99887766554433221100"),
                           "API key deleted")
        self.assertEqual([k["id"][:4] for k in self.listed(gw)[0]], ["0011", "0123"])
        # the record with the lone surrogate is revoked as it was listed (its stored name rewritten as U+FFFD)
        self.assertSuccess(self.admin(gw, "POST", "/admin/apikeys/0123456789abcdef0123456789abcdef/revoke"),
                           "API key revoked")
        self.assertEqual([k["active"] for k in self.listed(gw)[0]], [True, False])
        self.assert401(self.call(gw, headers=[("X-API-Key", raw_broken)]), "Invalid API key")


class ApiKeyDurabilityTest(ApiKeyTestCase):
    def test_survives_restart(self):
        gw = self.start()
        key, raw = self.create(gw, {"name": "durable", "rate_limit": 7})
        revoked, raw_r = self.create(gw, {"name": "revoked"})
        self.assertSuccess(self.admin(gw, "POST", "/admin/apikeys/%s/revoke" % revoked["id"]), "API key revoked")
        before, _ = self.listed(gw)
        self.assertEqual(gw.stop(), 0, gw.log(4000))

        gw2 = self.start()
        after, _ = self.listed(gw2)
        self.assertEqual(after, before)
        self.assertConsumer(self.call(gw2, headers=[("X-API-Key", raw)]), key, raw)
        self.assert401(self.call(gw2, headers=[("X-API-Key", raw_r)]), "API key has been revoked")

    def test_survives_kill_after_201(self):
        gw = self.start()
        key, raw = self.create(gw, {"name": "crash"})
        gw.proc.signal(signal.SIGKILL)
        self.assertEqual(gw.proc.wait(10), -signal.SIGKILL)
        gw.expect_exit = True

        gw2 = self.start()
        data, _ = self.listed(gw2)
        self.assertEqual(data, [key])
        self.assertConsumer(self.call(gw2, headers=[("Authorization", "Bearer " + raw)]), key, raw)


if __name__ == "__main__":
    g.main()
