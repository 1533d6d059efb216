"""Harness for the gateway integration tests (Python 3.11 standard library only).

Environment (set by ctest, with fallbacks for running a file by hand):
  GW_BIN         gateway binary            (default: <repo>/build/gateway)
  GW_DEMO_BIN    demo service binary       (default: <repo>/build/gw-demo-service)
  GW_SANITIZE    "1"/"ON"/... when the binaries are the ASan/UBSan build
  GW_SOURCE_DIR  repository root           (default: two levels above this file)
  GW_FIXTURES_DIR  fixture filters (<name>.so) (default: <repo>/build/tests/fixtures)
  GW_TEST_KEEP   "1": keep the temporary directories (logs, configs) after the run

Everything listens on 127.0.0.1 and on ports chosen at run time. Every process started here is stopped
by PID (SIGTERM, bounded wait, SIGKILL) in the test's cleanup and again at interpreter exit.
"""

import atexit
import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import upstream as upstream_mod  # noqa: E402  (pattern helpers shared with the upstream server)

pattern_iter = upstream_mod.pattern_iter
pattern_bytes = upstream_mod.pattern_bytes


def _truthy(v):
    return str(v or "").strip().lower() in ("1", "on", "true", "yes", "y")


SOURCE_DIR = os.environ.get("GW_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
GW_BIN = os.environ.get("GW_BIN") or os.path.join(SOURCE_DIR, "build", "gateway")
GW_DEMO_BIN = os.environ.get("GW_DEMO_BIN") or os.path.join(SOURCE_DIR, "build", "gw-demo-service")
GW_FIXTURES_DIR = os.environ.get("GW_FIXTURES_DIR") or os.path.join(SOURCE_DIR, "build", "tests", "fixtures")
SANITIZE = _truthy(os.environ.get("GW_SANITIZE"))
KEEP = _truthy(os.environ.get("GW_TEST_KEEP"))
# Sanitizer builds are slower: scale the waits that are not themselves under test.
SLOW = 3.0 if SANITIZE else 1.0

LOCALHOST = "127.0.0.1"

# --------------------------------------------------------------------------------------------------
# temp dirs and processes


_ROOT_TMP = None
_PROCS = []          # every Proc started and not yet stopped
_PROCS_LOCK = threading.Lock()


def root_tmp():
    global _ROOT_TMP
    if _ROOT_TMP is None:
        _ROOT_TMP = tempfile.mkdtemp(prefix="gwtest-")
    return _ROOT_TMP


def new_tmp_dir(prefix="case-"):
    return tempfile.mkdtemp(prefix=prefix, dir=root_tmp())


def _cleanup_all():
    with _PROCS_LOCK:
        procs = list(_PROCS)
    for p in procs:
        try:
            p.stop()
        except Exception:
            pass
    if _ROOT_TMP and os.path.isdir(_ROOT_TMP):
        if KEEP:
            sys.stderr.write("gwtest: kept %s\n" % _ROOT_TMP)
        else:
            shutil.rmtree(_ROOT_TMP, ignore_errors=True)


atexit.register(_cleanup_all)


def _pdeathsig_prefix():
    """Makes children die with us even if the runner is killed hard (setpriv from util-linux)."""
    sp = shutil.which("setpriv")
    if sp:
        try:
            r = subprocess.run([sp, "--pdeathsig", "KILL", "--", "true"], timeout=5,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                return [sp, "--pdeathsig", "KILL", "--"]
        except Exception:
            pass
    return []


_PREFIX = None


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_accepts(port, host=LOCALHOST, timeout=0.2):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_until(cond, timeout, interval=0.02, what="condition"):
    """Polls cond() until it returns a truthy value or timeout seconds pass. Returns the value or None."""
    end = time.monotonic() + timeout
    n = 0
    while True:
        v = cond()
        if v:
            return v
        n += 1
        if time.monotonic() >= end or n > 1000000:
            return None
        time.sleep(interval)


class Proc:
    """A child process in its own session/process group, output to a log file, stopped by PID."""

    def __init__(self, argv, log_path, env=None, cwd=None, name=None):
        global _PREFIX
        if _PREFIX is None:
            _PREFIX = _pdeathsig_prefix()
        self.argv = list(argv)
        self.name = name or os.path.basename(argv[0])
        self.log_path = log_path
        self.logf = open(log_path, "ab")
        full_env = dict(os.environ)
        if env:
            for k, v in env.items():
                if v is None:
                    full_env.pop(k, None)
                else:
                    full_env[k] = str(v)
        self.popen = subprocess.Popen(_PREFIX + self.argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                      stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                      start_new_session=True)
        self.pid = self.popen.pid
        self.stopped = False
        self.rc_before_stop = None  # exit code if it had exited on its own before stop()
        with _PROCS_LOCK:
            _PROCS.append(self)

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Returns the exit code, or None if still running after timeout seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, term_timeout=5.0):
        """SIGTERM, wait up to term_timeout, then SIGKILL. Returns the exit code."""
        if self.stopped:
            return self.popen.returncode
        rc = self.popen.poll()
        if rc is not None:
            self.rc_before_stop = rc
        else:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            rc = self.wait(term_timeout)
            if rc is None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                rc = self.wait(10)
        self.stopped = True
        try:
            self.logf.close()
        except Exception:
            pass
        with _PROCS_LOCK:
            if self in _PROCS:
                _PROCS.remove(self)
        return rc

    def log(self, limit=20000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = "...[%d bytes cut]...\n" % (len(text) - limit) + text[-limit:]
        return text

    def status_kib(self, field):
        """VmRSS / VmHWM / ... from /proc/PID/status in KiB, or None."""
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "AddressSanitizer:DEADLYSIGNAL")


# --------------------------------------------------------------------------------------------------
# YAML config


_PLAIN_OK = re.compile(r"^[A-Za-z0-9_./${}][A-Za-z0-9_./:${}@+-]*$")
_NUMBER_LIKE = re.compile(r"^[-+]?(\.?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?|0x[0-9a-fA-F]+|0o[0-7]+|\.inf|\.nan)$")
_YAML_SPECIAL = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def yaml_scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if s and _PLAIN_OK.match(s) and s.lower() not in _YAML_SPECIAL and not _NUMBER_LIKE.match(s) \
            and ": " not in s and " #" not in s:
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, list) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, (dict, list)):
                out.append("%s%s: %s\n" % (pad, k, "{}" if isinstance(v, dict) else "[]"))
            else:
                out.append("%s%s: %s\n" % (pad, k, yaml_scalar(v)))
        return "".join(out)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                inner = to_yaml(item, indent + 2)
                # put the first line of the item after "- "
                out.append(pad + "- " + inner[indent + 2:])
            else:
                out.append("%s- %s\n" % (pad, yaml_scalar(item) if not isinstance(item, (dict, list))
                                         else ("{}" if isinstance(item, dict) else "[]")))
        return "".join(out)
    return pad + yaml_scalar(obj) + "\n"


