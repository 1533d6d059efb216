#!/usr/bin/env python3
"""Upstream HTTP/1.1 server for the integration tests (standard library only).

Runs as its own process:
  python3 upstream.py --ready FILE [--port N] [--name NAME] [--tls-cert CERT --tls-key KEY]
It binds 127.0.0.1 (port 0 = any free port), then writes {"port": P, "control_port": C, "pid": PID,
"tls": BOOL} to FILE (atomically) so the harness knows where it listens.

With --tls-cert/--tls-key (PEM files) the data port speaks TLS (1.2 or later): each accepted connection is
wrapped with the ssl module and does its handshake in its own thread, then serves exactly what the plain
port serves. A failed handshake is recorded as that connection's error ("TLS handshake: ..."), with no
request. Each connection record also has "tls" (bool) and, for TLS, "sni" (the server name the client
sent, or null), "tls_version" and "cipher". Where a plain connection half-closes (shutdown(SHUT_WR)), a
TLS one sends close_notify instead. The control port is always plain HTTP.

Data port (raw sockets, one thread per connection, keep-alive by default) serves:
  /echo (and any path not listed below)  JSON describing the request (method, target, path, query,
                                          headers, body length and sha256, connection id)
  /upload[?rate_kib=R]                   same JSON; reads the body streaming, optionally throttled
  /bytes/N                               N pattern bytes with Content-Length, written in pieces
  /chunked/N[?trailer=1]                 N pattern bytes, chunked (varied chunk sizes)
  /close/N                               N pattern bytes, close-delimited (no Content-Length, no TE)
  /hang                                  reads the request, never answers (waits for the peer to close)
  /stall/N                               Content-Length 2N, sends N bytes, then never sends more
  /slow?ms=M[&size=S]                    waits M ms, then answers S pattern bytes (default 100)
  /status/CODE                           answers with that status
  /raw?b64=B                             sends the urlsafe-base64-decoded bytes B as they are, then closes
  /ws                                    RFC 6455 handshake, then echoes every data frame
Query parameters understood everywhere:
  close=1            answer with "Connection: close" and close
  close_after_ms=M   after answering, close the connection silently if no new request starts within M ms
  hdr=Name:Value     add a response header (repeatable)
  status=CODE        status code of an echo answer

Control port (HTTP, for the tests only, never proxied):
  GET  /state        {"accepted": n, "conns": [...], "requests": [...]}; heads as latin-1 text,
                     recorded body bytes (first 1 MiB) base64
  POST /reset        forget everything recorded
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

RECORD_BODY_CAP = 1 << 20
MAX_HEAD = 1 << 20
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
IDLE_LIMIT_S = 120.0      # a connection with no byte for this long is closed
HANG_LIMIT_S = 300.0      # /hang and /stall give up after this
TLS_HANDSHAKE_S = 10.0    # a TLS client that has not finished its handshake by then is dropped


def pattern_block(i):
    """64 KiB block number i of the deterministic test pattern (each block differs)."""
    head = struct.pack(">Q", i)
    return head + _BASE[: 65536 - 8]


_BASE = bytes((j * 7 + 3) & 0xFF for j in range(65536))


def pattern_iter(n, piece=65536):
    """Yields the first n bytes of the test pattern, in pieces of at most `piece` bytes."""
    i = 0
    left = n
    while left > 0:
        blk = pattern_block(i)
        i += 1
        if left < len(blk):
            blk = blk[:left]
        left -= len(blk)
        for off in range(0, len(blk), piece):
            yield blk[off: off + piece]


def pattern_bytes(n):
    return b"".join(pattern_iter(n))


class Stopped(Exception):
    pass


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.accepted = 0
            self.conns = {}
            self.requests = []
            self.next_conn = 1

    def new_conn(self, peer):
        with self.lock:
            cid = self.next_conn
            self.next_conn += 1
            self.accepted += 1
            self.conns[cid] = {"id": cid, "peer": "%s:%d" % peer[:2], "opened": time.time(),
                               "closed": None, "bytes_in": 0, "requests": 0, "ws_frames": 0,
                               "ws_closed": False, "error": None, "tls": False}
            return cid

    def conn_update(self, cid, **kw):
        with self.lock:
            c = self.conns.get(cid)
            if c is None:
                return
            for k, v in kw.items():
                if k in ("bytes_in", "requests", "ws_frames"):
                    c[k] += v
                else:
                    c[k] = v

    def add_request(self, rec):
        with self.lock:
            rec["seq"] = len(self.requests)
            self.requests.append(rec)
            c = self.conns.get(rec["conn_id"])
            if c is not None:
                c["requests"] += 1
            return rec["seq"]

    def snapshot(self, with_bodies=True):
        with self.lock:
            reqs = []
            for r in self.requests:
                d = dict(r)
                raw = d.pop("_body_raw", None)
                d["body_raw_b64"] = base64.b64encode(bytes(raw)).decode() if (with_bodies and raw) else ""
                d["headers"] = [list(h) for h in d["headers"]]
                reqs.append(d)
            return {"accepted": self.accepted, "conns": [dict(c) for c in self.conns.values()],
                    "requests": reqs}


class Conn:
    """One accepted connection: buffered reads with idle limit and stop checks."""

    def __init__(self, server, sock, cid):
        self.server = server
        self.sock = sock
        self.cid = cid
        self.buf = bytearray()
        self.eof = False
        sock.settimeout(0.25)

    def _recv(self, deadline=None):
        """Reads more bytes into buf. Returns False on EOF. Honors server stop, idle limit, deadline."""
        start = time.monotonic()
        while True:
            if self.server.stopping.is_set():
                raise Stopped()
            try:
                data = self.sock.recv(262144)
            except socket.timeout:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise socket.timeout()
                if now - start > IDLE_LIMIT_S:
                    raise Stopped()
                continue
            except (ConnectionResetError, BrokenPipeError, OSError):
                self.eof = True
                return False
            if not data:
                self.eof = True
                return False
            self.server.rec.conn_update(self.cid, bytes_in=len(data))
            self.buf += data
            return True

    def read_head(self, idle_ms=None):
        """Returns the head bytes (through CRLFCRLF) or None on a clean EOF before any byte."""
        deadline = None if idle_ms is None else time.monotonic() + idle_ms / 1000.0
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[: i + 4])
                del self.buf[: i + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise ValueError("head too large")
            try:
                more = self._recv(deadline if not self.buf else None)
            except socket.timeout:
                return "idle"
            if not more:
                if self.buf:
                    raise ValueError("EOF inside a head")
                return None

    def read_exact_into(self, n, sink):
        """Moves exactly n bytes to sink(bytes) in pieces. Raises ValueError on early EOF."""
        while n > 0:
            if not self.buf:
                if not self._recv():
                    raise ValueError("EOF inside a body")
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take

    def read_line(self, limit=65536):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[: i + 2])
                del self.buf[: i + 2]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self._recv():
                raise ValueError("EOF inside chunked framing")

    def sendall(self, data):
        self.sock.settimeout(30)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(0.25)

    def shutdown_write(self):
        """Tells the peer that nothing more comes from us, keeping the connection open for reading.
        Plain TCP: shutdown(SHUT_WR). TLS: a close_notify alert (unwrap() sends it, then waits up to 2 s
        for the peer's own close_notify or its close); later reads then see EOF."""
        if not isinstance(self.sock, ssl.SSLSocket):
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        self.sock.settimeout(2.0)
        try:
            self.sock = self.sock.unwrap()
        except (OSError, ValueError):
            pass  # the alert went out; the peer closed or did not answer in time
        finally:
            self.sock.settimeout(0.25)


def parse_head(head):
    text = head.decode("latin-1")
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line %r" % lines[0])
    method, target, version = parts
    headers = []
    for ln in lines[1:]:
        if ":" not in ln:
            raise ValueError("bad header line %r" % ln)
        name, value = ln.split(":", 1)
        headers.append((name, value.strip(" \t")))
    return method, target, version, headers


def hget(headers, name):
    name = name.lower()
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def hall(headers, name):
    name = name.lower()
    return [v for n, v in headers if n.lower() == name]


class Body:
    """Reads a request body streaming; keeps the first RECORD_BODY_CAP wire bytes, length, sha256."""

    def __init__(self, conn, rec, headers):
        self.conn = conn
        self.rec = rec
        te = hall(headers, "transfer-encoding")
        cl = hall(headers, "content-length")
        if te:
            self.kind = "chunked"
        elif cl:
            self.kind = "length"
            self.length = int(cl[0].strip())
        else:
            self.kind = "none"
        rec["body_framing"] = self.kind
        self.sha = hashlib.sha256()
        self.n = 0

    def _raw(self, data):
        raw = self.rec["_body_raw"]
        if len(raw) < RECORD_BODY_CAP:
            raw += data[: RECORD_BODY_CAP - len(raw)]
        else:
            self.rec["body_truncated"] = True

    def _payload(self, data):
        self.sha.update(data)
        self.n += len(data)
        self.rec["body_length"] = self.n

    def read_all(self, throttle_kib=None):
        t0 = time.monotonic()

        def sink(data):
            self._raw(data)
            self._payload(data)
            if throttle_kib:
                want = t0 + (self.n / 1024.0) / throttle_kib
                delay = want - time.monotonic()
                if delay > 0:
                    time.sleep(min(delay, 1.0))

        if self.kind == "length":
            left = self.length
            while left > 0:
                step = min(left, 65536)
                self.conn.read_exact_into(step, sink)
                left -= step
        elif self.kind == "chunked":
            while True:
                line = self.conn.read_line()
                self._raw(line)
                size_txt = line[:-2].split(b";", 1)[0].strip()
                size = int(size_txt, 16)
                if size == 0:
                    while True:  # trailers up to the empty line
                        t = self.conn.read_line()
                        self._raw(t)
                        if t == b"\r\n":
                            break
                    break
                left = size
                while left > 0:
                    step = min(left, 65536)
                    self.conn.read_exact_into(step, sink)
                    left -= step
                crlf = bytearray()
                self.conn.read_exact_into(2, lambda d: crlf.extend(d))
                self._raw(bytes(crlf))
                if bytes(crlf) != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
        self.rec["body_sha256"] = self.sha.hexdigest()
        self.rec["body_length"] = self.n
        self.rec["body_complete"] = True
        return self.n, self.sha.hexdigest()


def server_tls_context(cert, key):
    """TLS 1.2+ server context for the data port; records the SNI of each handshake on its socket."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)

    def on_sni(sslsock, server_name, _ctx):
        sslsock.gw_sni = server_name  # None when the client sent no server name
        return None

    ctx.sni_callback = on_sni
    return ctx


class Upstream:
    def __init__(self, name, port, tls_context=None):
        self.name = name
        self.tls_context = tls_context
        self.rec = Recorder()
        self.stopping = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(256)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]

    # --- accept loop -----------------------------------------------------------------------------
    def serve(self):
        while not self.stopping.is_set():
            try:
                s, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                time.sleep(0.01)
                continue
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cid = self.rec.new_conn(peer)
            t = threading.Thread(target=self.handle, args=(s, cid), daemon=True)
            t.start()
        self.lsock.close()

    def tls_handshake(self, sock, cid):
        """Wraps an accepted socket and completes the server handshake. Returns the TLS socket, or None
        (after recording why) when the handshake fails or times out."""
        try:
            tsock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError) as e:
            self.rec.conn_update(cid, error="TLS handshake: %s: %s" % (type(e).__name__, e))
            return None
        tsock.settimeout(TLS_HANDSHAKE_S)
        try:
            tsock.do_handshake()
        except (OSError, ValueError) as e:  # ssl.SSLError, reset, timeout, EOF
            self.rec.conn_update(cid, tls=True, sni=getattr(tsock, "gw_sni", None),
                                 error="TLS handshake: %s: %s" % (type(e).__name__, e))
            try:
                tsock.close()
            except OSError:
                pass
            return None
        cipher = tsock.cipher()
        self.rec.conn_update(cid, tls=True, sni=getattr(tsock, "gw_sni", None), tls_version=tsock.version(),
                             cipher=cipher[0] if cipher else None)
        return tsock

    def handle(self, sock, cid):
        if self.tls_context is not None:
            tsock = self.tls_handshake(sock, cid)
            if tsock is None:
                try:
                    sock.close()
                except OSError:
                    pass
                self.rec.conn_update(cid, closed=time.time())
                return
            sock = tsock
        conn = Conn(self, sock, cid)
        try:
            self.loop(conn)
        except Stopped:
            pass
        except Exception as e:  # recorded, never fatal for the server
            self.rec.conn_update(cid, error="%s: %s" % (type(e).__name__, e))
        finally:
            try:
                sock.close()
            except OSError:
                pass
            self.rec.conn_update(cid, closed=time.time())

    def loop(self, conn):
        idle_ms = None
        while True:
            head = conn.read_head(idle_ms)
            idle_ms = None
            if head is None or head == "idle":
                return
            rec = {"conn_id": conn.cid, "time": time.time(), "head": head.decode("latin-1"),
                   "_body_raw": bytearray(), "body_length": 0, "body_sha256": hashlib.sha256(b"").hexdigest(),
                   "body_complete": False, "body_truncated": False, "error": None}
            try:
                method, target, version, headers = parse_head(head)
            except ValueError as e:
                rec.update(method="", target="", version="", headers=[], error=str(e))
                self.rec.add_request(rec)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            u = urllib.parse.urlsplit(target)
            q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
            rec.update(method=method, target=target, version=version, headers=headers,
                       path=u.path, query=u.query)
            self.rec.add_request(rec)
            req = Request(conn, rec, method, target, version, headers, u.path, u.query, q)
            try:
                keep = self.dispatch(req)
            except ValueError as e:
                rec["error"] = str(e)
                try:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass
                return
            if not keep:
                return
            if "close_after_ms" in q:
                idle_ms = int(q["close_after_ms"][0])

    # --- responses -------------------------------------------------------------------------------
    def respond(self, req, status, body=b"", ctype="application/octet-stream", extra=None, close=None):
        """Sends a Content-Length response. Returns True to keep the connection."""
        if close is None:
            close = req.wants_close()
        hdrs = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        hdrs += extra or []
        hdrs += req.extra_headers()
        if close:
            hdrs.append(("Connection", "close"))
        elif req.version == "HTTP/1.0":
            hdrs.append(("Connection", "keep-alive"))
        no_body = req.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        if status in (204, 304):
            hdrs = [h for h in hdrs if h[0] != "Content-Length"]
        out = self.status_line(status) + "".join("%s: %s\r\n" % h for h in hdrs) + "\r\n"
        data = out.encode("latin-1") + (b"" if no_body else body)
        req.rec["response_status"] = status
        req.conn.sendall(data)
        return not close

    @staticmethod
    def status_line(status):
        reasons = {200: "OK", 101: "Switching Protocols", 204: "No Content", 304: "Not Modified",
                   400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}
        return "HTTP/1.1 %d %s\r\n" % (status, reasons.get(status, "Status"))

    def echo_json(self, req, n, sha):
        return {"server": self.name, "method": req.method, "target": req.target, "path": req.path,
                "query": req.query, "version": req.version, "headers": [list(h) for h in req.headers],
                "body_length": n, "body_sha256": sha, "length": n, "sha256": sha,
                "conn_id": req.conn.cid, "seq": req.rec["seq"]}

    def dispatch(self, req):
        p = req.path
        if p == "/ws" and (hget(req.headers, "upgrade") or "").lower() == "websocket":
            return self.websocket(req)
        throttle = None
        if p == "/upload" and "rate_kib" in req.q:
            throttle = float(req.q["rate_kib"][0])
        n, sha = Body(req.conn, req.rec, req.headers).read_all(throttle)
        if p.startswith("/bytes/"):
            return self.send_bytes(req, int(p[len("/bytes/"):]))
        if p.startswith("/chunked/"):
            return self.send_chunked(req, int(p[len("/chunked/"):]))
        if p.startswith("/close/"):
            return self.send_close_delimited(req, int(p[len("/close/"):]))
        if p == "/hang":
            self.wait_peer_close(req.conn)
            return False
        if p.startswith("/stall/"):
            k = int(p[len("/stall/"):])
            head = self.status_line(200) + "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (2 * k)
            req.conn.sendall(head.encode() + pattern_bytes(k))
            self.wait_peer_close(req.conn)
            return False
        if p == "/slow":
            ms = int(req.q.get("ms", ["1000"])[0])
            size = int(req.q.get("size", ["100"])[0])
            if self.stopping.wait(min(ms, 60000) / 1000.0):
                raise Stopped()
            return self.respond(req, 200, pattern_bytes(size))
        if p == "/raw":
            # arbitrary response bytes (urlsafe base64 in b64=...), then close
            req.conn.sendall(base64.urlsafe_b64decode(req.q["b64"][0]))
            req.rec["response_status"] = "raw"
            req.conn.shutdown_write()
            self.drain_until_close(req.conn, 2.0)
            return False
        if p.startswith("/status/"):
            code = int(p[len("/status/"):])
            body = b"" if code in (204, 304) else ("status %d\n" % code).encode()
            return self.respond(req, code, body, ctype="text/plain")
        status = int(req.q.get("status", ["200"])[0])
        body = json.dumps(self.echo_json(req, n, sha)).encode()
        return self.respond(req, status, body, ctype="application/json")

    def send_bytes(self, req, n):
        close = req.wants_close()
        hdrs = "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n" % n
        hdrs += "".join("%s: %s\r\n" % h for h in req.extra_headers())
        if close:
            hdrs += "Connection: close\r\n"
        req.conn.sendall((self.status_line(200) + hdrs + "\r\n").encode("latin-1"))
        if req.method != "HEAD":
            for piece in pattern_iter(n):
                if self.stopping.is_set():
                    raise Stopped()
                req.conn.sendall(piece)
        return not close

    def send_chunked(self, req, n):
        close = req.wants_close()
        hdrs = "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
        if req.q.get("trailer"):
            hdrs += "Trailer: X-Trailer\r\n"
        hdrs += "".join("%s: %s\r\n" % h for h in req.extra_headers())
        if close:
            hdrs += "Connection: close\r\n"
        req.conn.sendall((self.status_line(200) + hdrs + "\r\n").encode("latin-1"))
        if req.method == "HEAD":
            return not close
        sizes = [1, 10, 1000, 8192, 3, 65536, 17]
        data = pattern_bytes(n)
        off = 0
        k = 0
        while off < n:
            sz = min(sizes[k % len(sizes)], n - off)
            k += 1
            ext = ";ext=1" if k % 3 == 0 else ""
            req.conn.sendall(b"%x%s\r\n" % (sz, ext.encode()) + data[off: off + sz] + b"\r\n")
            off += sz
        tail = b"0\r\n"
        if req.q.get("trailer"):
            tail += b"X-Trailer: yes\r\n"
        req.conn.sendall(tail + b"\r\n")
        return not close

    def send_close_delimited(self, req, n):
        hdrs = "Content-Type: application/octet-stream\r\n"
        hdrs += "".join("%s: %s\r\n" % h for h in req.extra_headers())
        req.conn.sendall((self.status_line(200) + hdrs + "\r\n").encode("latin-1"))
        if req.method != "HEAD":
            for piece in pattern_iter(n):
                req.conn.sendall(piece)
        req.conn.shutdown_write()
        self.drain_until_close(req.conn, 2.0)
        return False

    def drain_until_close(self, conn, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                if not conn._recv(deadline=end):
                    return
            except socket.timeout:
                return
            conn.buf.clear()

    def wait_peer_close(self, conn):
        end = time.monotonic() + HANG_LIMIT_S
        while time.monotonic() < end:
            try:
                if not conn._recv(deadline=end):
                    return
            except socket.timeout:
                return
            conn.buf.clear()

    # --- websocket -------------------------------------------------------------------------------
    def websocket(self, req):
        key = hget(req.headers, "sec-websocket-key") or ""
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        resp = (self.status_line(101) + "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: %s\r\n\r\n" % accept)
        req.rec["response_status"] = 101
        req.conn.sendall(resp.encode())
        conn = req.conn
        while True:
            frame = self.ws_read_frame(conn)
            if frame is None:
                return False
            fin, opcode, masked, payload = frame
            self.rec.conn_update(conn.cid, ws_frames=1)
            if not masked:
                self.rec.conn_update(conn.cid, error="unmasked client frame")
            if opcode == 0x8:
                conn.sendall(self.ws_frame(True, 0x8, payload[:125]))
                self.rec.conn_update(conn.cid, ws_closed=True)
                conn.shutdown_write()
                self.drain_until_close(conn, 2.0)
                return False
            if opcode == 0x9:
                conn.sendall(self.ws_frame(True, 0xA, payload))
                continue
            if opcode == 0xA:
                continue
            conn.sendall(self.ws_frame(fin, opcode, payload))

    @staticmethod
    def ws_frame(fin, opcode, payload):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            h = struct.pack(">BB", b0, n)
        elif n < 65536:
            h = struct.pack(">BBH", b0, 126, n)
        else:
            h = struct.pack(">BBQ", b0, 127, n)
        return h + payload

    def ws_read_frame(self, conn):
        def need(k):
            while len(conn.buf) < k:
                if not conn._recv():
                    return False
            return True

        if not need(2):
            return None
        b0, b1 = conn.buf[0], conn.buf[1]
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        off = 2
        if n == 126:
            if not need(4):
                return None
            n = struct.unpack(">H", bytes(conn.buf[2:4]))[0]
            off = 4
        elif n == 127:
            if not need(10):
                return None
            n = struct.unpack(">Q", bytes(conn.buf[2:10]))[0]
            off = 10
        if n > (64 << 20):
            raise ValueError("websocket frame too large")
        mask = b""
        if masked:
            if not need(off + 4):
                return None
            mask = bytes(conn.buf[off: off + 4])
            off += 4
        if not need(off + n):
            return None
        payload = bytes(conn.buf[off: off + n])
        del conn.buf[: off + n]
        if masked:
            payload = ws_unmask(payload, mask)
        return bool(b0 & 0x80), b0 & 0x0F, masked, payload


def ws_unmask(payload, mask):
    if not payload:
        return payload
    m = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(len(payload), "big")


class Request:
    def __init__(self, conn, rec, method, target, version, headers, path, query, q):
        self.conn, self.rec, self.method, self.target = conn, rec, method, target
        self.version, self.headers, self.path, self.query, self.q = version, headers, path, query, q

    def wants_close(self):
        if self.q.get("close", ["0"])[0] == "1":
            return True
        tokens = ",".join(hall(self.headers, "connection")).lower()
        tokens = [t.strip() for t in tokens.split(",")]
        if "close" in tokens:
            return True
        if self.version == "HTTP/1.0" and "keep-alive" not in tokens:
            return True
        return False

    def extra_headers(self):
        out = []
        for item in self.q.get("hdr", []):
            if ":" in item:
                n, v = item.split(":", 1)
                out.append((n.strip(), v.strip()))
        return out


def control_server(up):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, obj):
            data = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.startswith("/state"):
                self._send(up.rec.snapshot(with_bodies="nobody" not in self.path))
            else:
                self._send({"error": "unknown"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            if self.path == "/reset":
                up.rec.reset()
                self._send({"ok": True})
            elif self.path == "/stop":
                self._send({"ok": True})
                up.stopping.set()
            else:
                self._send({"error": "unknown"})

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    return srv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready", required=True, help="file to write the chosen ports to")
    ap.add_argument("--name", default="upstream")
    ap.add_argument("--tls-cert", help="PEM certificate (chain): serve TLS on the data port")
    ap.add_argument("--tls-key", help="PEM private key for --tls-cert")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")

    tls_context = server_tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    up = Upstream(args.name, args.port, tls_context)
    ctl = control_server(up)
    threading.Thread(target=ctl.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def on_term(signum, frame):
        up.stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    tmp = args.ready + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"port": up.port, "control_port": ctl.server_address[1], "pid": os.getpid(),
                   "tls": tls_context is not None}, f)
    os.rename(tmp, args.ready)

    t = threading.Thread(target=up.serve, daemon=True)
    t.start()
    while not up.stopping.wait(0.05):
        pass
    t.join(2.0)
    ctl.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
