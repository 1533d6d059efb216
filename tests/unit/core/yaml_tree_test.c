/* yaml_tree_test.c - the YAML tree: shapes and positions, ${VAR} interpolation, and every refusal
 * (anchors, aliases, tags, duplicate or non-scalar keys, several documents, libyaml's own errors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "yaml_tree.h"

static gw_yaml_doc *load_ok(const char *text)
{
    char *err = NULL;
    gw_yaml_doc *doc = gw_yaml_load_string("t.yaml", text, &err);
    if (!doc) fail_msg("unexpected error for %s: %s", text, err);
    assert_null(err);
    return doc;
}

static void expect_err(const char *text, const char *want)
{
    char *err = NULL;
    gw_yaml_doc *doc = gw_yaml_load_string("t.yaml", text, &err);
    if (doc) fail_msg("expected '%s' for %s", want, text);
    assert_non_null(err);
    if (strcmp(err, want) != 0) fail_msg("for %s\n  want: %s\n  got:  %s", text, want, err);
    free(err);
}

/* The value of a top-level key `k` after interpolation. */
static char *value_of(const char *text, const char *k)
{
    gw_yaml_doc *doc = load_ok(text);
    const gw_yaml_node *n = gw_yaml_get(doc->root, k);
    assert_non_null(n);
    assert_int_equal(n->kind, GW_YAML_SCALAR);
    char *v = strdup(n->scalar);
    gw_yaml_free(doc);
    return v;
}

static void assert_value(const char *text, const char *want)
{
    char *v = value_of(text, "v");
    assert_string_equal(v, want);
    free(v);
}

static void test_shapes_and_positions(void **state)
{
    gw_yaml_doc *doc = load_ok("# comment\n"
                               "name: gw\n"
                               "list:\n"
                               "  - one\n"
                               "  - 'two'\n"
                               "map: {a: \"x\", b: [1, 2]}\n");
    const gw_yaml_node *root = doc->root;
    assert_string_equal(doc->file, "t.yaml");
    assert_int_equal(root->kind, GW_YAML_MAP);
    assert_int_equal(root->n, 3);
    assert_int_equal(root->line, 2);
    assert_int_equal(root->col, 1);

    const gw_yaml_node *name = gw_yaml_get(root, "name");
    assert_string_equal(name->scalar, "gw");
    assert_false(name->quoted);
    assert_int_equal(name->line, 2);
    assert_int_equal(name->col, 7);
    assert_int_equal(root->keys[0]->line, 2);
    assert_int_equal(root->keys[0]->col, 1);

    const gw_yaml_node *list = gw_yaml_get(root, "list");
    assert_int_equal(list->kind, GW_YAML_SEQ);
    assert_int_equal(list->n, 2);
    assert_null(list->keys);
    assert_int_equal(list->line, 4);
    assert_int_equal(list->col, 3);
    assert_string_equal(list->items[1]->scalar, "two");
    assert_true(list->items[1]->quoted);
    assert_int_equal(list->items[1]->line, 5);
    assert_int_equal(list->items[1]->col, 5);

    const gw_yaml_node *map = gw_yaml_get(root, "map");
    assert_int_equal(map->kind, GW_YAML_MAP);
    assert_int_equal(map->col, 6);
    assert_true(gw_yaml_get(map, "a")->quoted);
    const gw_yaml_node *b = gw_yaml_get(map, "b");
    assert_int_equal(b->kind, GW_YAML_SEQ);
    assert_string_equal(b->items[1]->scalar, "2");
    assert_int_equal(b->items[1]->col, 22);

    assert_null(gw_yaml_get(root, "missing"));
    assert_null(gw_yaml_get(list, "one")); /* not a mapping */
    assert_null(gw_yaml_get(NULL, "x"));
    gw_yaml_free(doc);
}

static void test_many_items(void **state)
{
    /* crosses several array growth steps */
    char text[4096] = "v:\n";
    for (int i = 0; i < 100; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "  k%d: %d\n", i, i);
    gw_yaml_doc *doc = load_ok(text);
    const gw_yaml_node *v = gw_yaml_get(doc->root, "v");
    assert_int_equal(v->n, 100);
    assert_string_equal(gw_yaml_get(v, "k99")->scalar, "99");
    assert_int_equal(gw_yaml_get(v, "k42")->line, 44);
    gw_yaml_free(doc);
}

