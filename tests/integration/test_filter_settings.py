#!/usr/bin/env python3
# ctest-labels: asan
"""Settings tables (filter ABI 1.1 and later) from outside: `gateway --describe-filter` (text and --json) on each
first-party filter lists every setting docs/configuration.md names for it, with that default; docs/filters.md
lists them too; and a wrong setting in the shipped conf/gateway.yaml (`burst: lots` under ratelimit, an
unknown key under apikey, a non-route key under a route) makes `gateway -t` exit 1 with file:line:col and
the filter and key named."""

import json
import os
import re
import unittest

import gwtest as g

PLUGIN_DIR = os.path.join(os.path.dirname(g.GW_BIN), "plugins")
CONF = os.path.join(g.SOURCE_DIR, "conf", "gateway.yaml")
FILTERS = ("adminauth", "apikey", "breaker", "console", "cors", "logging", "metrics", "ratelimit", "retry")
ENDPOINT_ONLY = ("console",)  # serves endpoints, runs no phase
CHECK_ENV = {"STORE_TYPE": None, "ADMIN_PASSWORD": "x", "ADMIN_AUTH_ENABLED": None,
             "RATE_LIMIT_RPM": None, "RATE_LIMIT_BURST": None}


def so(name):
    return os.path.join(PLUGIN_DIR, name + ".so")


def documented_settings():
    """{filter: {key: default}} from the table in docs/configuration.md's "Filter settings" section."""
    with open(os.path.join(g.SOURCE_DIR, "docs", "configuration.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Filter settings"):]
    found = {}
    for row in re.finditer(r"^\| `([a-z_]+)` \| (.*?) \| (.*?) \|$", section, re.M):
        keys = {m.group(1): m.group(2) for m in re.finditer(r"`([a-z_]+)` \(([^)]*)\)", row.group(2) + row.group(3))}
        found[row.group(1)] = keys
    return found


def described(name):
    rc, out, err = g.run_gateway_cli(["--describe-filter", so(name), "--json"])
    if rc != 0:
        raise AssertionError("--describe-filter %s --json: rc %d: %s %s" % (name, rc, out, err))
    return json.loads(out)