def write_config(path, cfg):
    """cfg: a dict (rendered as YAML) or YAML text."""
    text = cfg if isinstance(cfg, str) else to_yaml(cfg)
    with open(path, "w") as f:
        f.write(text)
    return path


def base_config(port, services, routes, **extra):
    """A small test config: one listener on 127.0.0.1:port, workers 1, short shutdown drain."""
    cfg = {
        "listeners": [{"address": LOCALHOST, "port": port}],
        "workers": 1,
        "timeouts": {"shutdown": "3s"},
        "services": services,
        "routes": routes,
        "log": {"level": "info"},
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = dict(cfg[k], **v)
        else:
            cfg[k] = v
    return cfg


# --------------------------------------------------------------------------------------------------
# upstream server process


class Upstream:
    """tests/integration/upstream.py started as its own process on a free port."""

    def __init__(self, tmpdir, name="upstream"):
        self.name = name
        self.dir = tmpdir
        ready = os.path.join(tmpdir, "upstream-%s-%d.ready" % (name, id(self)))
        self.proc = Proc([sys.executable, "-B", os.path.join(HERE, "upstream.py"), "--ready", ready,
                          "--name", name], os.path.join(tmpdir, "upstream-%s.log" % name), name="upstream")
        info = wait_until(lambda: _read_json(ready) if os.path.exists(ready) else None, 10 * SLOW,
                          interval=0.01)
        if not info:
            self.proc.stop()
            raise RuntimeError("upstream %s did not start within %ss; log:\n%s"
                               % (name, 10 * SLOW, self.proc.log()))
        self.port = info["port"]
        self.control_port = info["control_port"]
        self.url = "http://%s:%d" % (LOCALHOST, self.port)

    def _control(self, method, path):
        c = http.client.HTTPConnection(LOCALHOST, self.control_port, timeout=10)
        try:
            c.request(method, path)
            r = c.getresponse()
            return json.loads(r.read())
        finally:
            c.close()

    def state(self):
        return self._control("GET", "/state")

    def requests(self):
        """Every request the upstream received, in arrival order. Each: method, target, path, query,
        version, headers [[name, value]...], head (raw, latin-1), body_raw (bytes, first MiB of the wire
        form), body_length / body_sha256 (decoded payload), body_framing, conn_id, seq, error."""
        reqs = self.state()["requests"]
        for r in reqs:
            r["body_raw"] = base64.b64decode(r.pop("body_raw_b64") or "")
        return reqs

    def accepted(self):
        return self.state()["accepted"]

    def bytes_in(self):
        return sum(c["bytes_in"] for c in self.state()["conns"])

    def reset(self):
        self._control("POST", "/reset")

    def wait_requests(self, n, timeout=5.0):
        """Waits until at least n requests were recorded; returns the list (maybe shorter on timeout)."""
        got = wait_until(lambda: (lambda r: r if len(r) >= n else None)(self.requests()), timeout,
                         interval=0.02)
        return got if got is not None else self.requests()

    def stop(self):
        return self.proc.stop()


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# gateway process


class Gateway:
    def __init__(self, tmpdir, cfg, port=None, env=None, cwd=None, wait=True, tls=False, name="gateway",
                 bin_path=None, config_path=None):
        self.dir = tmpdir
        self.port = port
        self.tls = tls
        self.config_path = config_path or os.path.join(tmpdir, "%s.yaml" % name)
        if cfg is not None:
            write_config(self.config_path, cfg)
        env = dict(env or {})
        if SANITIZE:
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = Proc([bin_path or GW_BIN, "-c", self.config_path], os.path.join(tmpdir, "%s.log" % name),
                         env=env, cwd=cwd or tmpdir, name=name)
        self.pid = self.proc.pid
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=None):
        timeout = timeout or 10 * SLOW
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.proc.alive():
                raise AssertionError("gateway exited with code %s before accepting on port %s; log:\n%s"
                                     % (self.proc.popen.returncode, self.port, self.proc.log()))
            if port_accepts(self.port):
                return
            time.sleep(0.02)
        raise AssertionError("gateway did not accept on 127.0.0.1:%s within %.0fs; log:\n%s"
                             % (self.port, timeout, self.proc.log()))

    def alive(self):
        return self.proc.alive()

    def log(self, limit=20000):
        return self.proc.log(limit)

    def rss_kib(self):
        return self.proc.status_kib("VmRSS")

    def hwm_kib(self):
        return self.proc.status_kib("VmHWM")

    def stop(self, term_timeout=5.0):
        return self.proc.stop(term_timeout)

    def sanitizer_report(self):
        text = self.proc.log(200000)
        for m in SANITIZER_MARKERS:
            i = text.find(m)
            if i >= 0:
                return text[max(0, i - 200): i + 4000]
        return None

    # -- filters and reloads --
    def info(self, timeout=5.0):
        """GET /info on a fresh connection; returns the parsed JSON (AssertionError unless 200 JSON)."""
        r = simple_request(self.port, "GET", "/info", timeout=timeout)
        if r.status != 200:
            raise AssertionError("GET /info: expected 200, got:\n%s" % r.summary())
        return r.json()

    def log_size(self):
        """Bytes in the log so far: an offset for log_since() / wait_log()."""
        try:
            return os.path.getsize(self.proc.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        try:
            with open(self.proc.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, offset=0, timeout=5.0):
        """Waits until a log line after `offset` matches the regex `pattern`; returns the line or None."""
        rx = re.compile(pattern)

        def find():
            for line in self.log_since(offset).splitlines():
                if rx.search(line):
                    return line
            return None
        return wait_until(find, timeout * SLOW, interval=0.02)

    def reload(self, cfg=None, timeout=10.0):
        """Optionally rewrites the config file (dict or YAML text), sends SIGHUP and waits until /info shows
        the reload counters moved. Returns (ok, info): ok True when reloads.success grew, False when
        reloads.failure grew. AssertionError if neither happened in time."""
        before = self.info()
        rl = before.get("reloads") or {}
        s0, f0 = rl.get("success", 0), rl.get("failure", 0)
        if cfg is not None:
            write_config(self.config_path, cfg)
        self.proc.signal(signal.SIGHUP)

        def moved():
            if not self.proc.alive():
                raise AssertionError("the gateway exited (status %s) after SIGHUP; log:\n%s"
                                     % (self.proc.popen.returncode, self.log(6000)))
            try:
                now = self.info()
            except (OSError, AssertionError, ConnClosed):
                return None
            r = now.get("reloads") or {}
            if r.get("success", 0) > s0:
                return (True, now)
            if r.get("failure", 0) > f0:
                return (False, now)
            return None
        got = wait_until(moved, timeout * SLOW, interval=0.02)
        if got is None:
            raise AssertionError("SIGHUP: /info reloads counters did not move within %.0fs (before: %r); log:\n%s"
                                 % (timeout * SLOW, before, self.log(4000)))
        # the /info request that saw the counters move may have started on the old generation: ask again
        return got[0], self.info()


def fixture_path(name):
    """Path of the fixture filter `name` (tests/fixtures, built as <name>.so)."""
    return os.path.join(GW_FIXTURES_DIR, name if name.endswith(".so") else name + ".so")


def filter_abi():
    """(major, minor) of the filter ABI, read from include/gw/filter.h."""
    with open(os.path.join(SOURCE_DIR, "include", "gw", "filter.h")) as f:
        text = f.read()
    major = re.search(r"^#define\s+GW_ABI_MAJOR\s+(\d+)", text, re.M)
    minor = re.search(r"^#define\s+GW_ABI_MINOR\s+(\d+)", text, re.M)
    return int(major.group(1)), int(minor.group(1))


def run_gateway_cli(args, env=None, timeout=20, cwd=None):
    """Runs the gateway binary to completion; returns (rc, stdout, stderr)."""
    full_env = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    r = subprocess.run([GW_BIN] + list(args), stdin=subprocess.DEVNULL, capture_output=True, env=full_env,
                       timeout=timeout * SLOW, cwd=cwd)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------------
# HTTP over raw sockets


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []       # [(name, value)] in order
        self.body = b""
        self.raw_head = b""
        self.framing = None     # "length" | "chunked" | "close" | "none"
        self.trailers = []

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def tokens(self, name):
        """Comma-separated tokens of all `name` fields, lower-cased."""
        out = []
        for v in self.header_all(name):
            out += [t.strip().lower() for t in v.split(",") if t.strip()]
        return out

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("response body is not JSON: %r" % self.body[:500])

    def summary(self, body_limit=600):
        return "%s %s %s\n%s\n\n%r" % (self.version, self.status, self.reason,
                                       "\n".join("%s: %s" % h for h in self.headers),
                                       self.body[:body_limit])

    def __repr__(self):
        return "<Response %s %s>" % (self.status, self.summary(200))


class NoResponse(TimeoutError):
    """No complete response before the deadline (a TimeoutError, so socket.timeout handlers catch it)."""


class ConnClosed(Exception):
    """The peer closed (or reset) the connection before a complete response."""

    def __init__(self, msg, partial=b""):
        super().__init__(msg)
        self.partial = partial


class RawConn:
    """A client TCP (optionally TLS) connection with a read buffer and deadline-bounded reads."""

    def __init__(self, port, host=LOCALHOST, timeout=5.0, tls_context=None, server_hostname=None,
                 connect=True):
        self.port = port
        self.host = host
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.sock = None
        if connect:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            try:
                s.settimeout(timeout)
                s.connect((host, port))
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if tls_context is not None:
                    s = tls_context.wrap_socket(s, server_hostname=server_hostname)
            except BaseException:
                s.close()
                raise
            self.sock = s

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def try_send(self, data):
        """send() that reports a closed/reset connection as False instead of raising."""
        try:
            self.send(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False

    def _fill(self, deadline):
        """Reads more into buf. Returns False on EOF/reset; raises socket.timeout at the deadline."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(min(left, 1.0))
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            if time.monotonic() >= deadline:
                raise
            return True
        except ssl.SSLWantReadError:
            return True
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = True
            self.reset = True
            return False
        except ssl.SSLError as e:
            self.eof = True
            self.reset = True
            self.ssl_error = e
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker, timeout=None, limit=1 << 20):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[: i + len(marker)])
                del self.buf[: i + len(marker)]
                return out
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes" % (marker, limit))
            if not self._fill(deadline):
                raise ConnClosed("connection closed%s before %r; got %r"
                                 % (" (reset)" if self.reset else "", marker, bytes(self.buf[:300])),
                                 bytes(self.buf))

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnClosed("connection closed after %d of %d bytes" % (len(self.buf), n), bytes(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_some(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.buf:
            if not self._fill(deadline):
                return b""
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_response(self, method="GET", timeout=None, body_sink=None, skip_interim=True):
        """Reads one complete response (head + body per its framing). body_sink(bytes) receives the body
        instead of Response.body when given. Raises ConnClosed / socket.timeout."""
        t = timeout if timeout is not None else self.timeout
        try:
            return self._read_response(method, time.monotonic() + t, body_sink, skip_interim)
        except socket.timeout as e:
            if isinstance(e, NoResponse):
                raise
            raise NoResponse("no complete response within %.1fs; %d unparsed bytes buffered: %r"
                             % (t, len(self.buf), bytes(self.buf[:300]))) from None

    def _read_response(self, method, deadline, body_sink, skip_interim):
        while True:
            head = self.read_until(b"\r\n\r\n", timeout=max(0.001, deadline - time.monotonic()))
            r = parse_response_head(head)
            if skip_interim and 100 <= r.status < 200 and r.status != 101:
                continue
            break
        sink = body_sink
        chunks = []
        if sink is None:
            sink = chunks.append
        te = r.tokens("transfer-encoding")
        cl = r.header_all("content-length")
        no_body = method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200
        if no_body:
            r.framing = "none"
        elif te:
            if te[-1] != "chunked":
                raise AssertionError("response with Transfer-Encoding %r" % te)
            r.framing = "chunked"
            self._read_chunked(sink, deadline, r)
        elif cl:
            if len(set(v.strip() for v in cl)) != 1 or not cl[0].strip().isdigit():
                raise AssertionError("response with bad Content-Length %r" % cl)
            r.framing = "length"
            n = int(cl[0].strip())
            while n > 0:
                if not self.buf and not self._fill(deadline):
                    raise ConnClosed("connection closed with %d body bytes missing" % n)
                take = min(n, len(self.buf))
                sink(bytes(self.buf[:take]))
                del self.buf[:take]
                n -= take
        else:
            r.framing = "close"
            while True:
                if self.buf:
                    sink(bytes(self.buf))
                    self.buf.clear()
                if not self._fill(deadline):
                    break
        if body_sink is None:
            r.body = b"".join(chunks)
        return r

    def _read_chunked(self, sink, deadline, r):
        left_t = lambda: max(0.001, deadline - time.monotonic())  # noqa: E731
        while True:
            line = self.read_until(b"\r\n", timeout=left_t(), limit=65536)
            size_txt = line[:-2].split(b";", 1)[0].strip()
            if not re.match(rb"^[0-9A-Fa-f]+$", size_txt):
                raise AssertionError("bad chunk size line %r" % line)
            size = int(size_txt, 16)
            if size == 0:
                while True:
                    t = self.read_until(b"\r\n", timeout=left_t(), limit=65536)
                    if t == b"\r\n":
                        return
                    r.trailers.append(t)
            while size > 0:
                if not self.buf and not self._fill(deadline):
                    raise ConnClosed("connection closed inside a chunk")
                take = min(size, len(self.buf))
                sink(bytes(self.buf[:take]))
                del self.buf[:take]
                size -= take
            crlf = self.read_exact(2, timeout=left_t())
            if crlf != b"\r\n":
                raise AssertionError("chunk data not followed by CRLF: %r" % crlf)

    def closed_within(self, timeout):
        """True if the peer closes (EOF or reset) within timeout seconds; data received meanwhile is kept
        in buf. False if the connection is still open at the end."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self._fill(deadline):
                    return True
            except socket.timeout:
                return False
            except OSError:
                return True

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def parse_response_head(head):
    r = Response()
    r.raw_head = head
    text = head.decode("latin-1")
    lines = text[:-4].split("\r\n")
    m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise AssertionError("bad status line %r (head %r)" % (lines[0], head[:500]))
    r.version, r.status, r.reason = m.group(1), int(m.group(2)), m.group(3) or ""
    for ln in lines[1:]:
        if ":" not in ln:
            raise AssertionError("bad response header line %r" % ln)
        n, v = ln.split(":", 1)
        if n != n.strip() or not n:
            raise AssertionError("bad response header name %r" % n)
        r.headers.append((n, v.strip(" \t")))
    return r


def request_bytes(method, target, headers=(), body=b"", version="HTTP/1.1", host="gw.test"):
    """Builds a request. headers: [(name, value)]; Host is added first unless host is None or the
    headers already carry one; Content-Length is added for a non-empty body unless given."""
    lines = ["%s %s %s" % (method, target, version)]
    names = [n.lower() for n, _ in headers]
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for n, v in headers:
        lines.append("%s: %s" % (n, v))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked_encode(data, sizes=(1000,), ext=False):
    out = bytearray()
    off = 0
    k = 0
    while off < len(data):
        sz = min(sizes[k % len(sizes)], len(data) - off)
        out += b"%x%s\r\n" % (sz, b";x=y" if ext and k % 2 else b"")
        out += data[off: off + sz] + b"\r\n"
        off += sz
        k += 1
    out += b"0\r\n\r\n"
    return bytes(out)


def simple_request(port, method, target, headers=(), body=b"", timeout=5.0, version="HTTP/1.1",
                   host="gw.test"):
    """One request on a fresh raw connection; returns the Response (connection closed afterwards)."""
    with RawConn(port, timeout=timeout) as c:
        c.send(request_bytes(method, target, headers, body, version=version, host=host))
        return c.read_response(method=method, timeout=timeout)


def http_request(port, method, path, headers=None, body=None, timeout=10.0, conn=None):
    """A normal call with http.client; returns (status, headers_dict_lowercase, body)."""
    own = conn is None
    c = conn or http.client.HTTPConnection(LOCALHOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        if own:
            c.close()


# --------------------------------------------------------------------------------------------------
# websocket client helpers


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + upstream_mod.WS_GUID).encode()).digest()).decode()


