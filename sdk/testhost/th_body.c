/* th_body.c - the body phases (ABI 1.1) in the test host: the test body goes to on_request_body in the
 * pieces the test chose, before the upstream is contacted (as the gateway does for a body it buffers), the
 * upstream reply's body to on_response_body (reverse order) after the response phase; host->body_buffer and
 * the Content-Length / Transfer-Encoding a test body gives the request. */
#include "th_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool new_request(gw_req *r, const char *fn)
{
    if (r->stage == TH_NEW) return true;
    th_violation(r->th, r, "%s after gw_th_run", fn);
    return false;
}

static void set_pieces(gw_req *r, size_t **dst, size_t *nd, const size_t *sizes, size_t n, const char *fn)
{
    if (!new_request(r, fn)) return;
    free(*dst);
    *dst = NULL;
    *nd = 0;
    for (size_t i = 0; i < n; i++)
        if (sizes[i] == 0) {
            th_violation(r->th, r, "%s: a piece size of 0", fn);
            return;
        }
    if (!n) return;
    *dst = th_xcalloc(n, sizeof **dst);
    memcpy(*dst, sizes, n * sizeof **dst);
    *nd = n;
}

void gw_th_request_body_pieces(gw_req *r, const size_t *sizes, size_t n)
{
    set_pieces(r, &r->req_pieces, &r->nreq_pieces, sizes, n, "gw_th_request_body_pieces");
}

void gw_th_response_body_pieces(gw_req *r, const size_t *sizes, size_t n)
{
    set_pieces(r, &r->resp_pieces, &r->nresp_pieces, sizes, n, "gw_th_response_body_pieces");
}

void gw_th_request_chunked(gw_req *r, bool chunked)
{
    if (new_request(r, "gw_th_request_chunked")) r->chunked = chunked;
}

uint64_t gw_th_body_buffer_max(const gw_req *r)
{
    return r->body_want;
}

/* At the start of a run: the framing field a client would have sent with the test body. */
void th_body_framing(gw_req *r)
{
    if (!r->blen && !r->chunked) return;
    if (th_hdrs_get(&r->req_h, "Content-Length") || th_hdrs_get(&r->req_h, "Transfer-Encoding")) return;
    char n[24];
    int k = snprintf(n, sizeof n, "%zu", r->blen);
    if (r->chunked)
        th_hdrs_add(&r->req_h, "Transfer-Encoding", "chunked", 7, false);
    else
        th_hdrs_add(&r->req_h, "Content-Length", n, (size_t)k, false);
}

static int body_buffer(gw_req *r, uint64_t max)
{
    if (r->stage != TH_REQUEST || !r->in_phase || max == 0) return -1; /* the gateway: too late */
    if (max > r->body_want) r->body_want = max;
    return 0;
}

void th_body_fill(gw_host *h)
{
    h->body_buffer = body_buffer;
}

bool th_body_too_large(const gw_req *r)
{
    return r->body_want && r->blen > r->body_want;
}

/* One piece through every filter with the phase's callback; the first result other than CONTINUE ends it
 * (r->cur names that filter). WAIT and RETRY are violations, counted as ERROR. */
static gw_result piece(gw_req *r, bool request, const gw_body_chunk *ch)
{
    gw_th *th = r->th;
    size_t n = r->nstate < th->nfilters ? r->nstate : th->nfilters;
    for (size_t k = 0; k < n; k++) {
        gw_filter *f = th->filters[request ? k : n - 1 - k];
        gw_body_fn fn = request ? f->d.on_request_body : f->d.on_response_body;
        if (!fn) continue;
        r->cur = f;
        r->in_phase = true;
        r->responded = false;
        gw_result res =
            fn(f->inst, th_route_conf(r, f), f->index < r->nstate ? r->state[f->index] : NULL, r, ch);
        r->in_phase = false;
        if (res == GW_CONTINUE) {
            if (r->responded)
                th_violation(th, r, "filter '%s': called respond() in a body phase but returned GW_CONTINUE",
                             f->d.name);
            continue;
        }
        if (res == GW_RESPOND && (!request || !r->responded)) {
            th_violation(th, r, "filter '%s': GW_RESPOND %s", f->d.name,
                         request ? "without calling respond()" : "in the response_body phase (not allowed)");
            return GW_ERROR;
        }
        if (res != GW_RESPOND && res != GW_ERROR) {
            th_violation(th, r, "filter '%s': result %d is not valid in a body phase", f->d.name, (int)res);
            return GW_ERROR;
        }
        return res;
    }
    return GW_CONTINUE;
}

/* The whole body in the test's pieces (cycled; default one piece), the last marked; an empty body is one
 * empty last piece. */
static gw_result run(gw_req *r, bool request, const char *body, size_t len)
{
    const size_t *sizes = request ? r->req_pieces : r->resp_pieces;
    size_t nsizes = request ? r->nreq_pieces : r->nresp_pieces, off = 0;
    for (size_t i = 0;; i++) {
        size_t n = len - off;
        if (nsizes && sizes[i % nsizes] < n) n = sizes[i % nsizes];
        gw_body_chunk ch = {{body ? body + off : "", n}, off, off + n == len};
        gw_result res = piece(r, request, &ch);
        if (res != GW_CONTINUE || off + n == len) return res;
        off += n;
    }
}

gw_result th_body_request(gw_req *r)
{
    gw_th *th = r->th;
    bool any = false;
    for (size_t i = 0; i < th->nfilters; i++)
        any |= th->filters[i]->d.on_request_body != NULL;
    if (!any || (!r->blen && !r->chunked)) return GW_CONTINUE; /* a request without a body: no phase */
    gw_result res = run(r, true, r->body, r->blen);
    if (res == GW_RESPOND && !r->replayable) {
        /* a streamed body has gone upstream in part: an answer is no longer possible */
        th_note(th, r, GW_LOG_ERROR,
                "filter '%s' answered in request_body after the body began to stream: "
                "treated as GW_ERROR",
                r->cur ? r->cur->d.name : "?");
        res = GW_ERROR;
    }
    return res;
}

gw_result th_body_response(gw_req *r)
{
    gw_th *th = r->th;
    bool any = false;
    for (size_t i = 0; i < th->nfilters; i++)
        any |= th->filters[i]->d.on_response_body != NULL;
    if (!any || r->status == 204 || r->status == 304 || strcmp(r->method, "HEAD") == 0) return GW_CONTINUE;
    return run(r, false, r->resp_body, r->resp_blen);
}

void th_body_free(gw_req *r)
{
    free(r->req_pieces);
    free(r->resp_pieces);
    r->req_pieces = r->resp_pieces = NULL;
}
