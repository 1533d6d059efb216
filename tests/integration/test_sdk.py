#!/usr/bin/env python3
"""The filter SDK end to end: `cmake --install` of this build tree into a temporary prefix, then the
example filter (sdk/examples/header_filter) built out of tree against that prefix only, once with CMake
(find_package(GatewaySDK)) and once with its Makefile (pkg-config), each running its cmocka tests on the
test host; the .so must export gw_filter_descriptor and nothing else of its own. Then the gateway itself:
`--check-filter` on the built filter, and the filter loaded into a running gateway from plugin_dir.
Not in the sanitizer set (no asan label): builds take too long there."""

import os
import re
import shutil
import subprocess
import unittest

import gwtest as g

BUILD_DIR = os.path.dirname(os.path.abspath(g.GW_BIN))
EXAMPLE_SRC = os.path.join(g.SOURCE_DIR, "sdk", "examples", "header_filter")


def run(argv, cwd=None, env=None, timeout=300):
    """Runs a command; returns (rc, combined output)."""
    full = dict(os.environ)
    full.update(env or {})
    r = subprocess.run(argv, cwd=cwd, env=full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout * g.SLOW)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def exported_symbols(so):
    """Defined dynamic symbols of a shared object (nm -D)."""
    rc, out = run(["nm", "-D", "--defined-only", so])
    if rc != 0:
        raise AssertionError("nm -D %s failed:\n%s" % (so, out))
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


