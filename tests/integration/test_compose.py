#!/usr/bin/env python3
"""The container files (Dockerfile, docker-compose.yml, .env.example, conf/prometheus, conf/grafana and the
Makefile's docker targets) checked without Docker, against this build tree and real processes on 127.0.0.1:

- docker-compose.yml parses; what it builds (contexts, Dockerfile stages), mounts (./ paths, Grafana's and
  Prometheus' files) and reads (env_file) exists; no ${VAR} can abort compose; .env.example documents only
  variables the gateway's configuration or compose reads, and none that compose fixes; Redis is append-only
  on a named volume; depends_on waits for health checks that exist; the stop grace outlasts the drain.
- The Dockerfile's build stage runs `make build` (configured with the tests off, the rest kept: checked by
  configuring a scratch tree the same way) with the build packages of scripts/install-deps.sh; its checks
  and its `make install` step run here as written (paths moved to a scratch directory), and the installed
  gateway validates the shipped configuration with the filters it finds under its own prefix; the runtime
  stage's packages provide every shared library the binaries and filters need (ldd + dpkg); no password is
  kept in the image.
- The stack as compose describes it, with this build: redis-server with compose's arguments, the demo
  services with compose's commands, the gateway started with the image's CMD and compose's environment
  (plus .env.example with a password) on the mounted conf/; ports moved to free ones, every address
  127.0.0.1. Its API keys land in Redis; the image's HEALTHCHECK command and compose's health checks pass
  against it (and the gateway's fails on a closed port); SIGHUP reloads, SIGTERM exits 0.
- Every metric name and label the Grafana dashboard's PromQL uses is one the running gateway exports (its
  /metrics after traffic with 2xx/4xx/5xx, retries, an open breaker and rate limiting); every expression
  passes `promtool check rules`; conf/prometheus/prometheus.yml passes `promtool check config`, and a real
  prometheus with that file (target moved to this gateway) scrapes it and answers every dashboard query
  with series whose labels the panels' legends name; the dashboard's data source uid is the provisioned one.
- `make docker`, `make compose-up` and `make compose-down` run the docker commands (a stand-in `docker`
  records them), and say clearly what is missing when docker, compose or .env's ADMIN_PASSWORD is.
"""

import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import unittest
import urllib.error
import urllib.parse
import urllib.request

import gwtest as g

try:
    import yaml
except ImportError:  # PyYAML: the machine image's Python has it (Debian: python3-yaml)
    yaml = None

SRC = g.SOURCE_DIR
BUILD_DIR = os.path.dirname(os.path.abspath(g.GW_BIN))
COMPOSE_FILE = os.path.join(SRC, "docker-compose.yml")
DOCKERFILE = os.path.join(SRC, "Dockerfile")
ENV_EXAMPLE = os.path.join(SRC, ".env.example")
REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
PLACEHOLDER_PASSWORD = "compose-test-secret"

# Debian packages every debian:12-slim image has (libc6: libc, libm, libdl, libpthread).
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1"}
# Packages of scripts/install-deps.sh that only the tests and the fuzzers need, not the image's build.
TEST_ONLY_PACKAGES = {"libcmocka-dev", "libclang-rt-14-dev"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
# The dashboard must show these (the list: request rate by route and status, error rate, p95
# latency, rate-limited rate, breaker state, in-flight, retries).
DASHBOARD_MUST_USE = {"gateway_http_requests_total", "gateway_http_request_duration_seconds_bucket",
                      "gateway_rate_limited_total", "gateway_circuit_breaker_state", "gateway_requests_in_flight",
                      "gateway_retries_total"}


def read(path):
    with open(path) as f:
        return f.read()


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


# --------------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(text):
    """[(KEYWORD, arguments)] with continuation lines joined and comments dropped, as docker reads them."""
    out, cur = [], None
    for raw in text.split("\n"):
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("#") or (cur is None and not stripped):
            continue
        if line.endswith("\\"):
            cur = (cur or "") + line[:-1] + " "
            continue
        full = ((cur or "") + line).strip()
        cur = None
        if full:
            kw, _, args = full.partition(" ")
            out.append((kw.upper(), args.strip()))
    return out


def dockerfile_stages(text):
    """[{"name", "base", "ins": [(KEYWORD, args)]}] in order."""
    stages = []
    for kw, args in dockerfile_instructions(text):
        if kw == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
            stages.append({"base": m.group(1), "name": m.group(2), "ins": []})
        elif stages:
            stages[-1]["ins"].append((kw, args))
    return stages


def apt_packages(run_args):
    """The packages of every `apt-get install` in a RUN command."""
    pkgs = set()
    for m in re.finditer(r"apt-get\s+install\s+(.*?)(?:&&|;|$)", run_args):
        pkgs.update(t for t in m.group(1).split() if not t.startswith("-"))
    return pkgs


def exec_form(args):
    """A JSON exec form (CMD [...]) as a list."""
    v = json.loads(args)
    assert isinstance(v, list) and all(isinstance(x, str) for x in v), args
    return v


def install_deps_packages():
    """Every package scripts/install-deps.sh may install (its want=(...) and want+=(...) lists)."""
    text = read(os.path.join(SRC, "scripts", "install-deps.sh"))
    pkgs = set()
    for m in re.finditer(r"want\+?=\(([^)]*)\)", text):
        pkgs.update(t for t in m.group(1).split() if not t.startswith("$"))
    return pkgs


# --------------------------------------------------------------------------------------------------
# compose: interpolation and .env files


_INTERP = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}"
                     r"|([A-Za-z_][A-Za-z0-9_]*))")


def interpolations(text):
    """[(name, operator or None, argument)] of every ${...} / $VAR in a compose file ($$ is a literal $)."""
    out = []
    for m in _INTERP.finditer(text):
        if m.group(1) == "$":
            continue
        out.append((m.group(2) or m.group(5), m.group(3), m.group(4)))
    return out


def compose_interpolations(compose):
    """interpolations() of every string value of a parsed compose file (compose interpolates values, not
    comments)."""
    out = []

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            out.extend(interpolations(v))
    walk(compose)
    return out


