#!/usr/bin/env python3
"""Configuration files at scale and their errors from `gateway -t`: 200,000 routes, or 100,000 routes each
naming one of 100,000 services, load well within a bound (the duplicate check and the service lookup were
quadratic: over 60 s), a file too large to read is refused with the position
where reading stopped, and a filter that cannot be found is reported with file:line:col."""

import os
import subprocess
import time

import gwtest as g

ROUTES = 200000
BOUND_S = 20


class ConfigScaleTest(g.GatewayTestCase):
    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, path, timeout=BOUND_S):
        """gateway -t; (rc, output). A run past the bound is a failure, not a hang."""
        try:
            rc, out, err = g.run_gateway_cli(["-t", "-c", path], timeout=timeout, cwd=self.tmp)
        except subprocess.TimeoutExpired:
            self.fail("gateway -t -c %s did not finish within %d s" % (path, timeout * g.SLOW))
        return rc, out + err

    def test_many_routes_load_within_bound(self):
        head = ("listeners: [{address: 127.0.0.1, port: %d}]\nservices: [{name: s, targets: ['http://127.0.0.1:9']}]"
                "\nroutes:\n" % g.free_port())
        body = "".join("  - {prefix: /r%d/x, service: s}\n" % i for i in range(ROUTES))
        path = self.write("routes.yaml", head + body)
        t0 = time.monotonic()
        rc, out = self.check(path)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, out[-2000:])
        print("gateway -t with %d routes: %.2f s" % (ROUTES, took))
        dup = self.write("dup.yaml", head + body + "  - {prefix: /r7/x/, service: s}\n")
        rc, out = self.check(dup)
        self.assertEqual(rc, 1)
        self.assertIn("dup.yaml:%d:14: routes[%d].prefix: duplicate prefix '/r7/x' (also routes[7])"
                      % (ROUTES + 4, ROUTES), out)

    def test_many_services_and_routes_load_within_bound(self):
        n = ROUTES // 2  # each route names its own service: the lookup used to scan every service
        text = ["listeners: [{address: 127.0.0.1, port: %d}]\nservices:\n" % g.free_port()]
        text += ["  - {name: s%d, targets: ['http://127.0.0.1:9']}\n" % i for i in range(n)]
        text += ["routes:\n"] + ["  - {prefix: /r%d, service: s%d}\n" % (i, n - 1 - i) for i in range(n)]
        text += ["  - {prefix: /nope, service: s%d}\n" % n]
        path = self.write("services.yaml", "".join(text))
        t0 = time.monotonic()
        rc, out = self.check(path)
        print("gateway -t with %d services and routes: %.2f s" % (n, time.monotonic() - t0))
        self.assertEqual(rc, 1)
        self.assertIn("services.yaml:%d:30: routes[%d].service: no service named 's%d'" % (2 * n + 4, n, n), out)

    def test_too_large_file_names_position(self):
        line = "#" + "x" * 98 + "\n"
        path = self.write("big.yaml", "listeners: [{port: 8081}]\n" + line * 170000)
        rc, out = self.check(path)
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"big\.yaml:167773:91: the file is larger than the limit of 16777216 bytes")

    def test_missing_filter_names_line_and_column(self):
        path = self.write("nofilter.yaml", "listeners: [{port: 8081}]\nservices: [{name: s, targets: ['http://h']}]\n"
                          "pipeline:\n  - enabled: true\n    name: nosuchfilter\n")
        rc, out = self.check(path)
        self.assertEqual(rc, 1)
        self.assertIn("nofilter.yaml:5:11: pipeline filter 'nosuchfilter': filter not found", out)


if __name__ == "__main__":
    g.main()
