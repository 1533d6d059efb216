#!/usr/bin/env python3
# ctest-labels: asan
"""Compatibility: a filter built against the ABI 1.0 header (kept in tests/fixtures/abi10/, fixture
abi10.so) loads in this 1.1 gateway, `--check-filter` names it 1.0, and requests through a pipeline with it
(alone, and next to a 1.1 filter using the body phases) work as they did."""

import json

import gwfilters as gf
import gwtest as g


class Abi10CompatTest(gf.FilterTestCase):
    def test_check_filter_accepts_1_0(self):
        rc, text = self.check_filter(gf.fx("abi10"))
        self.assertEqual(rc, 0, text)
        self.assertRegex(text, r"abi:\s+1\.0 \(this gateway: %s\)" % gf.ABI_TEXT.replace(".", r"\."))
        self.assertRegex(text, r"phases:\s+request, response\n")
        self.assertIn("verdict:     compatible", text)

    def test_request_through_a_1_0_filter(self):
        up = self.start_upstream()
        gw = self.start_filters([{"name": "abi10", "tag": "old"}], up=up)
        for _ in range(3):  # the per-request state starts zeroed each time
            r = self.get_ok(gw.port, "/echo")
            self.assertEqual(r.header("x-abi10"), "old", r.summary())
            self.assertEqual(r.header("x-abi10-phases"), "2", r.summary())
            seen = dict((k.lower(), v) for k, v in json.loads(r.body)["headers"])
            self.assertEqual(seen.get("x-abi10-request"), "old", r.body)

    def test_1_0_filter_next_to_body_phases(self):
        up = self.start_upstream()
        gw = self.start_filters([{"name": "abi10", "tag": "old"}, {"name": "bodyguard", "limit": 100}], up=up)
        r = g.simple_request(gw.port, "POST", "/echo", body=b"x" * 50)
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.header("x-abi10-phases"), "2", r.summary())
        r = g.simple_request(gw.port, "POST", "/echo", body=b"x" * 500)
        self.assertEqual(r.status, 413, r.summary())
        self.assertEqual(r.header("x-abi10"), "old", "the 1.0 filter's response phase runs on the answer")
        self.assertEqual(len(up.requests()), 1)


if __name__ == "__main__":
    g.main()
