/* yaml_tree.c - libyaml events -> gw_yaml_node tree with 1-based positions, ${VAR:-default} expansion of
 * scalar values, and refusal of the YAML features a configuration file has no business using. */
#include "yaml_tree.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Deep enough for any sane configuration; bounds the recursion in gw_yaml_free. */
#define GW_YAML_MAX_DEPTH 64
/* A configuration file is small; the cap stops `-c /dev/zero` from eating memory. */
#define GW_YAML_MAX_FILE (16u << 20)

typedef struct {
    gw_yaml_node *node;
    gw_yaml_node *key; /* mapping: a key still waiting for its value (owned here until paired) */
} gw_frame;

typedef struct {
    const char *name; /* file name for messages */
    const char *text; /* whole input, to turn libyaml reader offsets into line:col */
    size_t len;
    char **err;
    gw_yaml_node *root;
    gw_frame stack[GW_YAML_MAX_DEPTH];
    size_t depth;
    int ndocs;
} gw_builder;

typedef struct {
    char *p;
    size_t n, cap;
} gw_buf;

static char *vdupf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *vdupf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *dupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vdupf(fmt, ap);
    va_end(ap);
    return s;
}

static bool failf(gw_builder *b, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool failf(gw_builder *b, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vdupf(fmt, ap);
    va_end(ap);
    if (*b->err == NULL) /* keep the first error: later ones are usually consequences */
        *b->err = dupf("%s:%d:%d: %s", b->name, line, col, msg ? msg : "out of memory");
    free(msg);
    return false;
}

static bool fail_at(gw_builder *b, const yaml_mark_t *m, const char *msg)
{
    return failf(b, (int)m->line + 1, (int)m->column + 1, "%s", msg);
}

static bool buf_add(gw_buf *o, const char *s, size_t n)
{
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 32;
        while (cap < o->n + n + 1)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p) return false;
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
    o->p[o->n] = '\0';
    return true;
}

/* One "${...}" body (without the braces): NAME or NAME:-default. The default is literal text. */
static bool expand_ref(gw_builder *b, const char *r, size_t n, const yaml_mark_t *m, gw_buf *o)
{
    size_t k = 0;
    while (k < n && (isalnum((unsigned char)r[k]) || r[k] == '_'))
        k++;
    bool named = k > 0 && !isdigit((unsigned char)r[0]);
    bool has_def = n - k >= 2 && r[k] == ':' && r[k + 1] == '-';
    if (!named || (k != n && !has_def))
        return failf(b, (int)m->line + 1, (int)m->column + 1, "invalid variable reference '${%.*s}'", (int)n,
                     r);
    const char *def = r + k + 2;
    size_t def_len = has_def ? n - k - 2 : 0;
    for (size_t i = 0; has_def && i + 1 < def_len; i++)
        if (def[i] == '$' && def[i + 1] == '{')
            return failf(b, (int)m->line + 1, (int)m->column + 1, "nested '${' in the default of '${%.*s}'",
                         (int)n, r);
    char name[256];
    if (k >= sizeof name) return failf(b, (int)m->line + 1, (int)m->column + 1, "variable name too long");
    memcpy(name, r, k);
    name[k] = '\0';
    const char *v = getenv(name);
    bool ok;
    if (v && (*v || !has_def)) /* shell ${VAR:-d}: an empty value also takes the default */
        ok = buf_add(o, v, strlen(v));
    else if (has_def)
        ok = buf_add(o, def, def_len);
    else
        return failf(b, (int)m->line + 1, (int)m->column + 1, "environment variable %s is not set", name);
    return ok || fail_at(b, m, "out of memory");
}

/* Expands ${VAR}, ${VAR:-default} and $$ in a scalar; any other '$' is kept as written. */
static bool expand(gw_builder *b, const char *s, size_t len, const yaml_mark_t *m, char **out)
{
    gw_buf o = {0};
    bool ok = buf_add(&o, "", 0);
    size_t i = 0;
    while (ok && i < len) {
        if (s[i] == '$' && i + 1 < len && s[i + 1] == '$') {
            ok = buf_add(&o, "$", 1);
            i += 2;
        } else if (s[i] == '$' && i + 1 < len && s[i + 1] == '{') {
            const char *close = memchr(s + i + 2, '}', len - i - 2);
            if (!close) {
                free(o.p);
                return fail_at(b, m, "unterminated '${' in value");
            }
            if (!expand_ref(b, s + i + 2, (size_t)(close - s) - i - 2, m, &o)) {
                free(o.p);
                return false;
            }
            i = (size_t)(close - s) + 1;
        } else {
            size_t j = i + 1;
            while (j < len && s[j] != '$')
                j++;
            ok = buf_add(&o, s + i, j - i);
            i = j;
        }
    }
    if (!ok) {
        free(o.p);
        return fail_at(b, m, "out of memory");
    }
    *out = o.p;
    return true;
}

