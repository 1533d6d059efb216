/* config_keys_test.c - docs/configuration.md's "Every key" table against the loader: every key the loader
 * accepts has a row, with the loader's type and default, and every row names a key the loader accepts
 * (pipeline[].file, read by the filter loader, is the one row the walk does not produce). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config_keys.h"

#ifndef GW_SOURCE_DIR
#define GW_SOURCE_DIR "."
#endif

#define MAX_ROWS 256

typedef struct {
    char key[128], type[32], def[64];
    int seen;
} row;

static row rows[MAX_ROWS];
static size_t nrows;
static int missing;

/* "`x`" -> "x" (trimmed); anything else as it is, trimmed. */
static void cell(const char *from, const char *to, char *out, size_t cap)
{
    while (from < to && *from == ' ')
        from++;
    while (to > from && to[-1] == ' ')
        to--;
    if (to - from >= 2 && *from == '`' && to[-1] == '`') from++, to--;
    size_t n = (size_t)(to - from) < cap - 1 ? (size_t)(to - from) : cap - 1;
    memcpy(out, from, n);
    out[n] = '\0';
}

static void read_table(void)
{
    FILE *f = fopen(GW_SOURCE_DIR "/docs/configuration.md", "r");
    if (!f) fail_msg("cannot open docs/configuration.md");
    char line[2048];
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## ", 3) == 0 || strncmp(line, "### ", 4) == 0)
            in = strncmp(line, "## Every key", 12) == 0;
        if (!in || strncmp(line, "| `", 3) != 0) continue;
        const char *c[6];
        int k = 0;
        for (const char *p = line; *p && k < 6; p++)
            if (*p == '|') c[k++] = p;
        if (k < 4) continue;
        assert_true(nrows < MAX_ROWS);
        row *r = &rows[nrows++];
        cell(c[0] + 1, c[1], r->key, sizeof r->key);
        cell(c[1] + 1, c[2], r->type, sizeof r->type);
        cell(c[2] + 1, c[3], r->def, sizeof r->def);
    }
    fclose(f);
}

static void check(const char *path, const char *type, const char *def, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < nrows; i++) {
        if (strcmp(rows[i].key, path) != 0) continue;
        rows[i].seen = 1;
        if (strcmp(rows[i].type, type) != 0) {
            print_error("%s: documented as %s, the loader reads a %s\n", path, rows[i].type, type);
            missing++;
        }
        if (strcmp(rows[i].def, def ? def : "") != 0) {
            print_error("%s: documented default '%s', the loader's is '%s'\n", path, rows[i].def,
                        def ? def : "");
            missing++;
        }
        return;
    }
    print_error("%s (%s, default %s): no row in docs/configuration.md, Every key\n", path, type,
                def ? def : "none");
    missing++;
}

static void test_every_key_documented(void **state)
{
    (void)state;
    read_table();
    assert_true(nrows > 50);
    gw_cfg_each_key(check, NULL);
    for (size_t i = 0; i < nrows; i++)
        if (!rows[i].seen && strcmp(rows[i].key, "pipeline[].file") != 0) {
            print_error("docs/configuration.md documents %s, which the loader does not accept\n",
                        rows[i].key);
            missing++;
        }
    assert_int_equal(missing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_key_documented)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
