#!/usr/bin/env python3
# ctest-labels: asan
"""apikey.so (plugins/apikey) with adminauth in front, on the Redis store (core/store/store_redis.c), against a real
redis-server started here on a free 127.0.0.1 port (no persistence, its own directory) and stopped by PID:
the seed README's session, two gateways on one Redis seeing each other's keys and revokes (within cache_ttl),
keys surviving a gateway restart, Redis killed while a gateway runs (cached keys keep working, admin calls
and uncached keys get a prompt 503, /info says "unavailable") and coming back on the same port (the gateway
reconnects on its own), keyed traffic under an outage (keys validated before are served stale, revoked
ones stay refused, a few log lines in all, a new key working within about a second of Redis returning),
and a backend's JWT passed through untouched. Skipped when redis-server is missing."""

import base64
import hashlib
import json
import os
import re
import signal
import socket
import sys
import time
import unittest

import gwtest as g

REDIS_BIN = os.environ.get("GW_REDIS_SERVER") or "/usr/bin/redis-server"
PASSWORD = "Adm1n-pass"
PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(g.GW_BIN)), "plugins")
APIKEY_SO = os.path.join(PLUGIN_DIR, "apikey.so")
ADMINAUTH_SO = os.path.join(PLUGIN_DIR, "adminauth.so")
CREATED = "API key created. Save the raw_key - it won't be shown again!"
JWT = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTIifQ.c2lnbmF0dXJlLTI"
RAW_KEY = re.compile(r"^gw_[A-Za-z0-9_-]{43}$")
ID = re.compile(r"^[0-9a-f]{32}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
UNAVAILABLE = "the key store is unavailable"


def basic():
    return "Basic " + base64.b64encode(("admin:%s" % PASSWORD).encode()).decode()


def record_key(raw):
    """The Redis key of a raw API key: the filter's namespace, then k:<sha256 hex>."""
    return "apikey:k:" + hashlib.sha256(raw.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# a minimal RESP client, to look into Redis from the test


class RedisError(Exception):
    pass


class RedisClient:
    def __init__(self, port, timeout=2.0):
        self.sock = socket.create_connection((g.LOCALHOST, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise RedisError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise RedisError("connection closed")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        return out

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line[:100])

    def command(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def keys(self, pattern="*"):
        out, cursor = [], "0"
        for _ in range(10000):
            cursor, batch = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            out += [k.decode() for k in batch]
            cursor = cursor.decode()
            if cursor == "0":
                break
        return sorted(out)


class RedisServer:
    """redis-server on 127.0.0.1:port, no persistence, in its own directory; stopped by PID."""

    def __init__(self, case, port=None):
        self.case = case
        self.fixed_port = port is not None
        self.port = port or g.free_port()
        self.dir = g.new_tmp_dir("redis-")
        self.runs = 0
        self.proc = None

    def start(self):
        # A free port can be taken by another program between the probe and redis-server's bind: on a
        # first start (nothing points at the port yet) another port is tried, a few times.
        for attempt in range(3):
            try:
                return self._start()
            except AssertionError as e:
                if self.fixed_port or self.runs > 1 or "Address already in use" not in str(e) or attempt == 2:
                    raise
                self.proc.stop()
                self.port = g.free_port()
                self.runs = 0

    def _start(self):
        self.runs += 1
        argv = [REDIS_BIN, "--port", str(self.port), "--bind", g.LOCALHOST, "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--daemonize", "no", "--logfile", "", "--protected-mode", "yes"]
        self.proc = self.case.start_proc(argv, "redis-%d" % self.runs, cwd=self.dir)

        def pong():
            if not self.proc.alive():
                raise AssertionError("redis-server exited (%s); log:\n%s"
                                     % (self.proc.popen.returncode, self.proc.log(4000)))
            try:
                with RedisClient(self.port, timeout=1.0) as c:
                    return c.command("PING") == "PONG"
            except (OSError, RedisError):
                return False
        if not g.wait_until(pong, 10 * g.SLOW, interval=0.02):
            raise AssertionError("redis-server did not answer PING on port %d; log:\n%s"
                                 % (self.port, self.proc.log(4000)))
        return self

    def kill(self):
        """SIGKILL by PID and wait for it to be gone."""
        self.proc.signal(signal.SIGKILL)
        rc = self.proc.wait(10)
        self.case.assertEqual(rc, -signal.SIGKILL, "redis-server did not die on SIGKILL")
        self.proc.stop()

    def client(self):
        return RedisClient(self.port)


# --------------------------------------------------------------------------------------------------


@unittest.skipUnless(os.access(REDIS_BIN, os.X_OK), "redis-server not found at %s (install redis-server)" % REDIS_BIN)
class ApiKeyRedisTestCase(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        for so in (APIKEY_SO, ADMINAUTH_SO):
            if not os.path.exists(so):
                self.fail("%s not built" % so)
        self.up = self.start_upstream("auth-service")
        self.redis = RedisServer(self).start()
        self.addCleanup(self._dump_redis_logs)

    def _dump_redis_logs(self):
        if self._failed():
            for p in self._procs:
                if p.name.startswith("redis"):
                    sys.stderr.write("\n----- %s log -----\n%s\n" % (p.name, p.log(3000)))

    def config(self, port, workers=1, cache_ttl=None, stale_if_error=None):
        apikey = {"name": "apikey"}
        if cache_ttl is not None:
            apikey["cache_ttl"] = cache_ttl
        if stale_if_error is not None:
            apikey["stale_if_error"] = stale_if_error
        pipeline = [{"name": "adminauth", "password": PASSWORD}, apikey]
        services = [{"name": "auth-service", "targets": [self.up.url]}]
        routes = [{"prefix": "/api/auth", "service": "auth-service"},
                  {"prefix": "/api/private", "service": "auth-service", "filters": {"apikey": {"require": True}}}]
        return g.base_config(port, services, routes, workers=workers, pipeline=pipeline,
                             store={"type": "redis", "host": g.LOCALHOST, "port": self.redis.port,
                                    "command_timeout": "250ms"})

    def start(self, workers=1, cache_ttl=None, port=None, stale_if_error=None):
        return self.start_gateway(lambda p: self.config(p, workers, cache_ttl, stale_if_error), port=port)

    # -- requests --
    def admin(self, gw, method, path, body=None, timeout=None):
        headers = [("Authorization", basic())]
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            headers.append(("Content-Type", "application/json"))
        return g.simple_request(gw.port, method, path, headers, body=data, timeout=timeout or 5.0 * g.SLOW)

    def call(self, gw, path="/api/auth/me", headers=()):
        return g.simple_request(gw.port, "GET", path, list(headers), timeout=5.0 * g.SLOW)

    def create(self, gw, body):
        r = self.admin(gw, "POST", "/admin/apikeys", body)
        self.assertEqual(r.status, 201, r.summary())
        doc = r.json()
        return doc["data"]["api_key"], doc["data"]["raw_key"]

    def listed(self, gw):
        r = self.admin(gw, "GET", "/admin/apikeys")
        self.assertEqual(r.status, 200, r.summary())
        doc = r.json()
        self.assertEqual(sorted(doc), ["data", "status"], r.summary())
        self.assertEqual(doc["status"], "success", r.summary())
        return doc["data"], r.body.decode()

    def store_state(self, gw):
        return gw.info().get("store")

    def wait_store_state(self, gw, state, timeout=2.0):
        """/info's "store" once its state is `state` (workers connect to Redis after the listener is up)."""
        return self.poll(lambda: (lambda st: st if st and st.get("state") == state else None)(self.store_state(gw)),
                         timeout * g.SLOW, "/info store state %s" % state)

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

    def assert503(self, resp):
        doc = self.assertErrorJson(resp, 503, "Service Unavailable")
        self.assertEqual(doc["message"], UNAVAILABLE, resp.summary())

    def assertSuccess(self, resp, message):
        self.assertEqual(resp.status, 200, resp.summary())
        self.assertTrue((resp.header("content-type") or "").startswith("application/json"), resp.summary())
        self.assertEqual(resp.json(), {"status": "success", "message": message})

    def poll(self, fn, timeout, what):
        """Calls fn() until it returns a truthy value, at most `timeout` seconds; fails with `what`."""
        last = []

        def once():
            v = fn()
            last[:] = [v]
            return v
        got = g.wait_until(once, timeout, interval=0.05)
        if not got:
            self.fail("%s: not within %.1fs (last: %r)" % (what, timeout, last[0] if last else None))
        return got


class ApiKeyRedisTest(ApiKeyRedisTestCase):
    def test_seed_session(self):
        gw = self.start(workers=2)
        self.assertEqual(self.wait_store_state(gw, "ok"), {"type": "redis", "state": "ok"})
        self.assertEqual(self.listed(gw)[0], [])
        r = self.admin(gw, "POST", "/admin/apikeys", {"name": "my-app", "rate_limit": 100})
        self.assertEqual(r.status, 201, r.summary())
        self.assertTrue(r.header("content-type").startswith("application/json"), r.summary())
        doc = r.json()
        self.assertEqual(sorted(doc), ["data", "message", "status"])
        self.assertEqual(doc["status"], "success")
        self.assertEqual(doc["message"], CREATED)
        self.assertEqual(sorted(doc["data"]), ["api_key", "raw_key"])
        key, raw = doc["data"]["api_key"], doc["data"]["raw_key"]
        self.assertRegex(raw, RAW_KEY)
        self.assertRegex(key["id"], ID)
        self.assertRegex(key["created_at"], TIME)
        self.assertEqual({k: v for k, v in key.items() if k not in ("id", "created_at")},
                         {"name": "my-app", "rate_limit": 100, "active": True})

        # what Redis holds: one record under the hash of the key, never the key itself
        with self.redis.client() as rc:
            self.assertEqual(rc.keys(), [record_key(raw)])
            stored = json.loads(rc.command("GET", record_key(raw)))
            self.assertEqual(stored, key)
            self.assertEqual(rc.command("PTTL", record_key(raw)), -1)  # persistent

        # curl -H "X-API-Key: ..." /api/auth/me, then Authorization: Bearer
        seen = self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw)]), key, raw)
        self.assertEqual(g.hall(seen, "authorization"), [])
        seen = self.assertConsumer(self.call(gw, headers=[("Authorization", "Bearer " + raw)]), key, raw)
        self.assertEqual(g.hall(seen, "authorization"), [])
        reqs = self.up.requests()
        self.assertEqual([q["path"] for q in reqs], ["/api/auth/me", "/api/auth/me"])
        for q in reqs:
            self.assertNotIn(raw, q["head"])
        self.assert401(self.call(gw, headers=[("X-API-Key", "gw_not-a-key")]), "Invalid API key")
        self.assert401(self.call(gw, "/api/private/x"), "API key required")
        self.assertConsumer(self.call(gw, "/api/private/x", [("X-API-Key", raw)]), key, raw)

        # list, revoke, delete
        other, raw_o = self.create(gw, {"name": "second", "expires_at": "2099-01-02T03:04:05+01:00"})
        self.assertEqual(other["expires_at"], "2099-01-02T02:04:05Z")
        data, text = self.listed(gw)
        self.assertEqual(data, [key, other])
        self.assertNotIn("raw_key", text)
        for rk in (raw, raw_o):
            self.assertNotIn(rk[3:], text)

        self.assertSuccess(self.admin(gw, "POST", "/admin/apikeys/%s/revoke" % key["id"]), "API key revoked")
        for _ in range(4):  # both workers, at once (same gateway)
            self.assert401(self.call(gw, headers=[("X-API-Key", raw)]), "API key has been revoked")
        data, _ = self.listed(gw)
        self.assertEqual([(k["id"], k["active"]) for k in data], [(key["id"], False), (other["id"], True)])
        with self.redis.client() as rc:
            self.assertFalse(json.loads(rc.command("GET", record_key(raw)))["active"])

        self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw_o)]), other, raw_o)
        self.assertSuccess(self.admin(gw, "DELETE", "/admin/apikeys/%s" % other["id"]), "API key deleted")
        for _ in range(4):
            self.assert401(self.call(gw, headers=[("X-API-Key", raw_o)]), "Invalid API key")
        doc = self.assertErrorJson(self.admin(gw, "DELETE", "/admin/apikeys/%s" % other["id"]), 404, "Not Found")
        self.assertEqual(doc["message"], "API key not found")
        self.assertEqual([k["id"] for k in self.listed(gw)[0]], [key["id"]])
        with self.redis.client() as rc:
            self.assertEqual(rc.keys(), [record_key(raw)])
        log = gw.log(200000)
        self.assertNotIn(raw[3:], log)
        self.assertNotIn(raw_o[3:], log)

    def test_backend_jwt_passes_through(self):
        gw = self.start()
        key, raw = self.create(gw, {"name": "jwt-app"})
        # not our prefix: untouched, anonymous; a client's own consumer headers are removed
        r = self.call(gw, headers=[("Authorization", JWT), ("X-Consumer-ID", "admin"), ("X-Consumer-Name", "x")])
        self.assertEqual(r.status, 200, r.summary())
        seen = r.json()["headers"]
        self.assertEqual(g.hall(seen, "authorization"), [JWT])
        self.assertEqual(g.hall(seen, "x-consumer-id"), [])
        self.assertEqual(g.hall(seen, "x-consumer-name"), [])
        # the backend's token and our key together: both reach their targets
        seen = self.assertConsumer(self.call(gw, headers=[("Authorization", JWT), ("X-API-Key", raw)]), key, raw)
        self.assertEqual(g.hall(seen, "authorization"), [JWT])
        # on a route that requires a key, the JWT alone is not a key
        self.assert401(self.call(gw, "/api/private/x", [("Authorization", JWT)]), "API key required")

    def test_two_gateways_share_keys(self):
        ttl = 0.2
        a = self.start(workers=2, cache_ttl="200ms")
        b = self.start(workers=2, cache_ttl="200ms")
        key, raw = self.create(a, {"name": "shared"})
        for _ in range(4):
            self.assertConsumer(self.call(b, headers=[("X-API-Key", raw)]), key, raw)
        self.assertEqual(self.listed(b)[0], [key])
        key_b, raw_b = self.create(b, {"name": "from-b", "rate_limit": 5})
        self.assertConsumer(self.call(a, headers=[("Authorization", "Bearer " + raw_b)]), key_b, raw_b)
        self.assertEqual(self.listed(a)[0], [key, key_b])

        # revoke on A (both of B's workers have the key cached as valid): B refuses it within cache_ttl
        self.assertSuccess(self.admin(a, "POST", "/admin/apikeys/%s/revoke" % key["id"]), "API key revoked")
        t0 = time.monotonic()
        self.assert401(self.call(a, headers=[("X-API-Key", raw)]), "API key has been revoked")
        r = self.poll(lambda: self.all_refused(b, ("X-API-Key", raw)), 1.0 * g.SLOW,
                      "B still accepts the key revoked on A")
        took = time.monotonic() - t0
        self.assert401(r, "API key has been revoked")
        self.assertLess(took, ttl + 0.8 * g.SLOW, "B took %.2fs to see the revoke" % took)
        for _ in range(4):
            self.assert401(self.call(b, headers=[("X-API-Key", raw)]), "API key has been revoked")

        # delete on B: A forgets the key within cache_ttl too
        for _ in range(4):
            self.assertConsumer(self.call(a, headers=[("X-API-Key", raw_b)]), key_b, raw_b)
        self.assertSuccess(self.admin(b, "DELETE", "/admin/apikeys/%s" % key_b["id"]), "API key deleted")
        t0 = time.monotonic()
        r = self.poll(lambda: self.all_refused(a, ("X-API-Key", raw_b)), 1.0 * g.SLOW,
                      "A still accepts the key deleted on B")
        self.assertLess(time.monotonic() - t0, ttl + 0.8 * g.SLOW)
        self.assert401(r, "Invalid API key")
        self.assertEqual([(k["id"], k["active"]) for k in self.listed(a)[0]], [(key["id"], False)])

    def all_refused(self, gw, header, n=6):
        """The last of n calls when none of them was let through (n spreads them over the workers), else None."""
        r = None
        for _ in range(n):
            r = self.call(gw, headers=[header])
            if r.status == 200:
                return None
        return r

    def test_keys_survive_restart(self):
        gw = self.start()
        key, raw = self.create(gw, {"name": "durable", "rate_limit": 7})
        revoked, raw_r = self.create(gw, {"name": "revoked"})
        self.assertSuccess(self.admin(gw, "POST", "/admin/apikeys/%s/revoke" % revoked["id"]), "API key revoked")
        before, _ = self.listed(gw)
        port = gw.port
        gw.proc.signal(signal.SIGTERM)
        self.assertEqual(gw.proc.wait(10 * g.SLOW), 0, gw.log(4000))

        gw2 = self.start(port=port)
        self.assertEqual(self.listed(gw2)[0], before)
        self.assertConsumer(self.call(gw2, headers=[("X-API-Key", raw)]), key, raw)
        self.assertConsumer(self.call(gw2, headers=[("Authorization", "Bearer " + raw)]), key, raw)
        self.assert401(self.call(gw2, headers=[("X-API-Key", raw_r)]), "API key has been revoked")

    def test_started_with_redis_down(self):
        # Redis not there at start: the gateway starts all the same, says so at once (not at the first
        # admin call), shows it in /health's detail (still 200: it proxies), and connects when Redis comes.
        self.redis.kill()
        gw = self.start(workers=2)
        self.assertIsNotNone(gw.wait_log(r"\[warn\] store: redis .*:%d unavailable \(worker \d\): .*reconnecting"
                                          % self.redis.port))
        r = g.simple_request(gw.port, "GET", "/health")
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json()["store"], {"type": "redis", "status": "unavailable"}, r.summary())
        self.assertEqual(self.call(gw).status, 200)  # proxying does not need the store
        self.redis.start()

        def store_ok():
            doc = g.simple_request(gw.port, "GET", "/health").json()
            return doc["store"]["status"] == "ok" or None
        self.poll(store_ok, 10 * g.SLOW, "/health store ok after Redis started")
        self.assertIsNotNone(gw.wait_log(r"store: redis .* connected"))

    def test_redis_down_and_back(self):
        gw = self.start(workers=1, cache_ttl="30s")
        self.assertEqual(self.wait_store_state(gw, "ok"), {"type": "redis", "state": "ok"})
        key, raw = self.create(gw, {"name": "cached"})
        cold, raw_cold = self.create(gw, {"name": "never-used"})
        self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw)]), key, raw)  # warms the cache

        off = gw.log_size()
        self.redis.kill()

        # a cached key keeps working
        for hdr in (("X-API-Key", raw), ("Authorization", "Bearer " + raw)):
            self.assertConsumer(self.call(gw, headers=[hdr]), key, raw)

        # admin calls and uncached keys: a prompt, clean 503 (fails closed), never a hang
        for method, body in (("GET", None), ("POST", {"name": "while-down"}), ("GET", None)):
            t0 = time.monotonic()
            r = self.admin(gw, method, "/admin/apikeys", body, timeout=5.0 * g.SLOW)
            took = time.monotonic() - t0
            self.assert503(r)
            self.assertLess(took, 1.0 * g.SLOW, "%s /admin/apikeys took %.2fs while Redis was down" % (method, took))
        t0 = time.monotonic()
        self.assert503(self.call(gw, headers=[("X-API-Key", raw_cold)]))
        self.assertLess(time.monotonic() - t0, 1.0 * g.SLOW)
        self.assert503(self.admin(gw, "POST", "/admin/apikeys/%s/revoke" % key["id"]))
        self.assertEqual(self.wait_store_state(gw, "unavailable"), {"type": "redis", "state": "unavailable"})
        self.assertTrue(gw.wait_log(r"store: redis 127\.0\.0\.1:%d unavailable" % self.redis.port, off),
                        gw.log_since(off))
        self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw)]), key, raw)
        self.assertTrue(gw.alive())

        # Redis back on the same port (empty: it keeps nothing): the gateway reconnects by itself
        self.redis.start()
        t0 = time.monotonic()

        def admin_ok():
            r = self.admin(gw, "GET", "/admin/apikeys", timeout=5.0 * g.SLOW)
            if r.status == 503:
                self.assert503(r)
                return None
            return r
        r = self.poll(admin_ok, 10.0 * g.SLOW, "admin calls after Redis came back")
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json(), {"status": "success", "data": []})
        self.assertLess(time.monotonic() - t0, 10.0 * g.SLOW)
        self.assertEqual(self.wait_store_state(gw, "ok"), {"type": "redis", "state": "ok"})
        self.assertTrue(gw.wait_log(r"store: redis 127\.0\.0\.1:%d connected" % self.redis.port, off),
                        gw.log_since(off))

        new, raw_new = self.create(gw, {"name": "after"})
        self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw_new)]), new, raw_new)
        self.assertEqual(self.listed(gw)[0], [new])
        # the new Redis does not know the cold key; the cached one is still served from the cache
        self.assert401(self.call(gw, headers=[("X-API-Key", raw_cold)]), "Invalid API key")
        self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw)]), key, raw)

    def test_outage_served_stale(self):
        """Redis killed under keyed load: a key validated before keeps answering 200 from the cache although
        cache_ttl (100ms) is long past (stale_if_error, default 5m), a key revoked on this gateway stays
        refused, a key never seen gets 503; the outage costs a few log lines, not one per request; once Redis
        is back, a new key works within about a second (reconnect backoff capped at 1 s)."""
        gw = self.start(workers=1, cache_ttl="100ms")
        self.assertEqual(self.wait_store_state(gw, "ok"), {"type": "redis", "state": "ok"})
        key, raw = self.create(gw, {"name": "in-use"})
        revoked, raw_r = self.create(gw, {"name": "revoked-seen"})
        gone, raw_g = self.create(gw, {"name": "revoked-unseen"})
        _, raw_cold = self.create(gw, {"name": "never-used"})
        for k, rk in ((key, raw), (revoked, raw_r), (gone, raw_g)):
            self.assertConsumer(self.call(gw, headers=[("X-API-Key", rk)]), k, rk)
        for k in (revoked, gone):
            self.assertSuccess(self.admin(gw, "POST", "/admin/apikeys/%s/revoke" % k["id"]), "API key revoked")
        self.assert401(self.call(gw, headers=[("X-API-Key", raw_r)]), "API key has been revoked")

        off = gw.log_size()
        self.redis.kill()
        t_end = time.monotonic() + 3.0
        calls = 0
        while time.monotonic() < t_end and calls < 50000:
            self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw)]), key, raw)
            self.assertConsumer(self.call(gw, headers=[("Authorization", "Bearer " + raw)]), key, raw)
            self.assert401(self.call(gw, headers=[("X-API-Key", raw_r)]), "API key has been revoked")
            self.assert503(self.call(gw, headers=[("X-API-Key", raw_g)]))  # forgotten at the revoke: not valid
            self.assert503(self.call(gw, headers=[("X-API-Key", raw_cold)]))
            calls += 5
        self.assertGreater(calls, 50)
        self.assertEqual(self.store_state(gw), {"type": "redis", "state": "unavailable"})
        lines = [ln for ln in gw.log_since(off).splitlines()
                 if "redis" in ln or "store" in ln or "[filter:apikey]" in ln]
        self.assertLess(len(lines), 10, "%d calls during the outage:\n%s" % (calls, "\n".join(lines[:40])))
        self.assertTrue(any("[filter:apikey] key store unavailable" in ln for ln in lines), "\n".join(lines))

        # Redis back (empty): a key created now works within about a second; polled, with a bound
        self.redis.start()
        t0 = time.monotonic()

        def new_key_works():
            r = self.admin(gw, "POST", "/admin/apikeys", {"name": "after"})
            if r.status == 503:
                return None
            self.assertEqual(r.status, 201, r.summary())
            doc = r.json()["data"]
            return doc["api_key"], doc["raw_key"]
        new, raw_new = self.poll(new_key_works, 2.0 * g.SLOW, "a key created after Redis came back")
        self.assertConsumer(self.call(gw, headers=[("X-API-Key", raw_new)]), new, raw_new)
        self.assertLess(time.monotonic() - t0, 2.0 * g.SLOW)
        self.assertTrue(gw.wait_log(r"\[filter:apikey\] key store available again", off), gw.log_since(off))


if __name__ == "__main__":
    g.main()
