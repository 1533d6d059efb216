#!/usr/bin/env python3
"""`make install` end to end, without rebuilding: the Makefile's own install target run on this build tree
(`make -o build install BUILD=<this build> DESTDIR=<tmp> PREFIX=/usr/local`: the recipe users run, minus
the build it depends on, which ctest has done already) into a staging directory. Then:
  - every expected file is in DESTDIR/usr/local (binary, every filter of this build, SDK headers, static
    libraries, pkg-config files, CMake package, configuration, man page, systemd unit) and nothing is
    written outside DESTDIR/usr/local;
  - the staged binary starts on the staged configuration (cwd: a scratch directory, like the unit's
    WorkingDirectory) and finds its filters relative to itself: /health answers, /info lists every filter
    of build/plugins; an API key is stored under data/ of the working directory; SIGHUP reloads; SIGTERM
    exits 0. Where the kernel has PR_SET_MDWE (Linux 6.3+) it runs with writable+executable mappings
    refused, as MemoryDenyWriteExecute=yes in the unit does;
  - PREFIX=/usr: the configuration goes to /etc/gateway, the unit is conf/gateway.service as written, the
    binary (configured for another prefix) still loads every filter; an edited configuration survives a
    second install (the shipped one goes next to it as gateway.yaml.dist);
  - the staged SDK builds and loads a tiny filter, once through pkg-config (PKG_CONFIG_SYSROOT_DIR, as a
    package build would) and once through find_package(GatewaySDK);
  - `gateway --help` and docs/gateway.8 both name every option of core/main.c's option table, every signal
    it handles, every ${VAR} of conf/gateway.yaml and every variable the binary reads with getenv();
  - the man page renders without warnings (man -l, groff -ww), and the unit passes `systemd-analyze verify`
    (each skipped with a message when the tool is missing).
Not in the sanitizer set (no asan label): it only copies and runs what the normal build made."""

import base64
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import unittest

import gwtest as g

BUILD_DIR = os.path.dirname(os.path.abspath(g.GW_BIN))
SRC = g.SOURCE_DIR
PREFIX = "/usr/local"
MAIN_C = os.path.join(SRC, "core", "main.c")
MAN_SRC = os.path.join(SRC, "docs", "gateway.8")
UNIT_SRC = os.path.join(SRC, "conf", "gateway.service")
CONF_SRC = os.path.join(SRC, "conf", "gateway.yaml")


def note(msg):
    """A line in the test's output that says what was not checked here (ctest shows it on failure, and
    always with --output-on-failure -V)."""
    sys.stderr.write("test_install: NOTE: %s\n" % msg)


def run(argv, cwd=None, env=None, timeout=300):
    """Runs a command; returns (rc, stdout, stderr). env entries set to None are removed."""
    full = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    r = subprocess.run(argv, cwd=cwd, env=full, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout * g.SLOW)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def make_install(destdir, prefix):
    """What `make install DESTDIR=... PREFIX=...` runs, on this build tree, without its build step."""
    return run(["make", "--no-print-directory", "-C", SRC, "-o", "build", "install", "BUILD=" + BUILD_DIR,
                "DESTDIR=" + destdir, "PREFIX=" + prefix])


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def built_filters():
    """Names of the filters this build made (build/plugins/<name>.so)."""
    return sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(BUILD_DIR, "plugins", "*.so")))


def config_vars():
    """Every ${VAR} used by a value of conf/gateway.yaml (comments left out)."""
    names = set()
    for line in read(CONF_SRC).splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        names.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}", line))
    return sorted(names)


def getenv_vars():
    """Variables the binary reads itself: getenv("NAME") in core/ and plugins/."""
    names = set()
    for pattern in ("core/**/*.c", "plugins/**/*.c"):
        for path in glob.glob(os.path.join(SRC, pattern), recursive=True):
            names.update(re.findall(r'getenv\("([A-Za-z_][A-Za-z0-9_]*)"\)', read(path)))
    return sorted(names)


