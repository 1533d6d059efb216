#!/usr/bin/env python3
"""The admin console in a real browser: the shipped conf/gateway.yaml with its two demo services, and
Debian's chromium driven headless by tests/browser/console.mjs (playwright-core, installed by
scripts/install-deps.sh). The script logs in with Basic auth, finds both services, their breakers and
the key list on the page, creates a key and sees its raw key once, revokes it, stops the user service
and sees its breaker open on the page without a reload, resets it from the page, checks keyboard access
and a phone-sized screen, and fails on any console error. Screenshots are kept as test artefacts in
<build>/test-artifacts/console/. With GW_CONSOLE_SCREENSHOT=FILE the 1280x800 overview is also written
there (`make screenshot` regenerates docs/console.png this way)."""

import base64
import json
import os
import shutil
import subprocess
import threading
import time
import unittest

import gwtest as g

CONF = os.path.join(g.SOURCE_DIR, "conf", "gateway.yaml")
BROWSER_DIR = os.path.join(g.SOURCE_DIR, "tests", "browser")
SCRIPT = os.path.join(BROWSER_DIR, "console.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PASSWORD = "console-Test-pw"
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(g.GW_BIN)), "test-artifacts", "console")


def missing_parts():
    """What the test needs that is not there (scripts/install-deps.sh installs all of it)."""
    out = []
    if not shutil.which("node"):
        out.append("node")
    if not os.path.exists(CHROMIUM):
        out.append(CHROMIUM)
    if not os.path.exists(os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json")):
        out.append("tests/browser/node_modules/playwright-core (npm ci in tests/browser)")
    if not os.path.exists(g.GW_DEMO_BIN):
        out.append(g.GW_DEMO_BIN)
    return out


class ConsoleBrowserTest(g.GatewayTestCase):
    def test_console_in_chromium(self):
        # Installed by scripts/install-deps.sh: a missing part is a broken set-up, not a reason to skip.
        self.assertEqual(missing_parts(), [], "run scripts/install-deps.sh build")
        _, auth_url = self.start_demo_service("auth-service")
        user_proc, user_url = self.start_demo_service("user-service")
        port = g.free_port()
        shot = os.environ.get("GW_CONSOLE_SCREENSHOT")
        env = {"AUTH_SERVICE_URL": auth_url, "USER_SERVICE_URL": user_url, "PORT": str(port),
               "HOST": "127.0.0.1", "STORE_TYPE": None, "ADMIN_PASSWORD": PASSWORD, "ADMIN_AUTH_ENABLED": None,
               "ADMIN_USERNAME": None, "CB_MAX_FAILURES": None, "CB_RESET_TIMEOUT_SECONDS": None,
               # the picture's steady traffic comes from one address: room for it in the rate limit
               "RATE_LIMIT_RPM": "6000" if shot else None, "RATE_LIMIT_BURST": "500" if shot else None}
        gw = g.Gateway(self.tmp, None, port=port, env=env, config_path=CONF)
        self._gateways.append(gw)
        auth = "Basic " + base64.b64encode(("admin:" + PASSWORD).encode()).decode()
        status, _, body = g.http_request(port, "POST", "/admin/apikeys", body=b'{"name": "seed-key"}',
                                         headers={"Content-Type": "application/json", "Authorization": auth})
        self.assertEqual(status, 201, body)
        for path in ("/api/users/1", "/api/auth/me", "/api/users/2", "/nowhere"):  # some traffic to chart
            g.http_request(port, "GET", path)

        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        os.makedirs(ARTIFACTS, exist_ok=True)
        run_env = dict(os.environ, GW_URL="http://127.0.0.1:%d" % port, GW_USER="admin", GW_PASSWORD=PASSWORD,
                       OUT_DIR=ARTIFACTS, TRIP_PID=str(user_proc.pid), TRIP_SERVICE="user-service",
                       TRIP_PATH="/api/users/1", KEY_PATH="/api/auth/me", SEED_KEY="seed-key", CHROMIUM=CHROMIUM)
        stop = threading.Event()
        if shot:  # for the picture in docs/: some steady traffic, so the charts have lines (at most 30 s)
            run_env["SCREENSHOT"] = os.path.abspath(shot)

            def traffic():
                paths = ["/api/auth/me", "/api/users/1", "/api/users/2", "/api/auth/login", "/nowhere"]
                for i in range(600):
                    if stop.is_set():
                        return
                    try:
                        g.http_request(port, "GET", paths[i % len(paths)], timeout=2)
                    except OSError:
                        pass
                    time.sleep(0.05)
            t = threading.Thread(target=traffic, daemon=True)
            t.start()
            self.addCleanup(t.join, 5)
            self.addCleanup(stop.set)
        try:
            p = subprocess.run(["node", SCRIPT], cwd=BROWSER_DIR, env=run_env, capture_output=True, text=True,
                               timeout=180)
        except subprocess.TimeoutExpired as e:
            self.fail("the browser script did not finish in 180 s; output so far:\n%s\n%s"
                      % (e.stdout, e.stderr))
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        self.assertTrue(lines, "no result from the browser script (rc %d):\n%s\n%s" % (p.returncode, p.stdout,
                                                                                        p.stderr[-4000:]))
        result = json.loads(lines[-1])
        print("\n".join("  browser: " + s for s in result.get("steps", [])))
        self.assertTrue(result.get("ok"), "%s\nsteps done: %s\nstderr: %s\ngateway log:\n%s"
                        % (result.get("error"), result.get("steps"), p.stderr[-3000:], gw.log(3000)))
        self.assertEqual(p.returncode, 0)
        for name in ("01-overview-1280x800.png", "03-breaker-open.png", "04-phone-390.png"):
            self.assertTrue(os.path.getsize(os.path.join(ARTIFACTS, name)) > 10000, name)


if __name__ == "__main__":
    g.main()
