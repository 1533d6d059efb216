#!/usr/bin/env python3
"""bench/idle_conns.py - what idle keep-alive client connections cost, the gateway next to nginx.

Usage: bench/idle_conns.py BUILD_DIR [N]        (`make bench-idle`; N defaults to 10000)

On 127.0.0.1, ports chosen at run time: one small upstream (nginx, one worker), then in turn nginx as a
reverse proxy (one worker, keepalive_timeout 60s) and the gateway (workers: 1, empty pipeline,
timeouts.keepalive_idle 60s), each in front of it. For each: N client connections, each sending one
proxied GET and reading the answer, then left open; resident memory (VmRSS, summed over the target's
processes) before, with all N open (read 3 s after the last, so the gateway's 2 s idle sweep has run),
and 3 s after all of them closed. Prints KiB per connection. Needs nginx; the file descriptor limit must
allow N client sockets here plus N in the target (the script raises its soft limit to the hard one).
Every process it starts, it stops by PID.
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit("%s exited at start-up" % what)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("%s does not accept on port %d" % (what, port))


def measure(name, port, pids_of, n):
    req = b"GET /x HTTP/1.1\r\nHost: bench\r\n\r\n"
    base = rss_kib(pids_of())
    conns = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(req)
            got = b""
            while b"\r\n\r\n" not in got or not got.endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    raise SystemExit("%s closed a connection" % name)
                got += chunk
            conns.append(s)
        time.sleep(3)
        held = rss_kib(pids_of())
    finally:
        for s in conns:
            s.close()
    time.sleep(3)
    after = rss_kib(pids_of())
    print("%-8s %6d idle connections: RSS %7.1f -> %7.1f MiB (%.2f KiB a connection), %7.1f MiB 3 s after "
          "they closed" % (name, n, base / 1024, held / 1024, (held - base) / n, after / 1024), flush=True)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    gateway = os.path.abspath(os.path.join(sys.argv[1], "gateway"))
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    if not shutil.which("nginx"):
        sys.exit("nginx not found (scripts/install-deps.sh bench installs it)")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < n + 256:
        sys.exit("the file descriptor limit (%d) is below %d connections" % (hard, n))
    tmp = tempfile.mkdtemp(prefix="idle-conns-")
    procs = []
    try:
        up, ngx, gw = free_port(), free_port(), free_port()
        for d in ("up", "ngx"):
            os.makedirs(os.path.join(tmp, d, "logs"))
        common = "pid %s/nginx.pid; error_log %s/error.log warn; worker_processes 1; " \
                 "worker_rlimit_nofile %d; events { worker_connections %d; } "
        with open(os.path.join(tmp, "up", "nginx.conf"), "w") as f:
            f.write(common % (os.path.join(tmp, "up"), os.path.join(tmp, "up"), hard, hard) +
                    "http { access_log off; server { listen 127.0.0.1:%d; keepalive_requests 100000; "
                    "location / { default_type application/json; return 200 '{\"ok\":true}'; } } }" % up)
        with open(os.path.join(tmp, "ngx", "nginx.conf"), "w") as f:
            f.write(common % (os.path.join(tmp, "ngx"), os.path.join(tmp, "ngx"), hard, hard) +
                    "http { access_log off; upstream u { server 127.0.0.1:%d; keepalive 128; } "
                    "server { listen 127.0.0.1:%d; keepalive_timeout 60s; keepalive_requests 100000; "
                    "location / { proxy_pass http://u; proxy_http_version 1.1; "
                    "proxy_set_header Connection \"\"; } } }" % (up, ngx))
        with open(os.path.join(tmp, "gateway.yaml"), "w") as f:
            f.write("listeners:\n  - address: 127.0.0.1\n    port: %d\nworkers: 1\nmax_connections: 0\n"
                    "limits:\n  max_connections_per_client: 0\ntimeouts:\n  keepalive_idle: 60s\n"
                    "services:\n  - name: up\n    targets: [http://127.0.0.1:%d]\n"
                    "routes:\n  - prefix: /\n    service: up\npipeline: []\nlog:\n  level: warn\n" % (gw, up))
        upp = subprocess.Popen(["nginx", "-p", os.path.join(tmp, "up"), "-c", "nginx.conf",
                                "-g", "daemon off;"], stderr=subprocess.DEVNULL)
        procs.append(upp)
        wait_port(up, upp, "upstream nginx")

        ngp = subprocess.Popen(["nginx", "-p", os.path.join(tmp, "ngx"), "-c", "nginx.conf",
                                "-g", "daemon off;"], stderr=subprocess.DEVNULL)
        procs.append(ngp)
        wait_port(ngx, ngp, "nginx")
        measure("nginx", ngx, lambda: [ngp.pid] + children(ngp.pid), n)
        ngp.send_signal(signal.SIGQUIT)
        ngp.wait(30)

        gwp = subprocess.Popen([gateway, "-c", os.path.join(tmp, "gateway.yaml")], cwd=tmp,
                               stderr=open(os.path.join(tmp, "gateway.log"), "w"))
        procs.append(gwp)
        wait_port(gw, gwp, "gateway")
        measure("gateway", gw, lambda: [gwp.pid], n)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT if p.args[0] == "nginx" else signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
