#!/usr/bin/env python3
# ctest-labels: asan
"""The shipped configuration (conf/gateway.yaml) with the two demo services, as `make run` starts them."""

import os
import unittest

import gwtest as g

CONF = os.path.join(g.SOURCE_DIR, "conf", "gateway.yaml")


@unittest.skipUnless(os.path.exists(g.GW_DEMO_BIN), "demo service binary not built: %s" % g.GW_DEMO_BIN)
@unittest.skipUnless(os.path.exists(CONF), "shipped config missing: %s" % CONF)
class DemoTest(g.GatewayTestCase):
    def start_demo(self, name):
        return self.start_demo_service(name)[1]

    def setUp(self):
        super().setUp()
        self.auth_url = self.start_demo("auth-service")
        self.user_url = self.start_demo("user-service")
        port = g.free_port()
        env = {"AUTH_SERVICE_URL": self.auth_url, "USER_SERVICE_URL": self.user_url, "PORT": str(port),
               "HOST": "127.0.0.1", "STORE_TYPE": None, "ADMIN_PASSWORD": "demo-secret",
               "ADMIN_AUTH_ENABLED": None}
        self.gw = g.Gateway(self.tmp, None, port=port, env=env, config_path=CONF)
        self._gateways.append(self.gw)

    def test_config_validates(self):
        rc, out, err = g.run_gateway_cli(["-t", "-c", CONF], env={"STORE_TYPE": None, "ADMIN_PASSWORD": "x",
                                                                   "ADMIN_AUTH_ENABLED": None})
        self.assertEqual(rc, 0, "stdout %r stderr %r" % (out, err))
        # The shipped file protects /admin: without a password it is refused, naming the reason.
        rc, out, err = g.run_gateway_cli(["-t", "-c", CONF], env={"STORE_TYPE": None, "ADMIN_PASSWORD": None,
                                                                   "ADMIN_AUTH_ENABLED": None})
        self.assertEqual(rc, 1, "stdout %r stderr %r" % (out, err))
        self.assertIn("ADMIN_PASSWORD", err)

    def test_seed_session(self):
        """The seed README's session: create a key as admin, call /api/auth/me with it two ways."""
        import base64
        auth = "Basic " + base64.b64encode(b"admin:demo-secret").decode()
        status, headers, body = g.http_request(self.gw.port, "POST", "/admin/apikeys",
                                               body=b'{"name": "my-app", "rate_limit": 100}',
                                               headers={"Content-Type": "application/json", "Authorization": auth})
        self.assertEqual(status, 201, body)
        doc = g.json.loads(body)
        self.assertEqual(doc["status"], "success")
        self.assertEqual(doc["data"]["api_key"]["name"], "my-app")
        self.assertEqual(doc["data"]["api_key"]["rate_limit"], 100)
        raw = doc["data"]["raw_key"]
        for hdr in ({"X-API-Key": raw}, {"Authorization": "Bearer " + raw}):
            status, headers, body = g.http_request(self.gw.port, "GET", "/api/auth/me", headers=hdr)
            self.assertEqual(status, 200, body)
            seen = g.json.loads(body)["headers"]
            self.assertEqual(seen.get("x-consumer-name"), "my-app", seen)
            self.assertNotIn("x-api-key", seen)
            self.assertNotIn(raw, body.decode() if isinstance(body, bytes) else body)
        status, _, body = g.http_request(self.gw.port, "GET", "/admin/apikeys")
        self.assertEqual(status, 401, body)

    def test_users_route(self):
        status, headers, body = g.http_request(self.gw.port, "GET", "/api/users/1")
        self.assertEqual(status, 200, body)
        doc = g.json.loads(body)
        self.assertEqual(doc.get("service"), "user-service", doc)
        self.assertEqual(doc.get("path"), "/api/users/1", doc)
        self.assertEqual(doc.get("method"), "GET", doc)

    def test_auth_route_post(self):
        status, headers, body = g.http_request(self.gw.port, "POST", "/api/auth/login", body=b'{"u":"a"}',
                                               headers={"Content-Type": "application/json"})
        self.assertEqual(status, 200, body)
        doc = g.json.loads(body)
        self.assertEqual(doc.get("service"), "auth-service", doc)
        self.assertEqual(doc.get("path"), "/api/auth/login", doc)
        self.assertEqual(doc.get("body_length"), 9, doc)

    def test_health_and_info(self):
        status, _, body = g.http_request(self.gw.port, "GET", "/health")
        self.assertEqual(status, 200, body)
        status, _, body = g.http_request(self.gw.port, "GET", "/info")
        self.assertEqual(status, 200, body)
        doc = g.json.loads(body)
        self.assertEqual([s.get("name") for s in doc.get("services", [])], ["auth-service", "user-service"], doc)

    def test_unknown_route(self):
        status, _, body = g.http_request(self.gw.port, "GET", "/api/other")
        self.assertEqual(status, 404, body)


if __name__ == "__main__":
    g.main()