class SdkTest(g.GatewayTestCase):
    prefix = None
    install_log = ""

    @classmethod
    def setUpClass(cls):
        for tool in ("cmake", "make", "pkg-config", "nm"):
            if not shutil.which(tool):
                raise unittest.SkipTest("%s not found" % tool)
        if not os.path.exists(os.path.join(BUILD_DIR, "cmake_install.cmake")):
            raise unittest.SkipTest("%s is not a CMake build tree" % BUILD_DIR)
        cls.prefix = os.path.join(g.new_tmp_dir("sdk-prefix-"), "usr")
        rc, out = run(["cmake", "--install", BUILD_DIR, "--prefix", cls.prefix])
        if rc != 0:
            raise AssertionError("cmake --install failed:\n" + out)
        cls.install_log = out
        cls.pc_env = {"PKG_CONFIG_PATH": os.path.join(cls.prefix, "lib", "pkgconfig")}
        cls.cmake_so = None

    # ----------------------------------------------------------------------------------------------
    def pkgconf(self, *args):
        rc, out = run(["pkg-config"] + list(args), env=self.pc_env)
        self.assertEqual(rc, 0, "pkg-config %s failed:\n%s" % (" ".join(args), out))
        return out.strip()

    def build_with_cmake(self):
        """Configures, builds and tests the example out of tree; returns the built .so."""
        if SdkTest.cmake_so:
            return SdkTest.cmake_so
        bdir = g.new_tmp_dir("sdk-cmake-")
        rc, out = run(["cmake", "-S", EXAMPLE_SRC, "-B", bdir, "-DCMAKE_PREFIX_PATH=" + self.prefix,
                       "-DCMAKE_BUILD_TYPE=RelWithDebInfo"])
        self.assertEqual(rc, 0, "configure failed:\n" + out)
        rc, out = run(["cmake", "--build", bdir])
        self.assertEqual(rc, 0, "build failed:\n" + out)
        rc, out = run(["ctest", "--test-dir", bdir, "--output-on-failure"])
        self.assertEqual(rc, 0, "the example's tests failed:\n" + out)
        self.assertRegex(out, r"100% tests passed")
        SdkTest.cmake_so = os.path.join(bdir, "example.so")
        return SdkTest.cmake_so

    def assertFilterObject(self, so):
        self.assertTrue(os.path.isfile(so), "%s was not built" % so)
        syms = exported_symbols(so)
        self.assertIn("gw_filter_descriptor", syms, "exported: %s" % sorted(syms))
        own = {s for s in syms if re.match(r"(example_|conf_|read_string|dup_str|get$|token_char)", s)}
        self.assertEqual(own, set(), "internal functions must stay hidden; exported: %s" % sorted(syms))

    # ----------------------------------------------------------------------------------------------
    def test_installed_layout(self):
        p = self.prefix
        for rel in ("include/gw/filter.h", "include/gw/testhost.h", "lib/libgwtesthost.a",
                    "lib/pkgconfig/gateway-sdk.pc", "lib/pkgconfig/gateway-sdk-testhost.pc",
                    "lib/cmake/GatewaySDK/GatewaySDKConfig.cmake",
                    "lib/cmake/GatewaySDK/GatewaySDKConfigVersion.cmake", "bin/gateway"):
            self.assertTrue(os.path.isfile(os.path.join(p, rel)), "%s not installed:\n%s" % (rel, self.install_log))
        self.assertTrue(os.path.isdir(os.path.join(p, "lib", "gateway", "filters")))
        self.assertEqual(self.pkgconf("--variable=filterdir", "gateway-sdk"),
                         os.path.join(p, "lib", "gateway", "filters"))
        self.assertEqual(self.pkgconf("--cflags", "gateway-sdk"), "-I" + os.path.join(p, "include"))
        major, minor = g.filter_abi()
        self.assertEqual(self.pkgconf("--variable=abi_major", "gateway-sdk"), str(major))
        self.assertEqual(self.pkgconf("--variable=abi_minor", "gateway-sdk"), str(minor))
        libs = self.pkgconf("--static", "--libs", "gateway-sdk-testhost")
        for flag in ("-lgwtesthost", "-lyaml", "-lcjson", "-ldl"):
            self.assertIn(flag, libs.split(), libs)
        with open(os.path.join(g.SOURCE_DIR, "CMakeLists.txt")) as f:
            version = re.search(r"project\(\s*gateway\s+VERSION\s+([0-9.]+)", f.read()).group(1)
        self.assertEqual(self.pkgconf("--modversion", "gateway-sdk"), version)

    def test_example_with_cmake(self):
        self.assertFilterObject(self.build_with_cmake())

    def test_readme_cmake_snippet(self):
        # regression: the README's snippet used PkgConfig::CMOCKA without pkg_check_modules and ran ctest
        # without enable_testing/add_test; now it is taken from sdk/README.md and built as it stands
        with open(os.path.join(g.SOURCE_DIR, "sdk", "README.md")) as f:
            readme = f.read()
        section = readme[readme.index("## 3. Building out of tree"):]
        snippet = re.search(r"```cmake\n(.*?)```", section, re.S).group(1)
        src = g.new_tmp_dir("sdk-readme-")
        for name in ("example.c", "test_example.c"):
            shutil.copy(os.path.join(EXAMPLE_SRC, name), src)
        with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
            f.write(snippet)
        bdir = os.path.join(src, "build")
        rc, out = run(["cmake", "-S", src, "-B", bdir, "-DCMAKE_PREFIX_PATH=" + self.prefix])
        self.assertEqual(rc, 0, "configure failed:\n" + out)
        rc, out = run(["cmake", "--build", bdir])
        self.assertEqual(rc, 0, "build failed:\n" + out)
        rc, out = run(["ctest", "--test-dir", bdir, "--output-on-failure"])
        self.assertEqual(rc, 0, "the snippet's tests failed:\n" + out)
        self.assertRegex(out, r"100% tests passed, 0 tests failed out of 1")

    def test_example_with_make(self):
        src = os.path.join(g.new_tmp_dir("sdk-make-"), "header_filter")
        shutil.copytree(EXAMPLE_SRC, src, ignore=shutil.ignore_patterns("build*"))
        rc, out = run(["make", "check"], cwd=src, env=self.pc_env)
        self.assertEqual(rc, 0, "make check failed:\n" + out)
        self.assertRegex(out, r"PASSED\s*\]\s*6 test")
        self.assertFilterObject(os.path.join(src, "example.so"))
        dest = g.new_tmp_dir("sdk-destdir-")
        rc, out = run(["make", "install", "DESTDIR=" + dest], cwd=src, env=self.pc_env)
        self.assertEqual(rc, 0, "make install failed:\n" + out)
        self.assertTrue(os.path.isfile(dest + os.path.join(self.prefix, "lib", "gateway", "filters", "example.so")))

    # ----------------------------------------------------------------------------------------------
    def require_check_filter(self):
        rc, out, err = g.run_gateway_cli(["--help"])
        if "--check-filter" not in out + err:
            self.skipTest("this gateway has no --check-filter yet (the filter loader is not in)")

    def test_check_filter(self):
        self.require_check_filter()
        so = self.build_with_cmake()
        rc, out, err = g.run_gateway_cli(["--check-filter", so])
        self.assertEqual(rc, 0, out + err)
        major, minor = g.filter_abi()
        self.assertRegex(out, r"name:\s+example\n")
        self.assertRegex(out, r"version:\s+1\.0\.0\n")
        self.assertRegex(out, r"abi:\s+%d\.%d\b" % (major, minor))
        self.assertRegex(out, r"phases:\s+request, response\n")
        self.assertRegex(out, r"verdict:\s+compatible")

    def test_loaded_in_gateway(self):
        self.require_check_filter()
        plugin_dir = os.path.dirname(self.build_with_cmake())
        up = self.start_upstream()
        pipeline = [{"name": "example", "response_header": {"name": "X-Example", "value": "hi"},
                     "reject_if_header": {"name": "X-Block", "value": "yes"}}]
        services = [{"name": "up", "targets": [up.url]}]
        routes = [{"prefix": "/special", "service": "up",
                   "filters": {"example": {"response_header": {"name": "X-Example", "value": "special"}}}},
                  {"prefix": "/", "service": "up"}]
        gw = self.start_gateway(lambda p: g.base_config(p, services, routes, plugin_dir=plugin_dir,
                                                        pipeline=pipeline))
        r = g.simple_request(gw.port, "GET", "/api/x")
        self.assertEqual(r.status, 200, r.summary())
        self.assertEqual(r.header("x-example"), "hi", r.summary())
        r = g.simple_request(gw.port, "GET", "/special/1")
        self.assertEqual(r.header("x-example"), "special", r.summary())
        n = len(up.requests())
        r = g.simple_request(gw.port, "GET", "/api/x", headers=[("X-Block", "yes")])
        self.assertErrorJson(r, 403, "Forbidden")
        self.assertEqual(r.json()["message"], "Requests with the header X-Block are not accepted")
        self.assertEqual(len(up.requests()), n, "a rejected request must not reach the upstream")


if __name__ == "__main__":
    unittest.main(verbosity=2)