static void node_free(gw_yaml_node *nd)
{
    if (!nd) return;
    for (size_t i = 0; i < nd->n; i++) {
        node_free(nd->items[i]);
        if (nd->keys) node_free(nd->keys[i]);
    }
    free(nd->items);
    free(nd->keys);
    free(nd->scalar);
    free(nd);
}

/* Arrays grow by doubling from 4; the capacity is implied by n, so the node needs no extra field. */
static bool grow(gw_yaml_node ***arr, size_t n)
{
    if (n != 0 && (n < 4 || (n & (n - 1)) != 0)) return true;
    size_t cap = n == 0 ? 4 : n * 2;
    gw_yaml_node **p = realloc(*arr, cap * sizeof *p);
    if (!p) return false;
    *arr = p;
    return true;
}

/* Hangs `nd` under the innermost open collection; takes ownership even on failure. */
static bool attach(gw_builder *b, gw_yaml_node *nd, const yaml_mark_t *m)
{
    if (b->depth == 0) {
        b->root = nd;
        return true;
    }
    gw_frame *f = &b->stack[b->depth - 1];
    gw_yaml_node *p = f->node;
    if (p->kind == GW_YAML_SEQ) {
        if (!grow(&p->items, p->n)) {
            node_free(nd);
            return fail_at(b, m, "out of memory");
        }
        nd->key = p->key;
        p->items[p->n++] = nd;
        return true;
    }
    if (!f->key) {
        if (nd->kind != GW_YAML_SCALAR) {
            node_free(nd);
            return fail_at(b, m, "mapping keys must be scalars");
        }
        for (size_t i = 0; i < p->n; i++) {
            if (strcmp(p->keys[i]->scalar, nd->scalar) == 0) {
                failf(b, nd->line, nd->col, "duplicate key '%s' (first at line %d)", nd->scalar,
                      p->keys[i]->line);
                node_free(nd);
                return false;
            }
        }
        f->key = nd;
        return true;
    }
    if (!grow(&p->items, p->n) || !grow(&p->keys, p->n)) {
        node_free(nd);
        return fail_at(b, m, "out of memory");
    }
    p->keys[p->n] = f->key;
    nd->key = f->key->scalar;
    p->items[p->n++] = nd;
    f->key = NULL;
    return true;
}

static void set_file(gw_yaml_node *nd, const char *file, int depth)
{
    if (!nd || depth > 128) return;
    nd->file = file;
    for (size_t i = 0; i < nd->n; i++) {
        set_file(nd->items[i], file, depth + 1);
        if (nd->keys) set_file(nd->keys[i], file, depth + 1);
    }
}

static gw_yaml_node *new_node(gw_yaml_kind kind, const yaml_mark_t *m)
{
    gw_yaml_node *nd = calloc(1, sizeof *nd);
    if (nd) {
        nd->kind = kind;
        nd->line = (int)m->line + 1;
        nd->col = (int)m->column + 1;
    }
    return nd;
}

static bool on_scalar(gw_builder *b, const yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (memchr(s, '\0', len)) return fail_at(b, m, "NUL character in a scalar");
    /* Keys are schema names, never interpolated: only values come from the environment. */
    bool is_key =
        b->depth > 0 && b->stack[b->depth - 1].node->kind == GW_YAML_MAP && !b->stack[b->depth - 1].key;
    gw_yaml_node *nd = new_node(GW_YAML_SCALAR, m);
    if (!nd) return fail_at(b, m, "out of memory");
    nd->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                 ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    bool ok = is_key ? (nd->scalar = strdup(s)) != NULL || fail_at(b, m, "out of memory")
                     : expand(b, s, len, m, &nd->scalar);
    if (!ok) {
        node_free(nd);
        return false;
    }
    return attach(b, nd, m);
}

static bool on_start(gw_builder *b, const yaml_event_t *ev, gw_yaml_kind kind)
{
    const yaml_mark_t *m = &ev->start_mark;
    if (b->depth == GW_YAML_MAX_DEPTH)
        return failf(b, (int)m->line + 1, (int)m->column + 1, "nesting deeper than %d levels",
                     GW_YAML_MAX_DEPTH);
    gw_yaml_node *nd = new_node(kind, m);
    if (!nd) return fail_at(b, m, "out of memory");
    if (!attach(b, nd, m)) return false;
    b->stack[b->depth++] = (gw_frame){nd, NULL};
    return true;
}