def interpolate(value, env):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and $$ on one string."""
    def sub(m):
        if m.group(1) == "$":
            return "$"
        name, op, arg = m.group(2) or m.group(5), m.group(3), m.group(4)
        v = env.get(name)
        if op == ":-":
            return v if v else interpolate(arg, env)
        if op == "-":
            return v if v is not None else interpolate(arg, env)
        if op is None:
            return v or ""
        raise AssertionError("unsupported interpolation ${%s%s%s}" % (name, op, arg))
    return _INTERP.sub(sub, value)


def parse_env_file(text):
    """(values of KEY=value lines, keys of commented-out `# KEY=value` lines), read like compose does."""
    values, documented = {}, []
    for line in text.split("\n"):
        s = line.strip()
        m = re.match(r"#\s*([A-Z][A-Z0-9_]*)=", s)
        if m:
            documented.append(m.group(1))
            continue
        if not s or s.startswith("#"):
            continue
        m = re.match(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", s)
        assert m, "not KEY=value: %r" % line
        key, v = m.group(1), m.group(2)
        if v[:1] in ("'", '"'):
            q = v[0]
            end = v.index(q, 1)
            v = v[1:end]
        else:
            v = re.sub(r"\s+#.*$", "", v).strip()
        values[key] = v
    return values, documented


def as_dict(env):
    """compose's environment: a mapping or a list of KEY=value."""
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    out = {}
    for item in env or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def env_files(svc):
    """[(path, required)] of a service's env_file, short or long syntax."""
    ef = svc.get("env_file")
    if ef is None:
        return []
    if isinstance(ef, (str, dict)):
        ef = [ef]
    out = []
    for e in ef:
        if isinstance(e, str):
            out.append((e, True))
        else:
            out.append((e["path"], e.get("required", True)))
    return out


def bind_mounts(svc):
    """[(host path, container path, read_only)] of a service's ./ and / bind mounts."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"], bool(v.get("read_only"))))
            continue
        parts = v.split(":")
        if parts[0].startswith(("./", "/", "../")):
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def named_volumes(svc):
    return [v.split(":")[0] for v in svc.get("volumes") or [] if isinstance(v, str)
            and not v.split(":")[0].startswith(("./", "/", "../"))]


def host_path(svc, container_path):
    """Where a container path of a service is on the host, through its bind mounts (longest target first)."""
    for src, dst, _ in sorted(bind_mounts(svc), key=lambda m: -len(m[1])):
        dst = dst.rstrip("/")
        if container_path == dst or container_path.startswith(dst + "/"):
            return os.path.normpath(os.path.join(SRC, src) + container_path[len(dst):])
    return None


def duration_seconds(s):
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(s).strip())
    assert m and (m.group(1) or m.group(2)), "not a duration: %r" % s
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


# --------------------------------------------------------------------------------------------------
# PromQL


_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                    "unless", "inf", "nan"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def promql_refs(expr):
    """(metric names, label names) an expression refers to: selectors, matchers and grouping clauses."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    labels = set()
    for m in _GROUPING.finditer(s):
        labels.update(x.strip() for x in m.group(2).split(",") if x.strip())
    s = _GROUPING.sub(" ", s)
    for m in re.finditer(r"\{([^}]*)\}", s):
        for lm in re.finditer(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)", m.group(1)):
            labels.add(lm.group(1))
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    names = set()
    for m in re.finditer(r"(?<![0-9.])[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        tok = m.group(0)
        if s[m.end():].lstrip().startswith("(") or tok.lower() in _PROMQL_KEYWORDS:
            continue  # a function, an aggregation or a keyword
        names.add(tok)
    return names, labels


def grafana_expr(expr, interval):
    """The expression Grafana sends: its $__ variables replaced; any other variable is a mistake here."""
    out = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", interval, expr)
    assert "$" not in out, "unknown dashboard variable in %r" % expr
    return out


def dashboard_panels(dash):
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows
    return out


def exposition_names(text):
    """{metric name: set of label names} of a /metrics body: the families' TYPE lines (with the _bucket,
    _sum, _count of histograms and summaries) and the labels their samples carry."""
    names = {}
    for line in text.split("\n"):
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            names.setdefault(name, set())
            if typ == "histogram":
                for sfx in ("_bucket", "_sum", "_count"):
                    names.setdefault(name + sfx, set())
            elif typ == "summary":
                for sfx in ("_sum", "_count"):
                    names.setdefault(name + sfx, set())
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
            if m:
                labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(2) or ""))
                names.setdefault(m.group(1), set()).update(labels)
    return names


# --------------------------------------------------------------------------------------------------