class DescribeFilterTest(unittest.TestCase):
    def test_configuration_md_names_every_filter(self):
        self.assertEqual(set(documented_settings()), set(FILTERS))

    def test_every_documented_setting_is_described_with_its_default(self):
        for name, keys in documented_settings().items():
            with self.subTest(filter=name):
                d = described(name)
                self.assertEqual(d["name"], name)
                self.assertEqual(d["abi"], "%d.%d" % g.filter_abi())
                if name not in ENDPOINT_ONLY:
                    self.assertIn("request", d["phases"])
                self.assertTrue(d["settings_table"])
                got = {s["name"]: s for s in d["settings"]}
                for key, default in keys.items():
                    self.assertIn(key, got, "%s.%s is in docs/configuration.md but not described" % (name, key))
                    want = "(none)" if default.startswith("none") else default
                    self.assertEqual(got[key]["default"], want, "%s.%s" % (name, key))
                    self.assertTrue(got[key]["help"], "%s.%s has no help" % (name, key))
                # and nothing the filter takes is missing from the documentation
                self.assertEqual(set(got), set(keys), name)

    def test_text_form(self):
        rc, out, err = g.run_gateway_cli(["--describe-filter", so("ratelimit")])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("name:        ratelimit\n", out)
        self.assertRegex(out, r"abi:\s+1\.2\n")
        self.assertIn("phases:      request\n", out)
        self.assertIn("  burst: integer, default 10, range 1..1000000000, per-route\n", out)
        self.assertIn("  headers: enum, default legacy, one of legacy, ietf, both, none\n", out)
        self.assertIn("  store_timeout: duration, default 100ms, range 1ms..1m\n", out)
        rc, out, err = g.run_gateway_cli(["--describe-filter", so("adminauth")])
        self.assertIn("  password: string, default (none), secret\n", out)

    def test_refusals_exit_like_check_filter(self):
        missing = os.path.join(PLUGIN_DIR, "no-such-filter.so")
        rc, out, err = g.run_gateway_cli(["--describe-filter", missing])
        self.assertEqual(rc, 1, out + err)
        self.assertIn("REFUSED", out)
        rc, out, err = g.run_gateway_cli(["--describe-filter", missing, "--json"])
        self.assertEqual(rc, 1, out + err)
        self.assertIn("cannot open", json.loads(out)["error"])
        rc, out, err = g.run_gateway_cli(["--json"])
        self.assertEqual(rc, 2, out + err)

    @unittest.skipUnless(os.path.exists(os.path.join(g.GW_FIXTURES_DIR, "tagger.so")), "fixtures not built")
    def test_filter_without_table(self):
        rc, out, err = g.run_gateway_cli(["--describe-filter", os.path.join(g.GW_FIXTURES_DIR, "tagger.so")])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("settings:    (no table: the filter reads its settings itself)", out)

    def test_filters_md_lists_every_setting(self):
        with open(os.path.join(g.SOURCE_DIR, "docs", "filters.md"), encoding="utf-8") as f:
            doc = f.read()
        for name in FILTERS:
            self.assertIn("\n## %s\n" % name, doc)
            for s in described(name)["settings"]:
                self.assertIn("| `%s` | %s | `%s` |" % (s["name"], s["type"], s["default"]), doc, name)

    def test_sdk_readme_shows_the_built_example(self):
        """The README's settings-table filter is the one built and tested (tests/unit/sdk/size_limit_test.c)."""
        with open(os.path.join(g.SOURCE_DIR, "sdk", "examples", "size_limit", "size_limit.c"), encoding="utf-8") as f:
            src = f.read()
        with open(os.path.join(g.SOURCE_DIR, "sdk", "README.md"), encoding="utf-8") as f:
            readme = f.read()
        self.assertLess(src.count("\n"), 50)
        self.assertIn("```c\n" + src + "```", readme)