static void test_empty_documents(void **state)
{
    const char *empty[] = {"", "# only a comment\n", "---\n", "---\n...\n"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        gw_yaml_doc *doc = load_ok(empty[i]);
        assert_null(doc->root);
        gw_yaml_free(doc);
    }
    gw_yaml_doc *doc = load_ok("--- ''\n"); /* a quoted empty string is a value, not an empty document */
    assert_non_null(doc->root);
    assert_string_equal(doc->root->scalar, "");
    gw_yaml_free(doc);
    gw_yaml_free(NULL);
}

static void test_interpolation(void **state)
{
    setenv("GW_T_SET", "value", 1);
    setenv("GW_T_EMPTY", "", 1);
    unsetenv("GW_T_UNSET");
    setenv("GW_T_H", "example.org", 1);
    unsetenv("GW_T_P");
    assert_value("v: ${GW_T_SET}", "value");
    assert_value("v: \"${GW_T_SET}\"", "value");
    assert_value("v: '${GW_T_SET}'", "value");
    assert_value("v: ${GW_T_SET:-other}", "value");
    assert_value("v: ${GW_T_UNSET:-fallback}", "fallback");
    assert_value("v: ${GW_T_EMPTY:-fallback}", "fallback"); /* shell semantics */
    assert_value("v: x${GW_T_EMPTY}y", "xy");               /* set but empty, no default: empty */
    assert_value("v: ${GW_T_UNSET:-}", "");
    assert_value("v: http://${GW_T_H:-localhost}:${GW_T_P:-80}/", "http://example.org:80/");
    assert_value("v: ${GW_T_UNSET:-a b:c-d}", "a b:c-d");
    assert_value("v: ${GW_T_UNSET:-$x}", "$x");
    assert_value("v: cost $$5 and $${GW_T_SET}", "cost $5 and ${GW_T_SET}");
    assert_value("v: $HOME $ {x} a$", "$HOME $ {x} a$");
    assert_value("v: $$$$", "$$");
    assert_value("v: ''", "");
    assert_value("v: |\n  ${GW_T_SET}\n", "value\n");

    /* keys are taken literally */
    gw_yaml_doc *doc = load_ok("${GW_T_SET}: 1\n");
    assert_string_equal(doc->root->keys[0]->scalar, "${GW_T_SET}");
    gw_yaml_free(doc);
    unsetenv("GW_T_SET");
    unsetenv("GW_T_EMPTY");
    unsetenv("GW_T_H");
}

static void test_interpolation_errors(void **state)
{
    unsetenv("GW_T_UNSET");
    expect_err("a: 1\nv: ${GW_T_UNSET}\n", "t.yaml:2:4: environment variable GW_T_UNSET is not set");
    expect_err("v:\n  - x\n  - \"a ${GW_T_UNSET} b\"\n",
               "t.yaml:3:5: environment variable GW_T_UNSET is not set");
    expect_err("v: ${GW_T_UNSET:-x} ${GW_T_UNSET}", "t.yaml:1:4: environment variable GW_T_UNSET is not set");
    expect_err("v: ${GW_T_UNSET", "t.yaml:1:4: unterminated '${' in value");
    expect_err("v: ok ${", "t.yaml:1:4: unterminated '${' in value");
    expect_err("v: ${}", "t.yaml:1:4: invalid variable reference '${}'");
    expect_err("v: ${1X}", "t.yaml:1:4: invalid variable reference '${1X}'");
    expect_err("v: ${A-b}", "t.yaml:1:4: invalid variable reference '${A-b}'");
    expect_err("v: ${A:?b}", "t.yaml:1:4: invalid variable reference '${A:?b}'");
    expect_err("v: ${A B}", "t.yaml:1:4: invalid variable reference '${A B}'");
    expect_err("v: ${A:-${B}}", "t.yaml:1:4: nested '${' in the default of '${A:-${B}'");
    char big[400] = "v: ${";
    memset(big + 5, 'A', 300);
    strcpy(big + 305, "}");
    expect_err(big, "t.yaml:1:4: variable name too long");
}