def run(argv, env=None, cwd=None, timeout=120, shell=False):
    full_env = dict(os.environ)
    full_env.update(env or {})
    r = subprocess.run(argv, cwd=cwd or SRC, env=full_env, capture_output=True, timeout=timeout * g.SLOW,
                       shell=shell, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


@unittest.skipIf(yaml is None, "PyYAML missing (Debian package python3-yaml)")
class ComposeFilesTest(g.GatewayTestCase):
    """The files alone, and what they say about one another."""

    @classmethod
    def setUpClass(cls):
        cls.compose = load_yaml(COMPOSE_FILE)
        cls.services = cls.compose["services"]
        cls.stages = dockerfile_stages(read(DOCKERFILE))
        cls.stage = {s["name"]: s for s in cls.stages if s["name"]}

    def test_compose_services_and_references(self):
        self.assertTrue({"gateway", "redis", "auth-service", "user-service", "prometheus", "grafana"}
                        <= set(self.services), sorted(self.services))
        declared_volumes = set((self.compose.get("volumes") or {}).keys())
        for name, svc in self.services.items():
            b = svc.get("build")
            if b is not None:
                b = {"context": b} if isinstance(b, str) else b
                ctx = os.path.join(SRC, b.get("context", "."))
                df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
                self.assertTrue(os.path.isfile(df), "%s: no %s" % (name, df))
                if b.get("target"):
                    stages = [s["name"] for s in dockerfile_stages(read(df))]
                    self.assertIn(b["target"], stages, "%s: build target is no stage of %s" % (name, df))
            else:
                self.assertIn("image", svc, "%s: neither build nor image" % name)
            for src, dst, _ in bind_mounts(svc):
                self.assertTrue(os.path.exists(os.path.join(SRC, src)), "%s mounts %s, which does not exist"
                                % (name, src))
            for v in named_volumes(svc):
                self.assertIn(v, declared_volumes, "%s: volume %s not declared under volumes:" % (name, v))
            for path, required in env_files(svc):
                if required:
                    self.assertTrue(os.path.isfile(os.path.join(SRC, path)), "%s: env_file %s missing" % (name, path))
                else:
                    self.assertTrue(os.path.isfile(os.path.join(SRC, path + ".example")),
                                    "%s: optional env_file %s has no %s.example documenting it" % (name, path, path))
            deps = svc.get("depends_on") or {}
            if isinstance(deps, list):
                deps = {d: {} for d in deps}
            for dep, cond in deps.items():
                self.assertIn(dep, self.services, "%s depends on unknown %s" % (name, dep))
                if cond.get("condition") == "service_healthy":
                    d = self.services[dep]
                    image_stage = self.stage.get((d.get("build") or {}).get("target"), {"ins": []})
                    has = "healthcheck" in d or any(kw == "HEALTHCHECK" for kw, _ in image_stage["ins"])
                    self.assertTrue(has, "%s waits for %s to be healthy, which has no health check" % (name, dep))

    def test_compose_never_aborts_on_a_missing_variable(self):
        """A fresh clone has no .env: every ${VAR} needs a default (the issue's ${ADMIN_PASSWORD:?} aborted
        every compose command), and the gateway's .env is optional for compose."""
        for name, op, arg in compose_interpolations(self.compose):
            self.assertIn(op, (":-", "-"), "${%s%s%s} in docker-compose.yml has no default"
                          % (name, op or "", arg or ""))
        files = env_files(self.services["gateway"])
        self.assertIn((".env", False), files, "the gateway reads .env (required: false)")

    def test_env_example(self):
        values, documented = parse_env_file(read(ENV_EXAMPLE))
        keys = set(values) | set(documented)
        self.assertIn("ADMIN_PASSWORD", values, ".env.example must have an ADMIN_PASSWORD= line to fill in")
        self.assertEqual(values["ADMIN_PASSWORD"], "", "no password is shipped: the user sets one")
        conf_vars = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", read(os.path.join(SRC, "conf", "gateway.yaml"))))
        compose_vars = {n for n, _, _ in compose_interpolations(self.compose)}
        unknown = keys - conf_vars - compose_vars
        self.assertFalse(unknown, ".env.example documents variables nothing reads: %s" % sorted(unknown))
        fixed = set(as_dict(self.services["gateway"].get("environment")))
        self.assertFalse(keys & fixed, ".env.example offers variables compose's environment: overrides: %s"
                         % sorted(keys & fixed))
        for n in compose_vars:
            self.assertIn(n, keys, "docker-compose.yml reads ${%s}; .env.example should mention it" % n)
        # .env is a secret: never in the build context
        ignored = read(os.path.join(SRC, ".dockerignore")).split("\n")
        self.assertIn(".env", [x.strip() for x in ignored], ".dockerignore must leave .env out of the context")

    def test_gateway_service(self):
        gw = self.services["gateway"]
        env = as_dict(gw["environment"])
        self.assertEqual(env.get("STORE_TYPE"), "redis")
        self.assertEqual(gw["build"]["target"], self.stages[-1]["name"], "the image's last stage is the gateway")
        cmd = exec_form(dict(self.stages[-1]["ins"])["CMD"])
        conf = cmd[cmd.index("-c") + 1]
        host = host_path(gw, conf)
        self.assertTrue(host and os.path.isfile(host), "the image's config %s is on no mount of the gateway" % conf)
        mount = [m for m in bind_mounts(gw) if conf.startswith(m[1].rstrip("/") + "/")]
        self.assertTrue(mount[0][2], "the configuration is mounted read-only")
        published = [interpolate(str(p), {}) for p in gw.get("ports", [])]
        self.assertIn(env["PORT"], [p.split(":")[-1] for p in published], "the container port is PORT")
        deps = gw.get("depends_on") or {}
        self.assertEqual(deps.get("redis", {}).get("condition"), "service_healthy")
        for url_var in ("AUTH_SERVICE_URL", "USER_SERVICE_URL"):
            u = urllib.parse.urlsplit(env[url_var])
            self.assertIn(u.hostname, self.services, "%s names no compose service" % url_var)
            svc = self.services[u.hostname]
            self.assertIn(str(u.port), [str(x) for x in svc.get("expose", [])], url_var)
            self.assertEqual(svc["command"][svc["command"].index("--port") + 1], str(u.port), url_var)
            self.assertEqual(deps.get(u.hostname, {}).get("condition"), "service_healthy", url_var)
        self.assertIn(env["REDIS_HOST"], sorted(self.services), "REDIS_HOST names no compose service")
        # docker stop must outlast the drain (timeouts.shutdown; default in docs/configuration.md)
        cfg = load_yaml(os.path.join(SRC, "conf", "gateway.yaml"))
        drain = (cfg.get("timeouts") or {}).get("shutdown")
        if drain is None:
            m = re.search(r"\| `timeouts\.shutdown` \| duration \| `(\d+s)`",
                          read(os.path.join(SRC, "docs", "configuration.md")))
            drain = m.group(1)
        self.assertGreater(duration_seconds(gw.get("stop_grace_period", "10s")), duration_seconds(drain))
        self.assertEqual(gw.get("stop_signal", "SIGTERM"), "SIGTERM")

    def test_redis_service(self):
        r = self.services["redis"]
        self.assertEqual(r["image"].split(":")[0], "redis")
        cmd = r["command"] if isinstance(r["command"], list) else shlex.split(r["command"])
        self.assertEqual(cmd[cmd.index("--appendonly") + 1], "yes")
        on_data = [v for v in r.get("volumes", []) if isinstance(v, str) and v.split(":")[1] == "/data"]
        self.assertTrue(on_data and on_data[0].split(":")[0] in named_volumes(r), "redis keeps /data on a named volume")
        self.assertIn("healthcheck", r)

    def test_grafana_provisioning(self):
        graf = self.services["grafana"]
        prov = host_path(graf, "/etc/grafana/provisioning")
        self.assertTrue(prov and os.path.isdir(prov), "Grafana's provisioning directory is not mounted")
        self.assertNotIn("GF_PATHS_PROVISIONING", as_dict(graf.get("environment")))
        sources = []
        for f in sorted(os.listdir(os.path.join(prov, "datasources"))):
            sources += load_yaml(os.path.join(prov, "datasources", f))["datasources"]
        prom = [s for s in sources if s["type"] == "prometheus"]
        self.assertEqual(len(prom), 1, sources)
        u = urllib.parse.urlsplit(prom[0]["url"])
        self.assertEqual(u.hostname, "prometheus")
        self.assertIn("prometheus", self.services)
        self.assertIn(str(u.port), [p.split(":")[-1] for p in (interpolate(str(x), {}) for x in
                                                                 self.services["prometheus"]["ports"])])
        uid = prom[0]["uid"]
        dashboards = []
        for f in sorted(os.listdir(os.path.join(prov, "dashboards"))):
            for p in load_yaml(os.path.join(prov, "dashboards", f))["providers"]:
                d = host_path(graf, p["options"]["path"])
                self.assertTrue(d and os.path.isdir(d), "provider path %s is not mounted" % p["options"]["path"])
                dashboards += [os.path.join(d, x) for x in sorted(os.listdir(d)) if x.endswith(".json")]
        self.assertIn(os.path.join(SRC, "conf", "grafana", "dashboards", "gateway.json"), dashboards)
        home = as_dict(graf.get("environment")).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        if home:
            self.assertTrue(os.path.isfile(host_path(graf, home) or ""), home)
        for path in dashboards:
            dash = json.loads(read(path))
            self.assertTrue(dash.get("uid") and dash.get("title"), path)
            for p in dashboard_panels(dash):
                if p.get("type") == "row":
                    continue
                self.assertEqual((p.get("datasource") or {}).get("uid"), uid, "panel %r" % p.get("title"))
                self.assertTrue(p.get("targets"), "panel %r has no query" % p.get("title"))
                for t in p["targets"]:
                    self.assertEqual((t.get("datasource") or p["datasource"]).get("uid"), uid, p.get("title"))
                    self.assertTrue(t.get("expr"), p.get("title"))

    @unittest.skipUnless(PROMTOOL, "promtool not installed (Debian package prometheus)")
    def test_promql_and_prometheus_config_pass_promtool(self):
        prom_svc = self.services["prometheus"]
        conf = host_path(prom_svc, "/etc/prometheus/prometheus.yml")
        self.assertEqual(conf, os.path.join(SRC, "conf", "prometheus", "prometheus.yml"))
        self.assertIn("--config.file=/etc/prometheus/prometheus.yml", prom_svc.get("command", []))
        rc, out, err = run([PROMTOOL, "check", "config", conf])
        self.assertEqual(rc, 0, out + err)
        pc = load_yaml(conf)
        gw_env = as_dict(self.services["gateway"]["environment"])
        targets = [t for j in pc["scrape_configs"] if j["job_name"] == "gateway"
                   for sc in j["static_configs"] for t in sc["targets"]]
        self.assertEqual(targets, ["gateway:%s" % gw_env["PORT"]])
        rules = {"groups": [{"name": "dashboard", "rules": []}]}
        dash = json.loads(read(os.path.join(SRC, "conf", "grafana", "dashboards", "gateway.json")))
        for p in dashboard_panels(dash):
            for t in p.get("targets", []):
                rules["groups"][0]["rules"].append({"record": "dashboard:panel%s:%s" % (p["id"], t["refId"]),
                                                    "expr": grafana_expr(t["expr"], "1m")})
        self.assertGreaterEqual(len(rules["groups"][0]["rules"]), 7)
        path = os.path.join(self.tmp, "dashboard-rules.yml")
        with open(path, "w") as f:
            yaml.safe_dump(rules, f)
        rc, out, err = run([PROMTOOL, "check", "rules", path])
        self.assertEqual(rc, 0, out + err)

    @unittest.skipUnless(shutil.which("docker") and run(["docker", "compose", "version"])[0] == 0,
                         "docker compose not installed (not needed: the file is checked here without it)")
    def test_docker_compose_config(self):
        rc, out, err = run(["docker", "compose", "-f", COMPOSE_FILE, "config", "-q"])
        self.assertEqual(rc, 0, out + err)


class DockerfileTest(g.GatewayTestCase):
    """The Dockerfile's build stage against the Makefile and install-deps.sh; its commands run here."""

    @classmethod
    def setUpClass(cls):
        cls.text = read(DOCKERFILE)
        cls.stages = dockerfile_stages(cls.text)
        cls.stage = {s["name"]: s for s in cls.stages if s["name"]}

    def runs(self, stage):
        return [a for kw, a in self.stage[stage]["ins"] if kw == "RUN"]

    def test_stages(self):
        self.assertEqual([s["name"] for s in self.stages], ["build", "demo", "runtime"])
        for s in self.stages:
            self.assertEqual(s["base"], "debian:12-slim", s["name"])
        rt = dict(self.stage["runtime"]["ins"])
        user = rt.get("USER", "root").split(":")[0]
        self.assertNotIn(user, ("root", "0"), "the runtime stage runs as a user of its own")
        self.assertEqual(rt.get("STOPSIGNAL"), "SIGTERM")
        self.assertIn("HEALTHCHECK", rt)
        cmd = exec_form(rt["CMD"])
        self.assertEqual(cmd, ["gateway", "-c", "/etc/gateway/gateway.yaml"])
        self.assertNotIn("ENTRYPOINT", rt, "the gateway is PID 1 itself (signals)")
        # the placeholder password lives on its RUN line only, never in the image's environment
        for kw, args in dockerfile_instructions(self.text):
            if kw in ("ENV", "ARG"):
                self.assertNotIn("PASSWORD", args, "%s %s keeps a password in the image" % (kw, args))

    def test_build_packages_follow_install_deps(self):
        want = set()
        for a in self.runs("build"):
            want |= apt_packages(a)
        need = {p for p in install_deps_packages() if p.endswith("-dev")} - TEST_ONLY_PACKAGES
        need |= {"build-essential", "cmake", "pkg-config"}
        self.assertFalse(need - want, "scripts/install-deps.sh's build packages missing from the Dockerfile's "
                                      "build stage: %s" % sorted(need - want))

    def test_build_stage_is_make_build(self):
        """The build stage runs `make build` (with deps skipped) after one configure that only turns the
        tests off; configuring a scratch tree the same way keeps GW_TESTS=OFF and every other target."""
        runs = self.runs("build")
        build_run = [a for a in runs if re.search(r"\bmake\b.*\bbuild\b", a)]
        self.assertEqual(len(build_run), 1, runs)
        steps = [s.strip() for s in build_run[0].split("&&")]
        self.assertEqual(shlex.split(steps[-1]), ["make", "-o", "deps", "build"], steps)
        pre = [shlex.split(re.sub(r">\s*/dev/null", "", s)) for s in steps[:-1]]
        for argv in pre:
            self.assertEqual(argv[:5], ["cmake", "-S", ".", "-B", "build"], argv)
            self.assertEqual(argv[5:], ["-DGW_TESTS=OFF"], "the preset configure only turns the tests off")
        # `make build` itself, dry: the configure and build commands of the Makefile on the same tree
        scratch = os.path.join(self.tmp, "cfg")
        rc, out, err = run(["make", "-n", "-o", "deps", "build", "BUILD=" + scratch])
        self.assertEqual(rc, 0, err)
        cmds = [c for c in out.split("\n") if c.strip()]
        self.assertTrue(any(c.startswith("cmake --build " + scratch) for c in cmds), cmds)
        for argv in pre:  # the Dockerfile's configure, then the Makefile's, on a scratch tree
            rc, o, e = run([a if a != "build" else scratch for a in argv])
            self.assertEqual(rc, 0, o + e)
        for c in cmds:
            if c.startswith("cmake -S"):
                rc, o, e = run(c, shell=True)
                self.assertEqual(rc, 0, c + o + e)
        cache = read(os.path.join(scratch, "CMakeCache.txt"))
        self.assertIn("GW_TESTS:BOOL=OFF", cache)
        rc, out, err = run(["cmake", "--build", scratch, "--target", "help"])
        self.assertEqual(rc, 0, err)
        targets = set(re.findall(r"^\.\.\. (\S+)", out, re.M))
        plugins = {"gw_plugin_" + d for d in os.listdir(os.path.join(SRC, "plugins"))
                   if os.path.isdir(os.path.join(SRC, "plugins", d))
                   and any(f.endswith(".c") for f in os.listdir(os.path.join(SRC, "plugins", d)))}
        self.assertFalse((plugins | {"gateway", "gw-demo-service", "gwtesthost"}) - targets, sorted(targets))
        self.assertFalse([t for t in targets if t.startswith("unit_")], "tests configured in the image build")

    def test_build_and_runtime_commands_run_here(self):
        """The build stage's check and install, and the runtime stage's check, run on this build tree with
        /out moved to a scratch directory: the installed gateway finds its filters under its own prefix."""
        out = os.path.join(self.tmp, "out")
        runs = self.runs("build")
        check = [a for a in runs if " -t " in a]
        install = [a for a in runs if re.search(r"\bmake\b.*\binstall\b", a)]
        self.assertEqual((len(check), len(install)), (1, 1), runs)
        self.assertIn("ADMIN_PASSWORD=", check[0])
        self.assertRegex(check[0], r"build/gateway -t -c conf/gateway.yaml$")
        # `build/` is this build tree; `make` must not rebuild it (ctest runs from it): -o build
        shell_prelude = 'make() { command make -o build BUILD="%s" "$@"; }\n' % BUILD_DIR
        for cmd in (check[0], install[0]):
            cmd = re.sub(r"(?<![\w./-])build/", BUILD_DIR + "/", cmd)
            cmd = re.sub(r"(?<![\w./-])/out(?=/|\s|$)", out, cmd)
            rc, o, e = run(["sh", "-ec", shell_prelude + cmd])
            self.assertEqual(rc, 0, "%s\n%s%s" % (cmd, o, e))
        # what the runtime stage copies from /out/ onto /
        copies = [a for kw, a in self.stage["runtime"]["ins"] if kw == "COPY"]
        self.assertEqual(copies, ["--from=build /out/ /"])
        image_bin = os.path.join(out, "usr", "local", "bin", "gateway")
        self.assertTrue(os.access(image_bin, os.X_OK))
        filters = os.path.join(out, "usr", "local", "lib", "gateway", "filters")
        built = sorted(f for f in os.listdir(os.path.join(BUILD_DIR, "plugins")) if f.endswith(".so"))
        self.assertEqual(sorted(os.listdir(filters)), built)
        self.assertTrue(os.path.isfile(os.path.join(out, "usr", "local", "include", "gw", "filter.h")))
        self.assertEqual(read(os.path.join(out, "etc", "gateway", "gateway.yaml")),
                         read(os.path.join(SRC, "conf", "gateway.yaml")))
        self.assertFalse(os.path.exists(os.path.join(out, "usr", "local", "etc")), "one configuration in the image")
        # the runtime stage's own check, with the image's PATH and files
        rt_check = [a for kw, a in self.stage["runtime"]["ins"] if kw == "RUN" and " -t " in a]
        self.assertEqual(len(rt_check), 1)
        cmd = re.sub(r"(?<![\w.-])(/etc/gateway/\S+)", lambda m: out + m.group(1), rt_check[0])
        env = {"PATH": os.path.join(out, "usr", "local", "bin") + ":/usr/bin:/bin"}
        rc, o, e = run(["sh", "-ec", cmd], env=env, cwd=self.tmp)
        self.assertEqual(rc, 0, "%s\n%s%s" % (cmd, o, e))
        # and not because of the build tree: without the installed filters the same binary finds none
        lonely = os.path.join(self.tmp, "lonely")
        os.makedirs(lonely)
        shutil.copy(image_bin, lonely)
        rc, o, e = run([os.path.join(lonely, "gateway"), "-t", "-c", os.path.join(SRC, "conf", "gateway.yaml")],
                       env={"ADMIN_PASSWORD": "x"})
        if not os.path.isdir("/usr/local/lib/gateway/filters"):
            self.assertEqual(rc, 1, o + e)
            self.assertIn("filter not found", e)

    @unittest.skipUnless(shutil.which("dpkg-query") and shutil.which("ldd"), "not a Debian machine")
    def test_runtime_packages_provide_every_library(self):
        """ldd of the binaries the images copy; dpkg names the package of each library; the stage installs it."""
        def packages_of(objs):
            need = {}
            for obj in objs:
                rc, out, err = run(["ldd", obj])
                self.assertEqual(rc, 0, obj + err)
                self.assertNotIn("not found", out, obj)
                for m in re.finditer(r"=>\s+(/\S+)", out):
                    lib = m.group(1)
                    cands = {lib, os.path.realpath(lib)}
                    cands |= {c[4:] if c.startswith("/usr/") else "/usr" + c for c in list(cands)}
                    pkg = None
                    for c in cands:
                        r = subprocess.run(["dpkg-query", "-S", c], capture_output=True, text=True)
                        if r.returncode == 0:
                            pkg = r.stdout.split(":")[0].strip()
                            break
                    self.assertTrue(pkg, "no Debian package ships %s (needed by %s)" % (lib, obj))
                    need.setdefault(pkg, set()).add(os.path.basename(obj))
            return need

        plugins = os.path.join(BUILD_DIR, "plugins")
        runtime = [os.path.join(BUILD_DIR, "gateway")] + [os.path.join(plugins, f) for f in sorted(os.listdir(plugins))
                                                           if f.endswith(".so")]
        for stage, objs in (("runtime", runtime), ("demo", [os.path.join(BUILD_DIR, "gw-demo-service")])):
            have = set()
            for kw, a in self.stage[stage]["ins"]:
                if kw == "RUN":
                    have |= apt_packages(a)
            need = packages_of(objs)
            missing = {p: sorted(v) for p, v in need.items() if p not in have | BASE_IMAGE_PACKAGES}
            self.assertFalse(missing, "the %s stage lacks packages: %s" % (stage, missing))


@unittest.skipIf(yaml is None, "PyYAML missing (Debian package python3-yaml)")
@unittest.skipUnless(os.path.exists(g.GW_DEMO_BIN), "demo service binary not built: %s" % g.GW_DEMO_BIN)
@unittest.skipUnless(REDIS_SERVER and REDIS_CLI, "redis-server / redis-cli not installed")
class ComposeStackTest(g.GatewayTestCase):
    """The stack docker-compose.yml describes, run from this build tree without Docker."""

    def setUp(self):
        super().setUp()
        self.compose = load_yaml(COMPOSE_FILE)
        self.services = self.compose["services"]
        self.stages = dockerfile_stages(read(DOCKERFILE))
        self.ports = {}  # (service, container port) -> host port

    # -- the services, as compose starts them, on free loopback ports --
    def check_health(self, svc_name, sub):
        """compose's health check of a service, its arguments through sub (moved ports)."""
        test = self.services[svc_name]["healthcheck"]["test"]
        self.assertEqual(test[0], "CMD", test)
        rc, out, err = run([sub(a) for a in test[1:]], timeout=10)
        return rc, out + err

    def start_redis(self):
        svc = self.services["redis"]
        cmd = list(svc["command"])
        self.assertEqual(cmd[0], "redis-server")
        port = g.free_port()
        rdir = g.new_tmp_dir("redis-")
        p = self.start_proc([REDIS_SERVER] + cmd[1:] + ["--port", str(port), "--bind", g.LOCALHOST, "--dir", rdir,
                                                        "--save", "", "--daemonize", "no", "--logfile", "",
                                                        "--protected-mode", "yes"], "redis", cwd=rdir)
        self.ports[("redis", 6379)] = port

        test = svc["healthcheck"]["test"]
        self.assertEqual(test[:2], ["CMD", "redis-cli"], test)
        check = [REDIS_CLI, "-p", str(port)] + test[2:]  # compose's check, on the moved port

        def healthy():
            if not p.alive():
                raise AssertionError("redis-server exited:\n%s" % p.log())
            rc, out, _ = run(check, timeout=5)
            return rc == 0 and "PONG" in out
        self.assertTrue(g.wait_until(healthy, 10 * g.SLOW, interval=0.05), p.log())
        self.redis_dir = rdir
        return port

    def start_demo(self, name):
        svc = self.services[name]
        cmd = list(svc["command"])
        self.assertEqual(cmd[0], "gw-demo-service")
        cport = int(cmd[cmd.index("--port") + 1])
        port = g.free_port()
        argv = [g.GW_DEMO_BIN] + cmd[1:]
        argv[argv.index("--port") + 1] = str(port)
        argv[argv.index("--address") + 1] = g.LOCALHOST  # compose binds 0.0.0.0 in its own network
        p = self.start_proc(argv, name)
        self.ports[(name, cport)] = port
        ok = g.wait_until(lambda: g.port_accepts(port) or not p.alive(), 10 * g.SLOW)
        self.assertTrue(ok and p.alive(), "%s did not start; log:\n%s" % (name, p.log()))
        rc, out = self.check_health(name, lambda a: a.replace("/%d" % cport, "/%d" % port))
        self.assertEqual(rc, 0, "%s's compose health check failed: %s" % (name, out))
        return p

    def gateway_env(self):
        """.env (from .env.example, with a password) under compose's environment:, addresses moved."""
        svc = self.services["gateway"]
        values, _ = parse_env_file(read(ENV_EXAMPLE))
        values["ADMIN_PASSWORD"] = PLACEHOLDER_PASSWORD
        env = dict(values)
        env.update(as_dict(svc["environment"]))  # environment: wins over env_file
        cport = int(env["PORT"])
        self.ports[("gateway", cport)] = g.free_port()
        moved = {}
        for k, v in env.items():
            u = urllib.parse.urlsplit(v) if "://" in v else None
            if u and (u.hostname, u.port) in self.ports:
                v = "%s://%s:%d%s" % (u.scheme, g.LOCALHOST, self.ports[(u.hostname, u.port)], u.path)
            moved[k] = v
        self.assertIn(env["REDIS_HOST"], sorted(self.services), "REDIS_HOST names no compose service")
        moved["REDIS_HOST"] = g.LOCALHOST
        moved["REDIS_PORT"] = str(self.ports[(env["REDIS_HOST"], int(env["REDIS_PORT"]))])
        self.assertEqual(env["HOST"], "0.0.0.0")
        moved["HOST"] = g.LOCALHOST  # tests listen on loopback only
        moved["PORT"] = str(self.ports[("gateway", cport)])
        # a container's environment has nothing else: none of the test's own variables the config reads
        for k in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", read(os.path.join(SRC, "conf", "gateway.yaml"))):
            moved.setdefault(k, None)
        return moved

    def start_gateway_as_image(self):
        """The image's CMD: `gateway` from the image's PATH (the staged `make install`), its -c file
        through compose's mount of ./conf."""
        runtime = self.stages[-1]
        cmd = exec_form(dict(runtime["ins"])["CMD"])
        self.assertEqual(cmd[0], "gateway")
        stage = os.path.join(self.tmp, "image")
        rc, o, e = run(["make", "-o", "build", "install", "BUILD=" + BUILD_DIR, "PREFIX=/usr/local",
                        "DESTDIR=" + stage])
        self.assertEqual(rc, 0, o + e)
        argv = [os.path.join(stage, "usr", "local", "bin", "gateway")] + cmd[1:]
        conf = argv[argv.index("-c") + 1]
        argv[argv.index("-c") + 1] = host_path(self.services["gateway"], conf)
        env = self.gateway_env()
        workdir = os.path.join(self.tmp, "var-lib-gateway")
        os.makedirs(workdir)
        port = int(env["PORT"])
        gw = g.Gateway(self.tmp, None, port=port, env=env, cwd=workdir, config_path=argv[2],
                       bin_path=argv[0])
        self._gateways.append(gw)
        return gw

    def test_stack(self):
        self.start_redis()
        self.start_demo("auth-service")
        users = self.start_demo("user-service")
        gw = self.start_gateway_as_image()
        port = gw.port

        # the image's HEALTHCHECK, as docker runs it in the container (PORT from the environment)
        hc = [a for kw, a in self.stages[-1]["ins"] if kw == "HEALTHCHECK"][0]
        hc_argv = exec_form(re.search(r"\bCMD\s+(\[.*\])\s*$", hc).group(1))
        rc, out, err = run(hc_argv, env={"PORT": str(port)}, timeout=10)
        self.assertEqual(rc, 0, "HEALTHCHECK failed against a running gateway: %s%s" % (out, err))
        rc, out, err = run(hc_argv, env={"PORT": str(g.free_port())}, timeout=10)
        self.assertNotEqual(rc, 0, "HEALTHCHECK passed with nothing listening")

        # traffic: 2xx, 404, 401, an API key stored in Redis, then a dead upstream (retries, breaker), then 429s
        auth = {"Authorization": "Basic " + base64.b64encode(("admin:" + PLACEHOLDER_PASSWORD).encode()).decode()}
        for path in ("/api/users/1", "/api/users/2", "/api/auth/me"):
            st, _, body = g.http_request(port, "GET", path)
            self.assertEqual(st, 200, body)
        self.assertEqual(g.http_request(port, "GET", "/nowhere")[0], 404)
        self.assertEqual(g.http_request(port, "GET", "/admin/apikeys")[0], 401)
        st, _, body = g.http_request(port, "POST", "/admin/apikeys", body=b'{"name": "compose"}',
                                     headers=dict(auth, **{"Content-Type": "application/json"}))
        self.assertEqual(st, 201, body)
        key_id = json.loads(body)["data"]["api_key"]["id"]
        st, _, body = g.http_request(port, "GET", "/admin/config", headers=auth)
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["data"]["config"]["store"]["type"], "redis", body[:2000])
        rc, out, _ = run([REDIS_CLI, "-p", str(self.ports[("redis", 6379)]), "--scan", "--pattern", "apikey:*"],
                         timeout=10)
        self.assertTrue(out.split(), "no API key in Redis")
        st, _, body = g.http_request(port, "GET", "/admin/apikeys", headers=auth)
        self.assertIn(key_id, body.decode())
        users.stop()
        for _ in range(2):
            st, _, _ = g.http_request(port, "GET", "/api/users/1", timeout=30)
            self.assertGreaterEqual(st, 500)
        statuses = [g.http_request(port, "GET", "/api/auth/me")[0] for _ in range(14)]
        self.assertIn(429, statuses)

        r = g.simple_request(port, "GET", "/metrics", timeout=10)
        self.assertEqual(r.status, 200, r.summary())
        exported = exposition_names(r.body.decode())
        self.assertTrue(exported.get("gateway_retries_total"), "no retry was counted:\n%s" % r.body.decode()[:4000])

        # the dashboard against the live exposition
        dash = json.loads(read(os.path.join(SRC, "conf", "grafana", "dashboards", "gateway.json")))
        queries, used = [], set()
        for p in dashboard_panels(dash):
            for t in p.get("targets", []):
                names, labels = promql_refs(grafana_expr(t["expr"], "1m"))
                self.assertTrue(names, "no metric in %r" % t["expr"])
                unknown = names - set(exported)
                self.assertFalse(unknown, "panel %r queries metrics the gateway does not export: %s"
                                 % (p["title"], sorted(unknown)))
                known_labels = set(TARGET_LABELS) | {"le", "quantile"}
                for n in names:
                    known_labels |= exported[n]
                self.assertFalse(labels - known_labels, "panel %r uses labels no series of %s has: %s"
                                 % (p["title"], sorted(names), sorted(labels - known_labels)))
                used |= names
                queries.append((p["title"], t))
        self.assertFalse(DASHBOARD_MUST_USE - used, "the dashboard shows nothing of %s"
                         % sorted(DASHBOARD_MUST_USE - used))

        if PROMETHEUS:
            self.prometheus_answers(port, queries)

        # SIGHUP reloads (docker kill -s HUP), SIGTERM stops with 0 (docker stop)
        gen = json.loads(g.http_request(port, "GET", "/info")[2])["generation"]
        gw.proc.signal(signal.SIGHUP)
        self.assertTrue(g.wait_until(lambda: json.loads(g.http_request(port, "GET", "/info")[2])["generation"] > gen,
                                     10 * g.SLOW, interval=0.05), gw.log())
        gw.proc.signal(signal.SIGTERM)
        rc = gw.proc.wait(duration_seconds(self.services["gateway"]["stop_grace_period"]))
        self.assertEqual(rc, 0, gw.log())

    def prometheus_answers(self, gw_port, queries):
        """conf/prometheus/prometheus.yml with its gateway target moved here (and 1 s scrapes): prometheus
        scrapes the gateway and answers every dashboard query with series the legends can name."""
        pc = load_yaml(os.path.join(SRC, "conf", "prometheus", "prometheus.yml"))
        pc["global"]["scrape_interval"] = "1s"
        pc["global"]["scrape_timeout"] = "1s"
        for job in pc["scrape_configs"]:
            job.pop("scrape_interval", None)
            job.pop("scrape_timeout", None)
            for sc in job["static_configs"]:
                sc["targets"] = ["%s:%d" % (g.LOCALHOST, self.ports[(h, int(p))])
                                 for h, p in (t.rsplit(":", 1) for t in sc["targets"])]
        pdir = g.new_tmp_dir("prometheus-")
        conf = os.path.join(pdir, "prometheus.yml")
        with open(conf, "w") as f:
            yaml.safe_dump(pc, f)
        web = g.free_port()
        prom = self.start_proc([PROMETHEUS, "--config.file=" + conf,
                                "--storage.tsdb.path=" + os.path.join(pdir, "data"),
                                "--web.listen-address=%s:%d" % (g.LOCALHOST, web), "--log.level=warn",
                                "--storage.tsdb.retention.time=1h"], "prometheus", cwd=pdir)

        def query(expr):
            url = "http://%s:%d/api/v1/query?%s" % (g.LOCALHOST, web, urllib.parse.urlencode({"query": expr}))
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                return json.loads(e.read() or b"{}")
            except OSError:
                return None

        pending = {(title, t["refId"]): (t, grafana_expr(t["expr"], "20s")) for title, t in queries}
        answers = {}

        def all_answered():
            self.assertTrue(prom.alive(), "prometheus exited:\n%s" % prom.log())
            for key, (t, expr) in list(pending.items()):
                doc = query(expr)
                if doc and doc.get("status") == "error":
                    self.fail("prometheus refuses %r of panel %r: %s" % (expr, key[0], doc.get("error")))
                if doc and doc.get("status") == "success" and doc["data"]["result"]:
                    answers[key] = doc["data"]["result"]
                    del pending[key]
            return not pending
        g.wait_until(all_answered, 60 * g.SLOW, interval=1.0)
        self.assertFalse(pending, "no series within %ds for %s; prometheus log:\n%s"
                         % (60 * g.SLOW, sorted(pending), prom.log()))
        for (title, ref), result in answers.items():
            t = [t for ti, t in queries if ti == title and t["refId"] == ref][0]
            for lbl in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
                for s in result:
                    self.assertIn(lbl, s["metric"], "panel %r: the legend names {{%s}}, its series have %s"
                                  % (title, lbl, sorted(s["metric"])))
        self.assertEqual(prom.stop(), 0, prom.log())