class ShippedConfigTest(g.GatewayTestCase):
    def edited(self, after, insert):
        """conf/gateway.yaml with `insert` (lines) after the first line equal to `after`; its path."""
        with open(CONF, encoding="utf-8") as f:
            lines = f.read().split("\n")
        i = lines.index(after)
        lines[i + 1:i + 1] = insert
        path = os.path.join(self.tmp, "gateway.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        return path, i + 2  # the 1-based line of the first inserted line

    def check(self, path):
        return g.run_gateway_cli(["-t", "-c", path], env=CHECK_ENV)

    def test_shipped_config_passes(self):
        rc, out, err = self.check(CONF)
        self.assertEqual(rc, 0, out + err)

    def test_burst_lots(self):
        with open(CONF, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("    burst: ${RATE_LIMIT_BURST:-10}\n", text)
        path = os.path.join(self.tmp, "gateway.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace("    burst: ${RATE_LIMIT_BURST:-10}\n", "    burst: lots\n"))
        line = text[:text.index("    burst: ${RATE_LIMIT_BURST")].count("\n") + 1
        rc, out, err = self.check(path)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("%s:%d:12: ratelimit.burst: expected an integer (1..1000000000), got 'lots'" % (path, line), err)

    def test_unknown_key_under_apikey(self):
        path, line = self.edited("  - name: apikey", ["    colour: red"])
        rc, out, err = self.check(path)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("%s:%d:5: apikey.colour: unknown setting (allowed: require, header, prefix, cache_ttl, "
                      "stale_if_error, admin_path)" % (path, line), err)

    def test_out_of_range_and_bad_enum(self):
        path, line = self.edited("  - name: ratelimit", ["    headers: all", "    store_timeout: 2h"])
        rc, out, err = self.check(path)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("%s:%d:14: ratelimit.headers: 'all' is not one of legacy, ietf, both, none" % (path, line), err)
        path, line = self.edited("  - name: ratelimit", ["    store_timeout: 2h"])
        rc, out, err = self.check(path)
        self.assertIn("%s:%d:20: ratelimit.store_timeout: 2h is out of range 1ms..1m" % (path, line), err)

    def test_per_route_keys(self):
        routes = [{"prefix": "/api", "service": "up", "filters": {"ratelimit": {"headers": "none"}}}]
        cfg = g.base_config(g.free_port(), [{"name": "up", "targets": ["http://127.0.0.1:9"]}], routes,
                            pipeline=[{"name": "ratelimit"}])
        path = g.write_config(os.path.join(self.tmp, "route.yaml"), cfg)
        rc, out, err = g.run_gateway_cli(["-t", "-c", path])
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(err, r"route\.yaml:\d+:\d+: ratelimit\.headers: not a per-route setting "
                              r"\(per-route settings: rpm, burst, disabled\)")

    def test_route_settings_merge_over_the_pipeline(self):
        """A route's burst replaces the pipeline's on that route only; the pipeline's headers setting holds
        on both (merged), and a disabled route is not limited at all."""
        up = self.start_upstream()
        routes = [{"prefix": "/tight", "service": "up", "filters": {"ratelimit": {"burst": 1}}},
                  {"prefix": "/free", "service": "up", "filters": {"ratelimit": {"disabled": True}}},
                  {"prefix": "/", "service": "up"}]
        gw = self.proxy_gateway(up, routes=routes, pipeline=[{"name": "ratelimit", "burst": 3, "rpm": 1,
                                                              "headers": "ietf"}])
        got = [g.http_request(gw.port, "GET", "/tight/x") for _ in range(2)]
        self.assertEqual([st for st, _, _ in got], [200, 429])
        self.assertNotIn("x-ratelimit-limit", got[0][1])
        self.assertIn("q=1;", got[0][1].get("ratelimit-policy", ""))
        statuses = [g.http_request(gw.port, "GET", "/other")[0] for _ in range(4)]
        self.assertEqual(statuses, [200, 200, 200, 429])
        statuses = [g.http_request(gw.port, "GET", "/free/x")[0] for _ in range(5)]
        self.assertEqual(statuses, [200] * 5)
    def test_reloads_free_the_settings(self):
        """Table filters with lists, CIDRs, prefixes and per-route merged copies, reloaded with changed
        settings: each generation's values apply, and (under ASan/LSan) nothing of the old ones leaks."""
        up = self.start_upstream()

        def cfg(port, burst):
            routes = [{"prefix": "/tight", "service": "up",
                       "filters": {"ratelimit": {"burst": 1}, "apikey": {"require": True}}},
                      {"prefix": "/", "service": "up"}]
            pipeline = [{"name": "apikey", "cache_ttl": "1s"},
                        {"name": "ratelimit", "burst": burst, "rpm": 1, "exempt": ["/health", "/info", "/open/"],
                         "trusted_proxies": ["10.0.0.0/8", "::1"]}]
            return g.base_config(port, [{"name": "up", "targets": [up.url]}], routes, pipeline=pipeline)

        port = g.free_port()
        gw = self.start_gateway(cfg(port, 2), port=port)
        for burst in (3, 4, 2):
            statuses = [g.http_request(gw.port, "GET", "/b%d" % burst)[0] for _ in range(burst + 1)]
            gw.reload(cfg(port, burst + 1))
            self.assertEqual(statuses[-1], 429, statuses)
        self.assertEqual(g.http_request(gw.port, "GET", "/tight/x")[0], 401)  # require, per route
        self.assertEqual([g.http_request(gw.port, "GET", "/open/x")[0] for _ in range(5)], [200] * 5)


if __name__ == "__main__":
    g.main()
