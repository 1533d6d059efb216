#!/usr/bin/env python3
"""bench/keys_make.py - creates API keys through a gateway's admin API, for bench/keys.sh.

Usage: keys_make.py HOST PORT COUNT KEYS_FILE IDS_FILE [CONNS]

The admin password comes from BENCH_ADMIN_PASSWORD (user BENCH_ADMIN_USER, default admin). COUNT keys are
created with POST /admin/apikeys {"name": "bench-NNNNN"} over CONNS keep-alive connections (default 32,
each with its own share of the names); every answer must be 201 with data.raw_key and data.api_key.id.
The raw keys go to KEYS_FILE and the ids to IDS_FILE, one a line, in the same order. Then the listing
(GET /admin/apikeys) must hold every id.

Several connections, not one: the embedded store rewrites its whole file (and fsyncs it) before a write
is reported done, batching the writes that arrive meanwhile; one create at a time would rewrite a file of
k records for the k-th key, and 10,000 keys would take minutes.
"""
import base64
import http.client
import json
import os
import sys
import threading
import time

TIMEOUT = 30  # seconds, per request
MAX_RETRIES = 20  # reconnections over the whole run


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__.strip().splitlines()[2])
    host, port, count, keys_file, ids_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    conns = int(sys.argv[6]) if len(sys.argv) == 7 else 32
    password = os.environ.get("BENCH_ADMIN_PASSWORD", "")
    if not password:
        sys.exit("keys_make.py: BENCH_ADMIN_PASSWORD is not set")
    if count < 1 or conns < 1:
        sys.exit("keys_make.py: COUNT and CONNS must be positive")
    user = os.environ.get("BENCH_ADMIN_USER", "admin")
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}

    raw = [None] * count
    ids = [None] * count
    errors = []
    retries = [0]
    lock = threading.Lock()

    def create(conn, i):
        body = json.dumps({"name": f"bench-{i:05d}"})
        for attempt in range(2):
            try:
                conn.request("POST", "/admin/apikeys", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError) as e:
                conn.close()  # http.client reconnects on the next request
                with lock:
                    retries[0] += 1
                    if attempt or retries[0] > MAX_RETRIES:
                        raise RuntimeError(f"key {i}: {type(e).__name__}: {e}")
        if resp.status != 201:
            raise RuntimeError(f"key {i}: HTTP {resp.status}: {data[:300]!r}")
        doc = json.loads(data)
        raw[i] = doc["data"]["raw_key"]
        ids[i] = doc["data"]["api_key"]["id"]

    def worker(k):
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        try:
            for i in range(k, count, conns):
                if errors:
                    return
                create(conn, i)
        except Exception as e:  # noqa: BLE001 - reported and fatal
            with lock:
                errors.append(str(e))
        finally:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(min(conns, count))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT * (count // conns + 2))
    elapsed = time.monotonic() - t0
    if errors:
        sys.exit("keys_make.py: " + errors[0])
    if any(t.is_alive() for t in threads):
        sys.exit("keys_make.py: creation did not finish in time")
    if None in raw or len(set(raw)) != count or len(set(ids)) != count:
        sys.exit("keys_make.py: missing or duplicate keys in the answers")

    # every created id must be in the store's listing
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request("GET", "/admin/apikeys", headers={"Authorization": auth})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status != 200:
        sys.exit(f"keys_make.py: listing: HTTP {resp.status}: {data[:300]!r}")
    listed = {k["id"] for k in json.loads(data)["data"]}
    missing = len(set(ids) - listed)
    if missing:
        sys.exit(f"keys_make.py: {missing} of the {count} created ids are not in the listing")

    with open(keys_file, "w") as f:
        f.write("\n".join(raw) + "\n")
    with open(ids_file, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(f"{count} keys created in {elapsed:.1f} s over {len(threads)} connections "
          f"({count / elapsed:.0f}/s, {retries[0]} reconnections); {len(listed)} keys listed")


if __name__ == "__main__":
    main()