static bool on_event(gw_builder *b, const yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        return ++b->ndocs == 1 || fail_at(b, m, "multiple documents in one file are not supported");
    case YAML_ALIAS_EVENT:
        return fail_at(b, m, "aliases are not supported");
    case YAML_SCALAR_EVENT:
        if (ev->data.scalar.anchor) return fail_at(b, m, "anchors are not supported");
        if (ev->data.scalar.tag) return fail_at(b, m, "tags are not supported");
        return on_scalar(b, ev);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        if (seq ? ev->data.sequence_start.anchor != NULL : ev->data.mapping_start.anchor != NULL)
            return fail_at(b, m, "anchors are not supported");
        if (seq ? ev->data.sequence_start.tag != NULL : ev->data.mapping_start.tag != NULL)
            return fail_at(b, m, "tags are not supported");
        return on_start(b, ev, seq ? GW_YAML_SEQ : GW_YAML_MAP);
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth > 0) b->depth--;
        return true;
    default:
        return true;
    }
}

/* libyaml reports reader errors (bad UTF-8, control characters) as a byte offset only. */
static void offset_pos(const gw_builder *b, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < b->len; i++) {
        unsigned char c = (unsigned char)b->text[i];
        if (c == '\n') {
            ++*line;
            *col = 1;
        } else if ((c & 0xC0) != 0x80) {
            ++*col;
        }
    }
}

static void parser_error(gw_builder *b, const yaml_parser_t *p)
{
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR) offset_pos(b, p->problem_offset, &line, &col);
    const char *problem = p->problem ? p->problem : "out of memory";
    if (p->context)
        failf(b, line, col, "%s (%s at %d:%d)", problem, p->context, (int)p->context_mark.line + 1,
              (int)p->context_mark.column + 1);
    else
        failf(b, line, col, "%s", problem);
}

static gw_yaml_doc *load_text(const char *name, const char *text, size_t len, char **err)
{
    gw_builder b = {.name = name, .text = text, .len = len, .err = err};
    *err = NULL;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        *err = dupf("%s: out of memory", name);
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            parser_error(&b, &p);
            break;
        }
        bool ok = on_event(&b, &ev);
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (!ok || end) break;
    }
    yaml_parser_delete(&p);
    for (size_t i = 0; i < b.depth; i++)
        node_free(b.stack[i].key);
    gw_yaml_doc *doc = *err ? NULL : calloc(1, sizeof *doc);
    if (doc && !(doc->file = strdup(name))) {
        free(doc);
        doc = NULL;
    }
    if (!doc) {
        node_free(b.root);
        if (!*err) *err = dupf("%s: out of memory", name);
        return NULL;
    }
    /* "---" alone yields an empty plain scalar: that is an empty document, not a string. */
    if (b.root && b.root->kind == GW_YAML_SCALAR && !b.root->quoted && b.root->scalar[0] == '\0') {
        node_free(b.root);
        b.root = NULL;
    }
    doc->root = b.root;
    set_file(doc->root, doc->file, 0);
    return doc;
}

gw_yaml_doc *gw_yaml_load_string(const char *name, const char *text, char **err)
{
    return load_text(name, text, strlen(text), err);
}

static char *read_file(const char *path, size_t *len, char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = dupf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    gw_buf o = {0};
    char chunk[8192];
    size_t got;
    bool ok = buf_add(&o, "", 0), big = false;
    while (ok && !big && (got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        big = o.n + got > GW_YAML_MAX_FILE; /* keep what fits: the message says where reading stopped */
        ok = buf_add(&o, chunk, big ? GW_YAML_MAX_FILE - o.n : got);
    }
    int rerr = ferror(f) ? errno : 0;
    fclose(f);
    if (ok && !big && !rerr) {
        *len = o.n;
        return o.p;
    }
    if (rerr) {
        *err = dupf("%s: cannot read: %s", path, strerror(rerr));
    } else if (big) {
        gw_builder at = {.text = o.p, .len = o.n};
        int line, col;
        offset_pos(&at, o.n, &line, &col);
        *err = dupf("%s:%d:%d: the file is larger than the limit of %u bytes (16 MiB): reading stopped here",
                    path, line, col, GW_YAML_MAX_FILE);
    } else {
        *err = dupf("%s: out of memory", path);
    }
    free(o.p);
    return NULL;
}

gw_yaml_doc *gw_yaml_load(const char *path, char **err)
{
    size_t len = 0;
    *err = NULL;
    char *text = read_file(path, &len, err);
    if (!text) return NULL;
    gw_yaml_doc *doc = load_text(path, text, len, err);
    free(text);
    return doc;
}

void gw_yaml_free(gw_yaml_doc *doc)
{
    if (!doc) return;
    node_free(doc->root);
    free(doc->file);
    free(doc);
}

const gw_yaml_node *gw_yaml_get(const gw_yaml_node *map, const char *key)
{
    if (!map || map->kind != GW_YAML_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->scalar, key) == 0) return map->items[i];
    return NULL;
}
