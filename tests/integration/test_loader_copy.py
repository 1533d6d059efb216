#!/usr/bin/env python3
# ctest-labels: asan
"""The loader's private copy of a filter: made in memory (memfd_create, loaded through /proc/self/fd), so
that nothing is left on disk even when loading crashes the process, and no writable, executable temp
directory is needed. GW_FILTER_COPY_DIR (else TMPDIR) is only the fallback where memfd is unavailable."""

import os
import unittest

import gwfilters as gf
import gwtest as g


class LoaderCopyTest(gf.FilterTestCase):
    def copy_dir(self):
        d = g.new_tmp_dir("copydir-")
        self.assertEqual(os.listdir(d), [])
        return d

    def test_crash_during_load_leaves_nothing_behind(self):
        # regression: the copy went to $TMPDIR/gw-filter-XXXXXX.so and stayed there when the load crashed
        d = self.copy_dir()
        rc, out, err = g.run_gateway_cli(["--check-filter", gf.fx("crash_on_load")], cwd=self.tmp,
                                         env={"TMPDIR": d, "GW_FILTER_COPY_DIR": d})
        self.assertNotEqual(rc, 0, "the fixture aborts in its constructor:\n%s%s" % (out, err))
        self.assertEqual(os.listdir(d), [], "a copy was left behind")

    def test_no_temp_directory_needed(self):
        # regression: with TMPDIR missing (or noexec) no filter could be loaded
        missing = os.path.join(self.tmp, "does-not-exist")
        rc, out, err = g.run_gateway_cli(["--check-filter", gf.fx("tagger")], cwd=self.tmp,
                                         env={"TMPDIR": missing, "GW_FILTER_COPY_DIR": missing})
        self.assertEqual(rc, 0, out + err)
        self.assertIn("verdict:     compatible", out)

    @unittest.skipIf(g.SANITIZE, "the sanitizer runtime must be the first preloaded library")
    def test_fallback_without_memfd(self):
        d = self.copy_dir()
        env = {"LD_PRELOAD": gf.fx("no_memfd"), "TMPDIR": d, "GW_FILTER_COPY_DIR": d}
        rc, out, err = g.run_gateway_cli(["--check-filter", gf.fx("tagger")], cwd=self.tmp, env=env)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("verdict:     compatible", out)
        self.assertEqual(os.listdir(d), [], "the fallback copy must not stay behind")
        up = self.start_upstream()
        gw = self.start_gateway(lambda p: self.filter_config(p, [gf.tagger("one"), gf.tagger("two")], up=up),
                                env=env)
        self.assertTags(self.get(gw.port, "/echo"), ["one", "two"], ["two", "one"])
        self.assertEqual(os.listdir(d), [])
        missing = os.path.join(self.tmp, "no-such-dir")
        rc, out, err = g.run_gateway_cli(["--check-filter", gf.fx("tagger")], cwd=self.tmp,
                                         env=dict(env, TMPDIR=missing, GW_FILTER_COPY_DIR=missing))
        self.assertEqual(rc, 1, out + err)
        self.assertIn("cannot make a private copy in %s" % missing, out + err)

    def test_gateway_start_and_reload_leave_no_copies(self):
        d = self.copy_dir()
        up = self.start_upstream()
        env = {"TMPDIR": d, "GW_FILTER_COPY_DIR": d}
        gw = self.start_gateway(lambda p: self.filter_config(p, [gf.tagger("one")], up=up), env=env)
        self.assertTags(self.get(gw.port, "/echo"), ["one"], ["one"])
        ok, _ = gw.reload(self.filter_config(gw.port, [gf.tagger("two"), gf.tagger("three")], up=up))
        self.assertTrue(ok)
        self.assertTags(self.get(gw.port, "/echo"), ["two", "three"], ["three", "two"])
        self.assertEqual(os.listdir(d), [])


if __name__ == "__main__":
    g.main()
