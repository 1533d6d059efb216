/* http_chunked.c - the chunked transfer coding decoder (RFC 9112 7.1): resumable, byte-exact, consumes
 * framing bytes only so the caller moves the payload between buffers by reference. */
#include "http_internal.h"

enum {
    CH_SIZE = 0, /* hex digits of the chunk size */
    CH_SIZE_BWS, /* whitespace after the size: only a ';' may follow */
    CH_EXT,      /* chunk extensions, skipped up to CR */
    CH_SIZE_LF,
    CH_DATA, /* payload: the caller moves it */
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TR_START, /* start of a trailer line, or the final CRLF */
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,
    CH_LAST_LF,
    CH_DONE,
    CH_ERROR,
};

#define CHUNK_LINE_MAX 4096     /* a size line with its extensions and CRLF */
#define CHUNK_TRAILER_MAX 32768 /* the trailer section with its final CRLF */
#define CHUNK_MAX_DIGITS 16

void gw_chunked_init(gw_chunked *c)
{
    memset(c, 0, sizeof *c);
    c->state = CH_SIZE;
}

bool gw_chunked_in_data(const gw_chunked *c)
{
    return c->state == CH_DATA && c->remaining > 0;
}

void gw_chunked_consumed(gw_chunked *c, uint64_t n)
{
    if (c->state != CH_DATA) return;
    if (n > c->remaining) n = c->remaining;
    c->remaining -= n;
    c->total += n;
    if (c->remaining == 0) c->state = CH_DATA_CR;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The size line's last LF: a payload follows, or the last chunk opens the trailer section. */
static int size_line_done(gw_chunked *c)
{
    c->line_len = 0;
    c->digits = 0;
    if (c->remaining > INT63_MAX - c->total) return GW_CHUNKED_ERROR;
    if (c->remaining == 0) {
        c->state = CH_TR_START;
        c->trailer_len = 0;
        return GW_CHUNKED_AGAIN;
    }
    c->state = CH_DATA;
    return GW_CHUNKED_DATA;
}

/* One byte of a size line; the state is CH_SIZE .. CH_SIZE_LF. */
static int size_step(gw_chunked *c, unsigned char ch)
{
    if (++c->line_len > CHUNK_LINE_MAX) return GW_CHUNKED_ERROR;
    int v = hexval(ch);
    switch (c->state) {
    case CH_SIZE:
        if (v >= 0) {
            if (c->digits == CHUNK_MAX_DIGITS || c->remaining > (INT63_MAX - (unsigned)v) / 16)
                return GW_CHUNKED_ERROR;
            c->remaining = c->remaining * 16 + (unsigned)v;
            c->digits++;
            return GW_CHUNKED_AGAIN;
        }
        if (c->digits == 0) return GW_CHUNKED_ERROR;
        if (ch == '\r')
            c->state = CH_SIZE_LF;
        else if (ch == ';')
            c->state = CH_EXT;
        else if (is_ows(ch))
            c->state = CH_SIZE_BWS;
        else
            return GW_CHUNKED_ERROR;
        return GW_CHUNKED_AGAIN;
    case CH_SIZE_BWS:
        if (ch == ';')
            c->state = CH_EXT;
        else if (!is_ows(ch))
            return GW_CHUNKED_ERROR;
        return GW_CHUNKED_AGAIN;
    case CH_EXT:
        if (ch == '\r')
            c->state = CH_SIZE_LF;
        else if (!(gw_http_cls[ch] & C_FVAL))
            return GW_CHUNKED_ERROR;
        return GW_CHUNKED_AGAIN;
    default: /* CH_SIZE_LF */
        return ch == '\n' ? size_line_done(c) : GW_CHUNKED_ERROR;
    }
}

/* One byte of the trailer section; each line is checked as a field line, then thrown away. */
static int trailer_step(gw_chunked *c, unsigned char ch)
{
    if (++c->trailer_len > CHUNK_TRAILER_MAX) return GW_CHUNKED_ERROR;
    switch (c->state) {
    case CH_TR_START:
        if (ch == '\r')
            c->state = CH_LAST_LF;
        else if (gw_http_cls[ch] & C_TCHAR)
            c->state = CH_TR_NAME;
        else
            return GW_CHUNKED_ERROR;
        return GW_CHUNKED_AGAIN;
    case CH_TR_NAME:
        if (ch == ':')
            c->state = CH_TR_VALUE;
        else if (!(gw_http_cls[ch] & C_TCHAR))
            return GW_CHUNKED_ERROR;
        return GW_CHUNKED_AGAIN;
    case CH_TR_VALUE:
        if (ch == '\r')
            c->state = CH_TR_LF;
        else if (!(gw_http_cls[ch] & C_FVAL))
            return GW_CHUNKED_ERROR;
        return GW_CHUNKED_AGAIN;
    case CH_TR_LF:
        if (ch != '\n') return GW_CHUNKED_ERROR;
        c->state = CH_TR_START;
        return GW_CHUNKED_AGAIN;
    default: /* CH_LAST_LF */
        if (ch != '\n') return GW_CHUNKED_ERROR;
        c->state = CH_DONE;
        return GW_CHUNKED_DONE;
    }
}

static int chunked_step(gw_chunked *c, unsigned char ch)
{
    switch (c->state) {
    case CH_DATA_CR:
        if (ch != '\r') return GW_CHUNKED_ERROR;
        c->state = CH_DATA_LF;
        return GW_CHUNKED_AGAIN;
    case CH_DATA_LF:
        if (ch != '\n') return GW_CHUNKED_ERROR;
        c->state = CH_SIZE;
        c->remaining = 0;
        return GW_CHUNKED_AGAIN;
    default:
        return c->state <= CH_SIZE_LF ? size_step(c, ch) : trailer_step(c, ch);
    }
}

int gw_chunked_feed(gw_chunked *c, const char *p, size_t n, size_t *used)
{
    size_t i = 0;
    int r = GW_CHUNKED_AGAIN;
    if (c->state == CH_DONE)
        r = GW_CHUNKED_DONE;
    else if (c->state == CH_ERROR)
        r = GW_CHUNKED_ERROR;
    else if (c->state == CH_DATA)
        r = GW_CHUNKED_DATA;
    while (r == GW_CHUNKED_AGAIN && i < n)
        r = chunked_step(c, (unsigned char)p[i++]);
    if (r == GW_CHUNKED_ERROR) c->state = CH_ERROR;
    *used = i;
    return r;
}