static void test_refused_features(void **state)
{
    expect_err("a: &x 1\nb: *x\n", "t.yaml:1:4: anchors are not supported");
    expect_err("a: &x [1]\n", "t.yaml:1:4: anchors are not supported");
    expect_err("a: &x {b: 1}\n", "t.yaml:1:4: anchors are not supported");
    expect_err("a: 1\nb: *x\n", "t.yaml:2:4: aliases are not supported");
    expect_err("a: !!str 1\n", "t.yaml:1:4: tags are not supported");
    expect_err("a: !!seq [1]\n", "t.yaml:1:4: tags are not supported");
    expect_err("a: !custom {b: 1}\n", "t.yaml:1:4: tags are not supported");
    expect_err("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key 'a' (first at line 1)");
    expect_err("x:\n  k: 1\n  'k': 2\n", "t.yaml:3:3: duplicate key 'k' (first at line 2)");
    expect_err("{[a]: b}\n", "t.yaml:1:2: mapping keys must be scalars");
    expect_err("? {a: 1}\n: b\n", "t.yaml:1:3: mapping keys must be scalars");
    expect_err("a: 1\n---\nb: 2\n", "t.yaml:2:1: multiple documents in one file are not supported");
    expect_err("--- 1\n--- 2\n", "t.yaml:2:1: multiple documents in one file are not supported");
    expect_err("a: \"x\\0y\"\n", "t.yaml:1:4: NUL character in a scalar");
}

static void test_depth_limit(void **state)
{
    char deep[300] = "";
    for (int i = 0; i < 64; i++)
        strcat(deep, "[");
    strcat(deep, "1");
    for (int i = 0; i < 64; i++)
        strcat(deep, "]");
    gw_yaml_doc *doc = load_ok(deep);
    gw_yaml_free(doc);
    char deeper[300] = "[";
    strcat(deeper, deep);
    strcat(deeper, "]");
    expect_err(deeper, "t.yaml:1:65: nesting deeper than 64 levels");
}

static void test_parser_errors_have_positions(void **state)
{
    expect_err("a: b: c\n", "t.yaml:1:5: mapping values are not allowed in this context");
    expect_err("a: [1, 2\n",
               "t.yaml:2:1: did not find expected ',' or ']' (while parsing a flow sequence at 1:4)");
    expect_err("a:\n  - b\n c: d\n",
               "t.yaml:3:2: did not find expected key (while parsing a block mapping at 1:1)");
    expect_err("a: \"open\n",
               "t.yaml:2:1: found unexpected end of stream (while scanning a quoted scalar at 1:4)");
    expect_err(
        "a: 1\n\tb: 2\n",
        "t.yaml:2:1: found a tab character that violates indentation (while scanning a plain scalar at 1:4)");
    expect_err(
        "a: 1\n@b: 2\n",
        "t.yaml:2:1: found character that cannot start any token (while scanning for the next token at 2:1)");
    /* reader errors only carry a byte offset: it becomes line:col too */
    expect_err("ok: 1\na: \"x\xff\"\n", "t.yaml:2:6: invalid leading UTF-8 octet");
    expect_err("a: \x01\n", "t.yaml:1:4: control characters are not allowed");
}

static void test_files(void **state)
{
    char dir[] = "/tmp/gw-yaml-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/a.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("a:\n  b: [x, y]\n", f);
    fclose(f);

    char *err = NULL;
    gw_yaml_doc *doc = gw_yaml_load(path, &err);
    assert_non_null(doc);
    assert_string_equal(doc->file, path);
    assert_string_equal(gw_yaml_get(gw_yaml_get(doc->root, "a"), "b")->items[1]->scalar, "y");
    gw_yaml_free(doc);

    f = fopen(path, "w");
    fputs("a: 1\nb: [\n", f);
    fclose(f);
    assert_null(gw_yaml_load(path, &err));
    char want[256];
    snprintf(want, sizeof want,
             "%s:3:1: did not find expected node content (while parsing a flow node at 3:1)", path);
    assert_string_equal(err, want);
    free(err);
    unlink(path);

    assert_null(gw_yaml_load(path, &err));
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
    free(err);

    assert_null(gw_yaml_load(dir, &err));
    snprintf(want, sizeof want, "%s: cannot read: Is a directory", dir);
    assert_string_equal(err, want);
    free(err);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_and_positions),
        cmocka_unit_test(test_many_items),
        cmocka_unit_test(test_empty_documents),
        cmocka_unit_test(test_interpolation),
        cmocka_unit_test(test_interpolation_errors),
        cmocka_unit_test(test_refused_features),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_parser_errors_have_positions),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