def ws_client_frame(opcode, payload, fin=True, mask=None):
    mask = mask if mask is not None else os.urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        h = bytes([b0, 0x80 | n])
    elif n < 65536:
        h = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        h = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    return h + mask + upstream_mod.ws_unmask(payload, mask)


def ws_read_frame(conn, timeout=5.0):
    """Reads one frame from a RawConn; returns (fin, opcode, payload). Server frames must be unmasked."""
    h = conn.read_exact(2, timeout)
    fin, opcode = bool(h[0] & 0x80), h[0] & 0x0F
    if h[1] & 0x80:
        raise AssertionError("server frame is masked")
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(conn.read_exact(2, timeout), "big")
    elif n == 127:
        n = int.from_bytes(conn.read_exact(8, timeout), "big")
    return fin, opcode, conn.read_exact(n, timeout)


# --------------------------------------------------------------------------------------------------
# test case base


def hget(headers, name, default=None):
    name = name.lower()
    for n, v in headers:
        if n.lower() == name:
            return v
    return default


def hall(headers, name):
    name = name.lower()
    return [v for n, v in headers if n.lower() == name]


class GatewayTestCase(unittest.TestCase):
    """Starts what a case needs and stops it, by PID, in cleanups (also when the case fails)."""

    maxDiff = 4000

    def setUp(self):
        if not os.path.exists(GW_BIN):
            self.fail("gateway binary not found: %s (set GW_BIN or build first)" % GW_BIN)
        self.tmp = new_tmp_dir(self.id().split(".")[-1] + "-")
        self._gateways = []
        self._upstreams = []
        self._procs = []
        self.addCleanup(self._stop_everything)

    # -- starting things --
    def start_upstream(self, name="upstream"):
        up = Upstream(self.tmp, name)
        self._upstreams.append(up)
        return up

    def start_gateway(self, cfg, port=None, **kw):
        """cfg: dict/YAML text, or a callable port -> cfg. Returns the Gateway (waited ready). A port this
        chose itself that another program took before the gateway bound it is replaced (twice at most)."""
        chosen = port is None
        for attempt in range(3):
            p = port or free_port()
            c = cfg(p) if callable(cfg) else cfg
            try:
                gw = Gateway(self.tmp, c, port=p, name="gateway%d" % len(self._gateways), **kw)
            except AssertionError as e:
                if not chosen or not callable(cfg) or "in use" not in str(e) or attempt == 2:
                    raise
                continue
            self._gateways.append(gw)
            return gw

    def proxy_gateway(self, up, routes=None, services=None, **extra):
        """Gateway with one service "up" -> the upstream, routes default [{prefix: /, service: up}]."""
        services = services or [{"name": "up", "targets": [up.url]}]
        routes = routes or [{"prefix": "/", "service": "up"}]
        return self.start_gateway(lambda p: base_config(p, services, routes, **extra))

    def start_proc(self, argv, name, env=None, cwd=None):
        p = Proc(argv, os.path.join(self.tmp, name + ".log"), env=env, cwd=cwd or self.tmp, name=name)
        self._procs.append(p)
        return p

    def start_demo_service(self, name):
        """tools/demo_service (`make run`'s upstreams) as `name` on a free port: (process, base URL)."""
        port = free_port()
        p = self.start_proc([GW_DEMO_BIN, "--name", name, "--port", str(port), "--address", LOCALHOST], name)
        ok = wait_until(lambda: port_accepts(port) or not p.alive(), 10 * SLOW)
        self.assertTrue(ok and p.alive(), "%s did not start on port %d; log:\n%s" % (name, port, p.log()))
        return p, "http://%s:%d" % (LOCALHOST, port)

    # -- teardown --
    def _failed(self):
        # Cleanups run inside their own "test part", so outcome.success is reset there: look at the result.
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        for name in ("failures", "errors"):
            for entry in getattr(result, name, None) or []:
                if entry and entry[0] is self:
                    return True
        return False

    def _stop_everything(self):
        problems = []
        for gw in self._gateways:
            died = gw.proc.popen.poll()
            gw.stop()
            rep = gw.sanitizer_report()
            if rep:
                problems.append("sanitizer report in %s log:\n%s" % (gw.proc.name, rep))
            if died is not None and died < 0 and died != -signal.SIGTERM and died != -signal.SIGKILL \
                    and not getattr(gw, "expect_exit", False):
                problems.append("%s died on signal %d during the test; log:\n%s"
                                % (gw.proc.name, -died, gw.log(6000)))
        for p in self._procs:
            p.stop()
        for up in self._upstreams:
            up.stop()
        if self._failed() or problems:
            for gw in self._gateways:
                sys.stderr.write("\n----- %s log (%s) -----\n%s\n" % (gw.proc.name, self.id(), gw.log(6000)))
            for up in self._upstreams:
                text = up.proc.log(3000)
                if text.strip():
                    sys.stderr.write("\n----- upstream %s log -----\n%s\n" % (up.name, text))
        if problems:
            raise AssertionError("\n".join(problems))

    # -- assertions --
    def assertErrorJson(self, resp, status, title):
        """status code, Content-Type application/json, {"error": title, "message": str, "request_id": str}."""
        self.assertEqual(resp.status, status, "expected %d %s, got:\n%s" % (status, title, resp.summary()))
        ctype = (resp.header("content-type") or "").lower()
        self.assertTrue(ctype.startswith("application/json"),
                        "expected Content-Type application/json, got %r\n%s" % (ctype, resp.summary()))
        try:
            doc = json.loads(resp.body)
        except ValueError:
            self.fail("error body is not JSON:\n%s" % resp.summary())
        self.assertIsInstance(doc, dict, resp.summary())
        self.assertEqual(doc.get("error"), title, "error title; body %r" % resp.body[:400])
        self.assertIsInstance(doc.get("message"), str, "message field; body %r" % resp.body[:400])
        self.assertIsInstance(doc.get("request_id"), str, "request_id field; body %r" % resp.body[:400])
        self.assertTrue(doc["request_id"], "empty request_id; body %r" % resp.body[:400])
        return doc

    def assertUpstreamSawNothing(self, up, settle=0.2):
        """No request and no byte reached the upstream (checked after a short settle time)."""
        time.sleep(settle)
        st = up.state()
        reqs = st["requests"]
        nbytes = sum(c["bytes_in"] for c in st["conns"])
        self.assertEqual(len(reqs), 0, "upstream received %d request(s): %r"
                         % (len(reqs), [r["head"][:300] for r in reqs]))
        self.assertEqual(nbytes, 0, "upstream received %d bytes on %d connection(s)" % (nbytes, st["accepted"]))


def main():
    unittest.main(verbosity=2)
