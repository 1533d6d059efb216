/* head_buf.h - assembles a message head in a stack buffer and hands it to an evbuffer in one piece (or a few
 * for very large heads): one evbuffer_add and one output notification instead of one per field. */
#ifndef GW_HEAD_BUF_H
#define GW_HEAD_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

typedef struct {
    struct evbuffer *out;
    size_t n;
    char buf[4096];
} gw_hbuf;

static inline void gw_hb_init(gw_hbuf *b, struct evbuffer *out)
{
    b->out = out;
    b->n = 0;
}

static inline void gw_hb_add(gw_hbuf *b, const char *s, size_t n)
{
    if (b->n + n > sizeof b->buf) {
        evbuffer_add(b->out, b->buf, b->n);
        b->n = 0;
        if (n > sizeof b->buf) {
            evbuffer_add(b->out, s, n);
            return;
        }
    }
    memcpy(b->buf + b->n, s, n);
    b->n += n;
}

#define GW_HB_LIT(b, lit) gw_hb_add((b), (lit), sizeof(lit) - 1)

static inline void gw_hb_str(gw_hbuf *b, const char *s)
{
    gw_hb_add(b, s, strlen(s));
}

static inline void gw_hb_u64(gw_hbuf *b, uint64_t v, int base)
{
    char tmp[24];
    int i = (int)sizeof tmp;
    do {
        unsigned d = (unsigned)(v % (unsigned)base);
        tmp[--i] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= (unsigned)base;
    } while (v);
    gw_hb_add(b, tmp + i, sizeof tmp - (size_t)i);
}

/* "Name: value\r\n" */
static inline void gw_hb_field(gw_hbuf *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
    gw_hb_add(b, name, nlen);
    GW_HB_LIT(b, ": ");
    gw_hb_add(b, value, vlen);
    GW_HB_LIT(b, "\r\n");
}

static inline void gw_hb_flush(gw_hbuf *b)
{
    if (b->n) evbuffer_add(b->out, b->buf, b->n);
    b->n = 0;
}

#endif
