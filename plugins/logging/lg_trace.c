/* lg_trace.c - W3C Trace Context (https://www.w3.org/TR/trace-context/): parsing and writing traceparent.
 * version "00" is exactly 55 characters; a later version (not "ff") may be longer, with a '-' after the
 * 55 characters version 00 defines, and is read as version 00 (the spec's rule for unknown versions).
 * Hex is lowercase only; an all-zero trace id or parent id is invalid. */
#include "logging.h"

#include <string.h>

static const char hexd[] = "0123456789abcdef";

void lg_hex(char *out, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[b[i] >> 4];
        out[2 * i + 1] = hexd[b[i] & 15];
    }
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* n bytes from 2n lowercase hex digits; -1 if any is not one. Returns whether any byte is non-zero
 * (1) or all are zero (0). */
static int unhex(const char *s, uint8_t *out, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
        nonzero |= out[i] != 0;
    }
    return nonzero;
}

int lg_trace_parse(const char *v, size_t n, uint8_t trace[16], uint8_t *flags)
{
    while (n && (v[0] == ' ' || v[0] == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n < 55) return -1;
    uint8_t version, parent[8], tr[16];
    if (unhex(v, &version, 1) < 0 || version == 0xff) return -1;
    if (version == 0 && n != 55) return -1;
    if (n > 55 && v[55] != '-') return -1;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-') return -1;
    if (unhex(v + 3, tr, 16) != 1) return -1;
    if (unhex(v + 36, parent, 8) != 1) return -1;
    if (unhex(v + 53, flags, 1) < 0) return -1;
    memcpy(trace, tr, 16);
    return 0;
}

void lg_trace_format(char out[56], const uint8_t trace[16], const uint8_t span[8], uint8_t flags)
{
    memcpy(out, "00-", 3);
    lg_hex(out + 3, trace, 16);
    out[35] = '-';
    lg_hex(out + 36, span, 8);
    out[52] = '-';
    lg_hex(out + 53, &flags, 1);
    out[55] = '\0';
}
