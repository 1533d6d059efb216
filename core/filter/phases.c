/* phases.c - the pipeline runner. Request-side phases run in pipeline order, response-side phases in
 * reverse; a WAIT parks the request (its connection stops reading) until host->resume, which picks up
 * at the next filter. Results other than CONTINUE end the phase early. */
#include "phases.h"

#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "log.h"

static bool forward(int phase)
{
    return phase == GW_PH_REQUEST || phase == GW_PH_UPSTREAM_REQUEST || phase == GW_PH_ENDPOINT;
}

static gw_phase_fn phase_fn(const gw_filter *f, int phase)
{
    switch (phase) {
    case GW_PH_REQUEST:
        return f->d->on_request;
    case GW_PH_UPSTREAM_REQUEST:
        return f->d->on_upstream_request;
    case GW_PH_UPSTREAM_RESPONSE:
        return f->d->on_upstream_response;
    case GW_PH_RESPONSE:
        return f->d->on_response;
    case GW_PH_LOG:
        return f->d->on_log;
    }
    return NULL;
}

/* Computed once per generation: the per-request path only tests a bit. */
bool gw_phase_present(const gw_conn *c, int phase)
{
    return c->gen && (c->gen->phases & (1u << phase));
}

int gw_phase_request_init(gw_conn *c)
{
    gw_req *r = &c->rq;
    r->c = c;
    r->active = true;
    c->body_want = 0;
    c->resp_body_seen = 0;
    if (!c->gen->nfilters) return 0;
    if (c->gen->state_size) {
        r->state = gw_req_alloc(r, c->gen->state_size);
        if (!r->state) return -1;
        memset(r->state, 0, c->gen->state_size);
    }
    return 0;
}

static void done(gw_conn *c, int phase, gw_result res)
{
    switch (phase) {
    case GW_PH_REQUEST:
        gw_after_request_phase(c, res);
        break;
    case GW_PH_ENDPOINT:
        gw_after_endpoint(c, res);
        break;
    case GW_PH_UPSTREAM_REQUEST:
        gw_after_upstream_request(c, res);
        break;
    case GW_PH_UPSTREAM_RESPONSE:
        gw_after_upstream_response(c, res);
        break;
    case GW_PH_RESPONSE:
        gw_after_response_phase(c, res);
        break;
    }
}

static void *route_conf_of(const gw_conn *c, const gw_filter *f)
{
    return c->route && f->route_conf ? f->route_conf[c->route - c->gen->cfg->routes] : f->route_default;
}

/* Calls one filter (or the endpoint handler). */
static gw_result call(gw_conn *c, int phase, size_t k)
{
    gw_req *r = &c->rq;
    const gw_gen *g = c->gen;
    if (phase == GW_PH_ENDPOINT) {
        const gw_endpoint *e = r->endpoint;
        const gw_filter *f = e->f;
        if (!f) { /* one of the core's own (admin.c) */
            r->cur = NULL;
            return e->handler(g->srv, NULL, NULL, r);
        }
        if (!g->pw[c->w->id].init_ok[f->index]) return GW_ERROR;
        r->cur = (gw_filter *)f;
        return e->handler(f->inst, f->route_default, r->state ? r->state + f->state_off : NULL, r);
    }
    size_t i = forward(phase) ? k : g->nfilters - 1 - k;
    const gw_filter *f = g->filters[i];
    gw_phase_fn fn = phase_fn(f, phase);
    if (!fn) return GW_CONTINUE;
    if (!g->pw[c->w->id].init_ok[i]) return GW_ERROR;
    void *rc = route_conf_of(c, f);
    r->cur = (gw_filter *)f;
    return fn(f->inst, rc, r->state && f->d->req_state_size ? r->state + f->state_off : NULL, r);
}

/* Runs the phase from r->next on; returns true if it parked on WAIT. */
static void run(gw_conn *c, int phase)
{
    gw_req *r = &c->rq;
    size_t n = phase == GW_PH_ENDPOINT ? 1 : c->gen->nfilters;
    while (r->next < n) {
        size_t k = r->next++;
        r->in_call = true;
        r->early_set = false;
        gw_result res = call(c, phase, k);
        r->in_call = false;
        if (res == GW_WAIT && r->early_set) res = r->early; /* resumed from inside the call */
        if (res == GW_WAIT) {
            if (phase == GW_PH_LOG) {
                res = GW_ERROR;
            } else {
                r->waiting = true;
                r->phase = phase;
                evtimer_del(c->timer); /* the client is not being read meanwhile: no idle timeout */
                return;
            }
        }
        if (res == GW_CONTINUE && phase != GW_PH_ENDPOINT) continue;
        if (res == GW_RETRY && phase != GW_PH_UPSTREAM_RESPONSE) res = GW_ERROR;
        done(c, phase, res);
        return;
    }
    done(c, phase, GW_CONTINUE);
}

