#!/usr/bin/env python3
# ctest-labels: asan
"""Header hygiene on the way upstream: fields named in Connection (RFC 9110 7.6.1) are gone before the
gateway adds its own, X-Real-IP is the gateway's answer (trusted_proxies), Forwarded gets this hop, an
absolute-form target's authority is the request's host, Host is a valid authority, names with '_' are
dropped unless allowed, and trust_request_id decides whether a client's X-Request-Id is kept."""

import gwtest as g


class HeaderHygieneTest(g.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream("up")

    def gateway(self, proxy=None, **extra):
        services = [{"name": "up", "targets": [self.up.url]}]
        routes = [{"prefix": "/keep", "service": "up", "preserve_host": True},
                  {"prefix": "/", "service": "up"}]
        if proxy is not None:
            extra["proxy"] = proxy
        self.gw = self.start_gateway(lambda p: g.base_config(p, services, routes, **extra))
        return self.gw

    def seen(self, target, headers=(), raw=None, host="gw.test", port=None, addr=g.LOCALHOST):
        """Sends one request; returns (response, headers the upstream saw)."""
        self.up.reset()
        with g.RawConn(port or self.gw.port, host=addr) as c:
            c.send(raw or g.request_bytes("GET", target, headers, host=host))
            r = c.read_response(method="GET")
        self.assertEqual(r.status, 200, r.summary())
        reqs = self.up.wait_requests(1)
        self.assertEqual(len(reqs), 1)
        return r, reqs[0]["headers"]

    def status_of(self, raw):
        with g.RawConn(self.gw.port) as c:
            c.send(raw)
            return c.read_response(method="GET").status

    # -- Connection-named fields --------------------------------------------------------------------
    def test_forged_xff_named_in_connection_is_dropped(self):
        self.gateway()
        _, h = self.seen("/x", [("Connection", "X-Forwarded-For"), ("X-Forwarded-For", "6.6.6.6")])
        self.assertEqual(g.hall(h, "x-forwarded-for"), ["127.0.0.1"],
                         "the upstream must see only the gateway's own X-Forwarded-For")

    def test_other_chain_fields_named_in_connection_are_dropped(self):
        self.gateway()
        _, h = self.seen("/x", [("Connection", "keep-alive, Forwarded, X-Real-IP"),
                                ("Forwarded", "for=6.6.6.6"), ("X-Real-IP", "6.6.6.6")])
        self.assertEqual(g.hall(h, "forwarded"), ['for=127.0.0.1;proto=http;host="gw.test"'])
        self.assertEqual(g.hall(h, "x-real-ip"), ["127.0.0.1"])

    def test_xff_chain_kept_and_peer_appended(self):
        self.gateway()
        _, h = self.seen("/x", [("X-Forwarded-For", "10.1.2.3")])
        self.assertEqual(g.hall(h, "x-forwarded-for"), ["10.1.2.3, 127.0.0.1"])

    # -- X-Real-IP and trusted proxies ----------------------------------------------------------------
    def test_x_real_ip_from_untrusted_client_replaced(self):
        self.gateway()
        _, h = self.seen("/x", [("X-Real-IP", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7")])
        self.assertEqual(g.hall(h, "x-real-ip"), ["127.0.0.1"])

    def test_trusted_proxy_names_the_client(self):
        self.gateway(proxy={"trusted_proxies": ["127.0.0.0/8", "10.0.0.0/8"]})
        _, h = self.seen("/x", [("X-Forwarded-For", "198.51.100.1, 203.0.113.7"), ("X-Forwarded-For", "10.0.0.3"),
                                ("X-Real-IP", "6.6.6.6")])
        self.assertEqual(g.hall(h, "x-real-ip"), ["203.0.113.7"], "right-most untrusted X-Forwarded-For entry")
        self.assertEqual(g.hall(h, "x-forwarded-for"), ["198.51.100.1, 203.0.113.7, 10.0.0.3, 127.0.0.1"])
        _, h = self.seen("/x", [("X-Real-IP", "203.0.113.9")])
        self.assertEqual(g.hall(h, "x-real-ip"), ["203.0.113.9"], "no X-Forwarded-For: X-Real-IP is believed")
        _, h = self.seen("/x", [("X-Forwarded-For", "junk, 10.0.0.4")])
        self.assertEqual(g.hall(h, "x-real-ip"), ["10.0.0.4"], "an unparsable entry ends the walk")

    def test_bad_trusted_proxy_refused_with_position(self):
        path = g.write_config(self.tmp + "/bad.yaml", g.base_config(
            g.free_port(), [{"name": "up", "targets": [self.up.url]}], [{"prefix": "/", "service": "up"}],
            proxy={"trusted_proxies": ["10.0.0.0/8", "10.1.2.3/8"]}))
        rc, out, err = g.run_gateway_cli(["-t", "-c", path])
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(err + out, r"bad\.yaml:\d+:\d+: proxy\.trusted_proxies\[1\]: '10\.1\.2\.3/8'")

    # -- Forwarded ------------------------------------------------------------------------------------
    def test_forwarded_gets_this_hop(self):
        self.gateway()
        _, h = self.seen("/x", [("Forwarded", "for=192.0.2.60;proto=https")], host="front.example:8443")
        self.assertEqual(g.hall(h, "forwarded"),
                         ['for=192.0.2.60;proto=https, for=127.0.0.1;proto=http;host="front.example:8443"'])

    def test_malformed_client_forwarded_dropped(self):
        # An open quote in the client's Forwarded used to swallow our element: a quote-aware RFC 7239 split
        # of 'for="x, for=127.0.0.1;proto=http;host="h"' gives one element, the client's.
        self.gateway()
        ours = 'for=127.0.0.1;proto=http;host="gw.test"'
        for bad in ('for="x', 'for="x\\"', 'for', 'for=', '=x', 'for=a b', 'for=a;;proto=b"c',
                    'for="a"b', 'for=a, =b'):
            _, h = self.seen("/x", [("Forwarded", bad)])
            self.assertEqual(g.hall(h, "forwarded"), [ours], bad)
        # one malformed field among several: the client's Forwarded is dropped whole
        _, h = self.seen("/x", [("Forwarded", "for=192.0.2.1"), ("Forwarded", 'for="x')])
        self.assertEqual(g.hall(h, "forwarded"), [ours])

    def test_wellformed_client_forwarded_kept(self):
        self.gateway()
        for good in ('for=192.0.2.60;proto=https;by=203.0.113.43', 'for="[2001:db8::1]:4711"',
                     'for=a, for=b', 'for=a ,for=b', 'for=a; proto=http', 'host="a\\"b";for=x', ';for=a;',
                     'for=a,,for=b', 'for="a,b;c=d"'):
            _, h = self.seen("/x", [("Forwarded", good)])
            self.assertEqual(g.hall(h, "forwarded"), [good + ', for=127.0.0.1;proto=http;host="gw.test"'], good)

    def test_forwarded_quotes_ipv6(self):
        port6 = g.free_port()
        listeners = [{"address": g.LOCALHOST, "port": None}, {"address": "::1", "port": port6}]

        def cfg(p):
            c = g.base_config(p, [{"name": "up", "targets": [self.up.url]}], [{"prefix": "/", "service": "up"}])
            listeners[0]["port"] = p
            c["listeners"] = listeners
            return c
        self.gw = self.start_gateway(cfg)
        _, h = self.seen("/x", port=port6, addr="::1")
        self.assertEqual(g.hall(h, "forwarded"), ['for="[::1]";proto=http;host="gw.test"'])
        self.assertEqual(g.hall(h, "x-real-ip"), ["::1"])

    # -- absolute form -------------------------------------------------------------------------------
    def test_absolute_form_authority_is_the_host(self):
        self.gateway()
        raw = b"GET http://abs.example:8080/keep/a?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n"
        _, h = self.seen(None, raw=raw)
        self.assertEqual(g.hall(h, "host"), ["abs.example:8080"], "preserve_host forwards the target's authority")
        self.assertEqual(g.hall(h, "x-forwarded-host"), ["abs.example:8080"])
        self.assertEqual(self.up.requests()[0]["target"], "/keep/a?q=1")

    def test_absolute_form_bad_authority_refused(self):
        self.gateway()
        for target in (b"http://user@abs.example/x", b"http:///x", b"http://abs.example:99999/x",
                       b"http://[::1/x",
                       b"http://h,for=6.6.6.6/x"):
            raw = b"GET " + target + b" HTTP/1.1\r\nHost: gw.test\r\n\r\n"
            self.assertEqual(self.status_of(raw), 400, target)
        self.assertEqual(self.up.requests(), [])

    # -- Host validation ------------------------------------------------------------------------------
    def test_invalid_host_refused(self):
        self.gateway()
        for host in (b"[::1", b"evil.com:99999", b"127.0.0.1%00.evil", b"evil.com:0", b"evil.com:", b":80",
                     b"a b", b"[fe80::1%25eth0]", b"evil.com:8a", b"[::1]x",
                     # RFC 3986 sub-delims, refused on purpose (a ',' made X-Forwarded-Host look like a chain)
                     b"h,for=6.6.6.6", b"h;proto=https", b"a=b", b"a!b", b"a$b", b"a&b", b"a'b", b"a(b)",
                     b"a*b", b"a+b"):
            raw = b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
            self.assertEqual(self.status_of(raw), 400, host)
        self.assertEqual(self.up.requests(), [], "nothing reaches the upstream")

    def test_valid_hosts_forwarded(self):
        self.gateway()
        for host in ("[::1]:8080", "example.com:443", "127.0.0.1", "xn--bcher-kva.example", "[2001:db8::1]"):
            _, h = self.seen("/x", host=host)
            self.assertEqual(g.hall(h, "x-forwarded-host"), [host])

    # -- underscores ------------------------------------------------------------------------------------
    def test_underscore_names_dropped_by_default(self):
        self.gateway()
        _, h = self.seen("/x", [("Transfer_Encoding", "chunked"), ("X_Custom", "1"), ("X-Keep", "yes")])
        names = {n.lower() for n, _ in h}
        self.assertFalse({"transfer_encoding", "x_custom"} & names, names)
        self.assertEqual(g.hall(h, "x-keep"), ["yes"])

    def test_underscores_allowed_but_never_as_our_fields(self):
        self.gateway(proxy={"underscores_in_headers": True})
        _, h = self.seen("/x", [("X_Custom", "1"), ("Transfer_Encoding", "chunked"), ("X_Real_IP", "6.6.6.6"),
                                ("X_Forwarded_For", "6.6.6.6")])
        names = {n.lower() for n, _ in h}
        self.assertEqual(g.hall(h, "x_custom"), ["1"])
        self.assertFalse({"transfer_encoding", "x_real_ip", "x_forwarded_for"} & names, names)

    def test_underscores_never_shadow_identity_or_present_fields(self):
        # CGI-style upstreams map X_Consumer_ID and X-Consumer-ID to the same HTTP_X_CONSUMER_ID: a client
        # must not forge the identity an authentication filter sets (or would set) that way.
        self.gateway(proxy={"underscores_in_headers": True})
        _, h = self.seen("/x", [("X_Consumer_ID", "admin"), ("x_consumer_name", "root"), ("X-Other", "1"),
                                ("X_Other", "2"), ("X_Custom", "3")])
        names = {n.lower() for n, _ in h}
        self.assertFalse({"x_consumer_id", "x_consumer_name", "x_other"} & names, names)
        self.assertEqual(g.hall(h, "x-other"), ["1"])
        self.assertEqual(g.hall(h, "x_custom"), ["3"])

    def test_underscores_never_shadow_a_filter_field(self):
        # tagger sets X-Tags in the request phase; X_Tags from the client must not reach the upstream beside it
        services = [{"name": "up", "targets": [self.up.url]}]
        self.gw = self.start_gateway(lambda p: dict(
            g.base_config(p, services, [{"prefix": "/", "service": "up"}], proxy={"underscores_in_headers": True}),
            plugin_dir=g.GW_FIXTURES_DIR, pipeline=[{"name": "tagger", "tag": "t"}]))
        _, h = self.seen("/x", [("X_Tags", "forged"), ("X_Custom", "1")])
        self.assertEqual(g.hall(h, "x-tags"), ["t"])
        self.assertEqual(g.hall(h, "x_tags"), [])
        self.assertEqual(g.hall(h, "x_custom"), ["1"])

    # -- X-Request-Id ---------------------------------------------------------------------------------
    def test_request_id_not_trusted_when_off(self):
        self.gateway(proxy={"trust_request_id": False})
        r, h = self.seen("/x", [("X-Request-Id", "client-id-123")])
        ids = g.hall(h, "x-request-id")
        self.assertEqual(len(ids), 1)
        self.assertNotEqual(ids[0], "client-id-123")
        self.assertEqual(r.header_all("x-request-id"), ids)

    def test_request_id_named_in_connection_is_not_kept(self):
        self.gateway()
        r, h = self.seen("/x", [("Connection", "X-Request-Id"), ("X-Request-Id", "client-id-123")])
        ids = g.hall(h, "x-request-id")
        self.assertEqual(len(ids), 1)
        self.assertNotEqual(ids[0], "client-id-123", "a field the client declared hop-by-hop is absent")
        self.assertEqual(r.header_all("x-request-id"), ids)

    def test_request_id_kept_by_default(self):
        self.gateway()
        _, h = self.seen("/x", [("X-Request-Id", "client-id-123")])
        self.assertEqual(g.hall(h, "x-request-id"), ["client-id-123"])


if __name__ == "__main__":
    g.main()