class MakeTargetsTest(g.GatewayTestCase):
    """make docker / compose-up / compose-down with a stand-in docker that records its arguments."""

    def make(self, target, path_dirs, cwd):
        make = shutil.which("make")
        env = {"PATH": ":".join(path_dirs)}
        return run([make, "-f", os.path.join(SRC, "Makefile"), target], env=env, cwd=cwd, timeout=30)

    def fake_docker(self, compose_ok=True):
        d = g.new_tmp_dir("fakebin-")
        log = os.path.join(d, "calls")
        with open(os.path.join(d, "docker"), "w") as f:
            f.write("#!/bin/sh\n[ \"$1 $2\" = 'compose version' ] && exit %d\necho \"$@\" >> %s\n"
                    % (0 if compose_ok else 1, shlex.quote(log)))
        os.chmod(os.path.join(d, "docker"), 0o755)
        return d, log

    def test_targets(self):
        work = g.new_tmp_dir("makecwd-")
        empty = g.new_tmp_dir("nodocker-")
        tools = g.new_tmp_dir("tools-")
        for t in ("grep",):  # what the recipes call besides docker (sh builtins aside)
            os.symlink(shutil.which(t), os.path.join(tools, t))
        # no docker at all: a clear message, no attempt
        for target, word in (("docker", "docker not found"), ("compose-up", "docker compose not found"),
                             ("compose-down", "docker compose not found")):
            rc, out, err = self.make(target, [empty, tools], work)
            self.assertNotEqual(rc, 0, target)
            self.assertIn(word, err, target)
        # docker without compose
        d, log = self.fake_docker(compose_ok=False)
        rc, out, err = self.make("compose-up", [d, tools], work)
        self.assertNotEqual(rc, 0)
        self.assertIn("Compose plugin", err)
        # docker with compose
        d, log = self.fake_docker()
        rc, out, err = self.make("docker", [d, tools], work)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(log).split("\n")[-2], "build -t gateway .")
        rc, out, err = self.make("compose-up", [d, tools], work)  # no .env here
        self.assertNotEqual(rc, 0)
        self.assertIn("cp .env.example .env", err)
        self.assertIn("ADMIN_PASSWORD", err)
        with open(os.path.join(work, ".env"), "w") as f:
            f.write("ADMIN_PASSWORD=\n")
        rc, out, err = self.make("compose-up", [d, tools], work)  # empty password
        self.assertNotEqual(rc, 0)
        with open(os.path.join(work, ".env"), "w") as f:
            f.write("ADMIN_PASSWORD=s3cret\n")
        rc, out, err = self.make("compose-up", [d, tools], work)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(log).split("\n")[-2], "compose up --build -d")
        rc, out, err = self.make("compose-down", [d, tools], work)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(log).split("\n")[-2], "compose down")


if __name__ == "__main__":
    g.main()