def cli_options():
    """(long options, short options, handled signals) parsed from core/main.c."""
    src = read(MAIN_C)
    table = re.search(r"struct option opts\[\]\s*=\s*\{(.*?)\{NULL", src, re.S)
    longs = re.findall(r'\{"([a-z][a-z0-9-]*)",\s*(?:no|required|optional)_argument', table.group(1))
    shorts = re.search(r'getopt_long\(argc, argv, "([^"]*)"', src).group(1).replace(":", "")
    sigs = re.findall(r"evsignal_new\([^,]+,\s*(SIG[A-Z0-9]+)\s*,", src)
    return sorted(set(longs)), sorted(set(shorts)), sorted(set(sigs))


def deroff(text):
    """The man page source as plain words: \\- as -, font changes and comments removed."""
    text = re.sub(r'^\.\\".*$', "", text, flags=re.M)
    text = text.replace("\\-", "-").replace("\\e", "\\")
    return re.sub(r"\\f[BIRP]", "", text)


def project_version():
    text = read(os.path.join(SRC, "CMakeLists.txt"))
    return re.search(r"project\(\s*gateway\s+VERSION\s+([0-9.]+)", text).group(1)


def mdwe_supported():
    """True when this kernel can refuse writable+executable mappings per process (PR_SET_MDWE), tried in a
    throw-away child so that this process is not affected."""
    code = ("import ctypes,sys; l=ctypes.CDLL(None, use_errno=True); "
            "sys.exit(0 if l.prctl(65, 1, 0, 0, 0) == 0 else 1)")
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


# The staged gateway is started through this when MDWE is available: PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN)
# then exec; the flag survives execve, so the gateway runs as under MemoryDenyWriteExecute=yes.
MDWE_EXEC = ("import ctypes,os,sys; l=ctypes.CDLL(None, use_errno=True); "
             "l.prctl(65, 1, 0, 0, 0) == 0 or sys.exit('PR_SET_MDWE failed'); os.execv(sys.argv[1], sys.argv[1:])")