void gw_phase_start(gw_conn *c, int phase)
{
    c->rq.next = 0;
    c->rq.phase = phase;
    run(c, phase);
}

void gw_phase_resume(gw_req *r, gw_result result)
{
    if (r->in_call) { /* called back synchronously: the runner picks it up when the call returns */
        r->early = result;
        r->early_set = true;
        return;
    }
    if (!r->waiting) {
        gw_warn("a filter resumed a request that is not waiting (ignored)");
        return;
    }
    gw_conn *c = r->c;
    r->waiting = false;
    if (result == GW_WAIT) result = GW_ERROR;
    if (result == GW_CONTINUE && r->phase != GW_PH_ENDPOINT) {
        run(c, r->phase);
        return;
    }
    if (result == GW_RETRY && r->phase != GW_PH_UPSTREAM_RESPONSE) result = GW_ERROR;
    done(c, r->phase, result);
}

/* One piece through every filter with a body callback for the phase. */
static gw_result body_piece(gw_conn *c, int phase, const gw_body_chunk *ch)
{
    gw_req *r = &c->rq;
    const gw_gen *g = c->gen;
    bool req_side = phase == GW_PH_REQUEST_BODY;
    int saved = r->phase;
    r->phase = phase; /* host calls that depend on the phase (body_buffer) see this one */
    gw_result res = GW_CONTINUE;
    for (size_t k = 0; k < g->nfilters && res == GW_CONTINUE; k++) {
        size_t i = req_side ? k : g->nfilters - 1 - k;
        const gw_filter *f = g->filters[i];
        gw_body_fn fn = req_side ? f->d->on_request_body : f->d->on_response_body;
        if (!fn) continue;
        if (!g->pw[c->w->id].init_ok[i]) {
            res = GW_ERROR;
            break;
        }
        r->cur = (gw_filter *)f;
        void *st = r->state && f->d->req_state_size ? r->state + f->state_off : NULL;
        res = fn(f->inst, route_conf_of(c, f), st, r, ch);
        if (res == GW_RESPOND && (!req_side || !r->own_status))
            res = GW_ERROR;
        else if (res != GW_CONTINUE && res != GW_RESPOND)
            res = GW_ERROR; /* WAIT, RETRY, garbage */
        if (res == GW_ERROR)
            gw_warn("filter '%s' failed in the %s body phase", f->name, req_side ? "request" : "response");
    }
    r->phase = saved;
    return res;
}

gw_result gw_phase_body(gw_conn *c, int phase, struct evbuffer *buf, size_t n, uint64_t offset, bool last)
{
    if (n == 0) return body_piece(c, phase, &(gw_body_chunk){{"", 0}, offset, last});
    struct evbuffer_iovec v[8];
    struct evbuffer_ptr pos;
    size_t done = 0;
    for (int guard = 0; done < n && guard < 1000000; guard++) {
        if (evbuffer_ptr_set(buf, &pos, done, EVBUFFER_PTR_SET) != 0) return GW_ERROR;
        int k = evbuffer_peek(buf, (ev_ssize_t)(n - done), &pos, v, 8);
        if (k <= 0) return GW_ERROR;
        for (int i = 0; i < k && i < 8 && done < n; i++) {
            size_t len = v[i].iov_len < n - done ? v[i].iov_len : n - done;
            gw_body_chunk ch = {{v[i].iov_base, len}, offset + done, last && done + len == n};
            gw_result res = body_piece(c, phase, &ch);
            if (res != GW_CONTINUE) return res;
            done += len;
        }
    }
    return done == n ? GW_CONTINUE : GW_ERROR;
}

void gw_phase_log(gw_conn *c)
{
    gw_req *r = &c->rq;
    if (!gw_phase_present(c, GW_PH_LOG) || !r->active) return;
    r->phase = GW_PH_LOG;
    for (size_t k = 0; k < c->gen->nfilters; k++) {
        r->in_call = true;
        gw_result res = call(c, GW_PH_LOG, k);
        r->in_call = false;
        if (res == GW_WAIT)
            gw_warn("filter '%s' returned WAIT in the log phase (not allowed)",
                    c->gen->filters[c->gen->nfilters - 1 - k]->name);
    }
}