class InstallTest(g.GatewayTestCase):
    dest = None

    @classmethod
    def setUpClass(cls):
        for tool in ("make", "cmake"):
            if not shutil.which(tool):
                raise unittest.SkipTest("%s not found" % tool)
        if not os.path.exists(os.path.join(BUILD_DIR, "cmake_install.cmake")):
            raise unittest.SkipTest("%s is not a CMake build tree" % BUILD_DIR)
        cls.dest = g.new_tmp_dir("install-destdir-")
        rc, out, err = make_install(cls.dest, PREFIX)
        if rc != 0:
            raise AssertionError("make install failed (%d):\n%s%s" % (rc, out, err))
        cls.install_log = out + err
        cls.root = cls.dest + PREFIX
        cls.bin = os.path.join(cls.root, "bin", "gateway")
        cls.conf = os.path.join(cls.root, "etc", "gateway", "gateway.yaml")

    def staged(self, rel):
        return os.path.join(self.root, rel)

    def assertFile(self, rel):
        path = self.staged(rel)
        self.assertTrue(os.path.isfile(path),
                        "%s not installed; make install said:\n%s" % (path, self.install_log))
        return path

    # ----------------------------------------------------------------------------------------------
    def test_layout(self):
        self.assertTrue(os.access(self.assertFile("bin/gateway"), os.X_OK))
        filters = built_filters()
        self.assertGreaterEqual(len(filters), 9, "build/plugins holds %s" % filters)
        for name in filters:
            self.assertFile("lib/gateway/filters/%s.so" % name)
        self.assertEqual(sorted(os.listdir(self.staged("lib/gateway/filters"))), [n + ".so" for n in filters])
        for h in glob.glob(os.path.join(SRC, "include", "gw", "*.h")):
            self.assertFile("include/gw/" + os.path.basename(h))
        for rel in ("include/gw/testhost.h", "lib/libgwtesthost.a", "lib/libgwconfig.a", "lib/libgwhttp.a",
                    "lib/pkgconfig/gateway-sdk.pc", "lib/pkgconfig/gateway-sdk-testhost.pc",
                    "lib/cmake/GatewaySDK/GatewaySDKConfig.cmake",
                    "lib/cmake/GatewaySDK/GatewaySDKConfigVersion.cmake",
                    "lib/cmake/GatewaySDK/GatewaySDKTargets.cmake"):
            self.assertFile(rel)
        self.assertEqual(sha(self.assertFile("etc/gateway/gateway.yaml")), sha(CONF_SRC))
        self.assertEqual(sha(self.assertFile("share/man/man8/gateway.8")), sha(MAN_SRC))
        unit = read(self.assertFile("lib/systemd/system/gateway.service"))
        self.assertIn("\nExecStart=/usr/local/bin/gateway -c /usr/local/etc/gateway/gateway.yaml\n", unit)
        self.assertIn("\nEnvironmentFile=-/usr/local/etc/gateway/gateway.env\n", unit)
        self.assertNotIn("/usr/bin/gateway", unit)
        self.assertEqual(unit.replace("/usr/local/bin/gateway", "/usr/bin/gateway")
                         .replace("/usr/local/etc/gateway/", "/etc/gateway/"), read(UNIT_SRC))
        # the pkg-config files name the final prefix, not the staging directory
        pc = read(self.staged("lib/pkgconfig/gateway-sdk.pc"))
        self.assertIn("prefix=%s\n" % PREFIX, pc)
        self.assertNotIn(self.dest, pc)
        # DESTDIR honoured: nothing outside DESTDIR/PREFIX
        for top, dirs, files in os.walk(self.dest):
            for f in files:
                p = os.path.join(top, f)
                self.assertTrue(p.startswith(self.root + "/"), "%s is outside %s" % (p, self.root))

    # ----------------------------------------------------------------------------------------------
    def start_staged(self, bin_path, conf, workdir, name, mdwe=False):
        """Starts an installed gateway on its installed configuration; returns (proc, port)."""
        port = g.free_port()
        closed = g.free_port()  # nothing listens there: the services are down, which /health does not mind
        env = {v: None for v in config_vars()}  # only what is set here, whatever the runner's environment
        env.update({"HOST": g.LOCALHOST, "PORT": str(port), "ADMIN_PASSWORD": "install-test-pw",
                    "AUTH_SERVICE_URL": "http://127.0.0.1:%d" % closed,
                    "USER_SERVICE_URL": "http://127.0.0.1:%d" % closed})
        argv = [bin_path, "-c", conf]
        if mdwe:
            argv = [sys.executable, "-c", MDWE_EXEC] + argv
        proc = self.start_proc(argv, name, env=env, cwd=workdir)
        ok = g.wait_until(lambda: g.port_accepts(port) or not proc.alive(), 10 * g.SLOW)
        if not proc.alive() or not ok:
            raise AssertionError("the installed gateway did not start (exit %s); log:\n%s"
                                 % (proc.popen.poll(), proc.log()))
        return proc, port

    def test_staged_gateway_runs(self):
        baked = None
        cache = os.path.join(BUILD_DIR, "CMakeCache.txt")
        m = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", read(cache), re.M) if os.path.exists(cache) else None
        if m:
            baked = os.path.join(m.group(1), "lib", "gateway", "filters")
            if glob.glob(os.path.join(baked, "*.so")):
                note("%s holds filters (an earlier real install): this run does not prove on its own that the "
                     "staged binary found its filters relative to itself (test_prefix_usr does, with a "
                     "filter found nowhere else)" % baked)
        mdwe = mdwe_supported()
        if not mdwe:
            note("this kernel has no PR_SET_MDWE: the gateway is not run with W+X mappings refused")
        work = g.new_tmp_dir("install-work-")
        proc, port = self.start_staged(self.bin, self.conf, work, "staged-gateway", mdwe=mdwe)
        r = g.simple_request(port, "GET", "/health")
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.json()["status"], "ok")
        r = g.simple_request(port, "GET", "/info")
        self.assertEqual(r.status, 200, r.summary())
        names = sorted(f["name"] for f in r.json()["filters"])
        self.assertEqual(names, built_filters(), "/info filters vs build/plugins")
        # ADMIN_PASSWORD reached adminauth, and the embedded store writes under data/ of the working directory
        auth = "Basic " + base64.b64encode(b"admin:install-test-pw").decode()
        r = g.simple_request(port, "POST", "/admin/apikeys", headers=[("Authorization", auth),
                             ("Content-Type", "application/json")], body=b'{"name":"install-test"}')
        self.assertEqual(r.status, 201, r.summary())
        self.assertTrue(os.listdir(os.path.join(work, "data")), "nothing stored under %s/data" % work)
        proc.signal(signal.SIGHUP)
        reloaded = g.wait_until(lambda: "reload: generation 2 serves new requests" in proc.log(), 10 * g.SLOW)
        self.assertTrue(reloaded, "SIGHUP: no reload; log:\n" + proc.log())
        self.assertEqual(g.simple_request(port, "GET", "/info").json()["generation"], 2)
        proc.signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10 * g.SLOW), 0, proc.log())
        rc, out, err = run([self.bin, "-t", "-c", self.conf], env={"ADMIN_PASSWORD": "x"})
        self.assertEqual((rc, out.strip()), (0, self.conf + ": ok"), err)

    # ----------------------------------------------------------------------------------------------
    def test_prefix_usr(self):
        dest = g.new_tmp_dir("install-usr-")
        rc, out, err = make_install(dest, "/usr")
        self.assertEqual(rc, 0, out + err)
        conf = os.path.join(dest, "etc", "gateway", "gateway.yaml")
        self.assertEqual(sha(conf), sha(CONF_SRC))
        self.assertFalse(os.path.exists(os.path.join(dest, "usr", "etc")), "PREFIX=/usr: sysconfdir is /etc")
        self.assertEqual(read(os.path.join(dest, "usr", "lib", "systemd", "system", "gateway.service")),
                         read(UNIT_SRC))
        for name in built_filters():
            self.assertTrue(os.path.isfile(os.path.join(dest, "usr", "lib", "gateway", "filters", name + ".so")))
        # configured for another prefix, moved elsewhere: finds its filters next to itself
        staged_bin = os.path.join(dest, "usr", "bin", "gateway")
        rc, out, err = run([staged_bin, "-t", "-c", conf], env={"ADMIN_PASSWORD": "x"})
        self.assertEqual(rc, 0, out + err)
        # ... and only there: a filter that is in no other directory the gateway searches
        fixture = g.fixture_path("counter")
        if os.path.isfile(fixture):
            shutil.copy(fixture, os.path.join(dest, "usr", "lib", "gateway", "filters"))
            port = g.free_port()
            services = [{"name": "up", "targets": ["http://127.0.0.1:%d" % port]}]
            pipeline = [{"name": "counter", "log_path": os.path.join(dest, "counter.log"), "tag": "t"}]
            cfg = g.write_config(os.path.join(dest, "probe.yaml"), g.base_config(
                port, services, [{"prefix": "/", "service": "up"}], pipeline=pipeline))
            rc, out, err = run([staged_bin, "-t", "-c", cfg])
            self.assertEqual(rc, 0, out + err)
        else:
            note("fixture %s not built: the lookup next to the binary is checked with the first-party "
                 "filters only" % fixture)
        # a local edit survives a reinstall
        with open(conf, "a") as f:
            f.write("# edited\n")
        edited = sha(conf)
        rc, out, err = make_install(dest, "/usr")
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(sha(conf), edited, "an edited configuration was overwritten")
        self.assertEqual(sha(conf + ".dist"), sha(CONF_SRC))
        self.assertIn("Keeping: " + conf, out + err)

    # ----------------------------------------------------------------------------------------------
    PROBE_C = r"""
#include <gw/filter.h>
GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR, .abi_minor = GW_ABI_MINOR, .struct_size = sizeof(gw_filter_desc),
    .name = "install_probe", .version = "0.0.1", .description = "built against an installed SDK",
};
"""
    PROBE_TEST_C = r"""
#include <gw/testhost.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    gw_th *th = gw_th_new();
    int rc = gw_th_load(th, argv[1], "name: install_probe\n");
    printf("%s\n", rc == 0 ? "probe loaded" : gw_th_error(th));
    gw_th_free(th);
    return rc == 0 ? 0 : 1;
}
"""
    PROBE_CMAKE = r"""
cmake_minimum_required(VERSION 3.18)
project(install_probe LANGUAGES C)
find_package(GatewaySDK REQUIRED)
add_library(install_probe MODULE probe.c)
target_link_libraries(install_probe PRIVATE GatewaySDK::headers)
set_target_properties(install_probe PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden)
add_executable(probe_test probe_test.c)
target_link_libraries(probe_test PRIVATE GatewaySDK::testhost)
"""

    def write_probe(self, d):
        for name, text in (("probe.c", self.PROBE_C), ("probe_test.c", self.PROBE_TEST_C),
                           ("CMakeLists.txt", self.PROBE_CMAKE)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)

    def check_probe(self, so, test_bin):
        rc, out, err = run([test_bin, so])
        self.assertEqual((rc, out.strip()), (0, "probe loaded"), out + err)
        rc, out, err = run([self.bin, "--check-filter", so])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"name:\s+install_probe\n")
        self.assertRegex(out, r"verdict:\s+compatible")

    def test_sdk_pkg_config(self):
        if not shutil.which("pkg-config") or not shutil.which("cc"):
            self.skipTest("pkg-config or cc not found")
        d = g.new_tmp_dir("install-pc-")
        self.write_probe(d)
        env = {"PKG_CONFIG_PATH": os.path.join(self.root, "lib", "pkgconfig"), "PKG_CONFIG_SYSROOT_DIR": self.dest}
        rc, cflags, err = run(["pkg-config", "--cflags", "gateway-sdk"], env=env)
        self.assertEqual(rc, 0, err)
        self.assertIn("-I" + os.path.join(self.root, "include"), cflags.split())
        rc, libs, err = run(["pkg-config", "--static", "--libs", "gateway-sdk-testhost"], env=env)
        self.assertEqual(rc, 0, err)
        rc, out, err = run(["cc", "-shared", "-fPIC", "-fvisibility=hidden", "-o", "install_probe.so", "probe.c"]
                           + cflags.split(), cwd=d)
        self.assertEqual(rc, 0, out + err)
        rc, out, err = run(["cc", "-o", "probe_test", "probe_test.c"] + cflags.split() + libs.split(), cwd=d)
        self.assertEqual(rc, 0, out + err)
        self.check_probe(os.path.join(d, "install_probe.so"), os.path.join(d, "probe_test"))

    def test_sdk_cmake_package(self):
        d = g.new_tmp_dir("install-cmake-")
        self.write_probe(d)
        b = os.path.join(d, "build")
        rc, out, err = run(["cmake", "-S", d, "-B", b, "-DCMAKE_PREFIX_PATH=" + self.root])
        self.assertEqual(rc, 0, out + err)
        rc, out, err = run(["cmake", "--build", b])
        self.assertEqual(rc, 0, out + err)
        self.check_probe(os.path.join(b, "install_probe.so"), os.path.join(b, "probe_test"))

    # ----------------------------------------------------------------------------------------------
    def test_help_and_man_page_cover_the_command_line(self):
        rc, help_text, err = run([self.bin, "--help"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "", "--help writes to stdout only")
        man = deroff(read(MAN_SRC))
        longs, shorts, sigs = cli_options()
        self.assertIn("config", longs)  # the parser found the table
        self.assertTrue({"SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"} <= set(sigs), sigs)
        words = (["--" + o for o in longs] + ["-" + s for s in shorts] + sigs + config_vars() + getenv_vars())
        self.assertGreaterEqual(len(config_vars()), 20)
        missing = {}
        for what, text in (("gateway --help", help_text), ("docs/gateway.8", man)):
            gone = [w for w in words if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(w), text)]
            if gone:
                missing[what] = gone
        self.assertEqual(missing, {}, "options, signals or variables not mentioned")
        # a wrong command line: status 2, the short usage on stderr
        rc, out, err = run([self.bin, "--no-such-option"])
        self.assertEqual((rc, out), (2, ""))
        self.assertIn("usage: gateway", err)
        self.assertIn('"gateway %s"' % project_version(), read(MAN_SRC).split("\n.TH", 1)[1].split("\n", 1)[0])

    def test_man_page_renders(self):
        rendered = False
        if shutil.which("man"):
            rc, out, err = run(["man", "-l", MAN_SRC], env={"MANWIDTH": "100", "MAN_KEEP_FORMATTING": None})
            self.assertEqual((rc, err), (0, ""), "man -l docs/gateway.8 warned")
            self.assertIn("GATEWAY(8)", out)
            # the installed copy is found by name in the installed man tree
            rc, out2, err = run(["man", "-M", os.path.join(self.root, "share", "man"), "8", "gateway"],
                                env={"MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"})
            self.assertEqual((rc, err), (0, ""))
            self.assertIn("SIGNALS", out2)
            rendered = True
        else:
            note("man not found (Debian package man-db): man -l not run")
        if shutil.which("groff"):
            rc, out, err = run(["groff", "-man", "-Tutf8", "-ww", "-z", MAN_SRC])
            self.assertEqual((rc, err), (0, ""), "groff -ww warned")
            rendered = True
        else:
            note("groff not found (Debian package groff-base): groff -ww not run")
        if not rendered:
            self.skipTest("neither man nor groff installed: the man page was not rendered")

    def test_systemd_unit(self):
        keys = {}
        section = None
        for line in read(UNIT_SRC).splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                keys.setdefault((section, k), []).append(v)
        want = {"Type": "simple", "ExecStart": "/usr/bin/gateway -c /etc/gateway/gateway.yaml",
                "ExecReload": "/bin/kill -HUP $MAINPID", "KillSignal": "SIGTERM", "Restart": "on-failure",
                "EnvironmentFile": "-/etc/gateway/gateway.env", "DynamicUser": "yes", "StateDirectory": "gateway",
                "WorkingDirectory": "/var/lib/gateway", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
                "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
                "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces": "yes",
                "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "",
                "LimitNOFILE": "65536"}
        for k, v in want.items():
            self.assertIn(v, keys.get(("Service", k), []), "[Service] %s=%s" % (k, v))
        self.assertIn("@system-service", keys[("Service", "SystemCallFilter")])
        # the stop timeout must outlast the drain (timeouts.shutdown's default, docs/configuration.md)
        drain = int(re.search(r"^\s*shutdown:\s*(\d+)s", read(os.path.join(SRC, "docs", "configuration.md")),
                              re.M).group(1))
        self.assertGreater(int(keys[("Service", "TimeoutStopSec")][0]), drain)
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not found (Debian package systemd): the unit was not verified")
        # the installed unit, its binary pointed at the staged one (verify checks that it is executable) and
        # the staged man tree searched (verify runs `man gateway(8)` for Documentation=)
        unit = read(self.staged("lib/systemd/system/gateway.service")).replace(PREFIX + "/bin/gateway", self.bin)
        d = g.new_tmp_dir("install-unit-")
        with open(os.path.join(d, "gateway.service"), "w") as f:
            f.write(unit)
        rc, out, err = run(["systemd-analyze", "verify", os.path.join(d, "gateway.service")],
                           env={"MANPATH": os.path.join(self.root, "share", "man"), "SYSTEMD_LOG_COLOR": "0"})
        # verify exits 0 on unknown keys and bad values, only printing them: any output is a failure
        self.assertEqual((rc, out + err), (0, ""), "systemd-analyze verify")


if __name__ == "__main__":
    unittest.main(verbosity=2)
