/* app.js - the gateway console: polls the admin API and draws it. No libraries, no inline code (the page runs
 * under a strict Content-Security-Policy); the DOM is built with createElement/textContent only, since names
 * of services, breakers and keys are data. */
(function () {
  'use strict';

  function meta(name, def) {
    const m = document.querySelector('meta[name="' + name + '"]');
    return m && m.content ? m.content : def;
  }

  const REFRESH_MS = Math.max(500, parseInt(meta('gw-refresh', '3000'), 10) || 3000);
  const PATHS = {
    services: '/services/health',
    info: '/info',
    metrics: meta('gw-metrics', '/metrics'),
    breakers: '/admin/circuit-breakers',
    apikeys: meta('gw-apikeys', '/admin/apikeys'),
    config: '/admin/config',
    reload: '/admin/reload',
  };
  /* Things that change rarely (filters, keys, configuration) are read every ~6 s, the rest every tick
   * (and everything right after an action). Authenticated admin requests are not rate limited by default
   * (ratelimit's limit_admin), but there is no point in asking for them more often. */
  const SLOW_EVERY = Math.max(1, Math.round(6000 / REFRESH_MS));
  const HISTORY = 60; /* points in the charts */

  const $ = (id) => document.getElementById(id);

  /* --- DOM helpers ------------------------------------------------------------------------------------ */

  /* h('td', {class: 'num', text: '3', data: {name: 'x'}, 'aria-label': '...'}, [children]) */
  function h(tag, props, children) {
    const e = document.createElement(tag);
    if (props) {
      for (const k of Object.keys(props)) {
        const v = props[k];
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = String(v);
        else if (k === 'data') for (const d of Object.keys(v)) e.dataset[d] = String(v[d]);
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    if (children) for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function setText(e, text) {
    const t = String(text);
    if (e.textContent !== t) e.textContent = t;
  }

  /* Keeps tbody's rows in the order of items, one per key, reusing rows (so focus and pending clicks survive
   * a refresh): create(item) makes a row, update(row, item) fills it. */
  function syncRows(tbody, items, key, create, update) {
    const old = new Map();
    for (const row of Array.from(tbody.children)) old.set(row.dataset.key, row);
    items.forEach((item, i) => {
      const k = String(key(item));
      let row = old.get(k);
      if (row) old.delete(k);
      else {
        row = create(item);
        row.dataset.key = k;
      }
      update(row, item);
      if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
    });
    for (const row of old.values()) row.remove();
  }

  /* --- formatting ------------------------------------------------------------------------------------- */

  function num(v) {
    const n = typeof v === 'number' ? v : parseFloat(v);
    return Number.isFinite(n) ? n : null;
  }

  function fmtRate(v) {
    if (v === null || v === undefined) return '–';
    if (v === 0) return '0';
    if (v < 0.01) return '<0.01';
    if (v < 10) return v.toFixed(2);
    if (v < 100) return v.toFixed(1);
    return Math.round(v).toLocaleString();
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    return (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v).toLocaleString()) + ' ms';
  }

  function fmtPct(part, whole) {
    if (!whole) return '–';
    const p = (100 * part) / whole;
    return (p === 0 ? '0' : p < 0.1 ? '<0.1' : p.toFixed(1)) + ' %';
  }

  function fmtTime(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function ago(iso) {
    if (!iso) return 'never';
    const t = new Date(iso).getTime();
    if (isNaN(t)) return String(iso);
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return Math.round(s / 3600) + ' h ago';
    return new Date(t).toLocaleDateString();
  }

  /* --- the admin API ---------------------------------------------------------------------------------- */

  class ApiError extends Error {
    constructor(message, status, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  /* One call: resolves to {status, json} for 2xx (and the statuses in `accept`), else rejects with an
   * ApiError carrying the answer's message. The browser sends the credentials it used for the page. */
  async function api(method, path, body, accept) {
    const init = {method, credentials: 'same-origin', cache: 'no-store', headers: {Accept: 'application/json'}};
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const what = method + ' ' + path;
    let res, text;
    try {
      /* against the origin, not the page's URL: that may hold user:password@, which fetch() refuses */
      res = await fetch(window.location.origin + path, init);
      text = await res.text();
    } catch (e) {
      throw new ApiError(what + ': network error (' + ((e && e.message) || e) + ')', 0);
    }
    let json = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch (e) {
        json = null;
      }
    }
    if (res.ok || (accept && accept.includes(res.status))) {
      if (json === null && text) throw new ApiError(what + ': the answer is not JSON', res.status);
      return {status: res.status, json};
    }
    const msg = json && (json.message || json.error) ? String(json.message || json.error) : res.statusText;
    const ra = parseInt(res.headers.get('Retry-After') || '', 10);
    throw new ApiError(what + ': ' + res.status + (msg ? ' ' + msg : ''), res.status, Number.isFinite(ra) ? ra : 0);
  }

  /* --- errors and notices ----------------------------------------------------------------------------- */

  const errors = new Map(); /* source -> message */

  function renderErrors() {
    const list = $('error-list');
    list.replaceChildren(...Array.from(errors.values(), (m) => h('li', {text: m})));
    $('error').hidden = errors.size === 0;
  }

  function setError(source, message) {
    if (errors.get(source) === message) return;
    errors.set(source, message);
    renderErrors();
  }

  function clearError(source) {
    if (errors.delete(source)) renderErrors();
  }

  let noticeTimer = 0;
  function notice(text) {
    const n = $('notice');
    n.textContent = text;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      n.hidden = true;
    }, 5000);
  }

  let holdUntil = 0; /* after a 429: no polling before this (ms since the epoch) */

  function failed(source, e) {
    setError(source, e.message);
    if (e.status === 429) holdUntil = Date.now() + Math.max(e.retryAfter || 0, 1) * 1000;
  }

  /* Runs one loader; its error (or its recovery) shows in the banner, and its card looks stale meanwhile.
   * Resolves to whether it worked. */
  async function guard(source, card, fn) {
    try {
      await fn();
      clearError(source);
      if (card) $(card).classList.remove('stale');
      return true;
    } catch (e) {
      failed(source, e);
      if (card) $(card).classList.add('stale');
      return false;
    }
  }

  /* --- services --------------------------------------------------------------------------------------- */

  function badge(status) {
    return h('span', {class: 'badge badge-' + status, text: status});
  }

  async function loadServices() {
    const r = await api('GET', PATHS.services, undefined, [503]); /* 503: some service is down */
    const doc = r.json || {};
    const services = Array.isArray(doc.services) ? doc.services : [];
    const top = $('services-status');
    top.className = 'badge badge-' + (doc.status || 'unknown');
    setText(top, doc.status || 'unknown');
    const box = $('services');
    box.replaceChildren(
      ...services.map((s) => {
        const instances = Array.isArray(s.instances) ? s.instances : [];
        const rows = instances.map((i) =>
          h('tr', {data: {url: i.url}}, [
            h('td', {class: 'url', 'data-label': 'Target'}, [h('code', {text: i.url})]),
            h('td', {'data-label': 'Health'}, [badge(i.status || 'unknown')]),
            h('td', {class: 'num', 'data-label': 'Check time', text: fmtMs(num(i.response_time_ms))}),
            h('td', {'data-label': 'Last check', text: ago(i.last_check), title: i.last_check ? fmtTime(i.last_check) : null}),
            h('td', {class: 'reason', 'data-label': 'Reason', text: i.reason ? i.reason + (i.since ? ' · since ' + ago(i.since) : '') : '',
                     title: i.since ? 'since ' + fmtTime(i.since) : null}),
          ])
        );
        return h('article', {class: 'service', data: {name: s.name, status: s.status}}, [
          h('div', {class: 'service-head'}, [
            h('h3', {text: s.name}),
            badge(s.status || 'unknown'),
            h('span', {class: 'muted', text: 'checked ' + ago(s.last_check)}),
          ]),
          h('div', {class: 'table-wrap'}, [
            h('table', {class: 'compact stack'}, [
              h('thead', null, [
                h('tr', null, [
                  h('th', {scope: 'col', text: 'Target'}),
                  h('th', {scope: 'col', text: 'Health'}),
                  h('th', {scope: 'col', class: 'num', text: 'Check time'}),
                  h('th', {scope: 'col', text: 'Last check'}),
                  h('th', {scope: 'col', text: 'Reason'}),
                ]),
              ]),
              h('tbody', null, rows),
            ]),
          ]),
        ]);
      })
    );
    if (!services.length) box.append(h('p', {class: 'muted empty', text: 'No services configured.'}));
  }

  /* --- circuit breakers ------------------------------------------------------------------------------- */

  async function loadBreakers() {
    const r = await api('GET', PATHS.breakers);
    const list = r.json && Array.isArray(r.json.data) ? r.json.data : [];
    syncRows(
      $('breakers'),
      list,
      (b) => b.name,
      (b) =>
        h('tr', {data: {name: b.name}}, [
          h('th', {scope: 'row', text: b.name}),
          h('td', {'data-label': 'State'}, [h('span', {class: 'state'})]),
          h('td', {class: 'num failures', 'data-label': 'Failures'}),
          h('td', {class: 'num successes', 'data-label': 'Successes'}),
          h('td', {class: 'last-failure', 'data-label': 'Last failure'}),
          h('td', {class: 'actions'}, [
            h('button', {type: 'button', class: 'small', data: {action: 'reset', name: b.name},
                         'aria-label': 'Reset the circuit breaker of ' + b.name, text: 'Reset'}),
          ]),
        ]),
      (row, b) => {
        const st = row.querySelector('.state');
        setText(st, b.state);
        st.className = 'state state-' + String(b.state).replace(/[^a-z-]/g, '');
        row.dataset.state = b.state;
        setText(row.querySelector('.failures'), b.failures);
        setText(row.querySelector('.successes'), b.consecutive_successes);
        setText(row.querySelector('.last-failure'), b.last_failure ? ago(b.last_failure) : '–');
      }
    );
  }

  async function resetBreaker(button, name) {
    const path = name === null ? PATHS.breakers + '/reset' : PATHS.breakers + '/' + encodeURIComponent(name) + '/reset';
    button.disabled = true;
    try {
      const r = await api('POST', path);
      clearError('action');
      notice((r.json && r.json.message) || (name === null ? 'Every breaker was reset' : 'Breaker ' + name + ' reset'));
    } catch (e) {
      failed('action', e);
    } finally {
      button.disabled = false;
    }
    await guard('breakers', 'breakers-card', loadBreakers);
    /* the button was disabled during the call, which drops keyboard focus: give it back */
    if (!document.activeElement || document.activeElement === document.body) {
      const again = name === null ? $('reset-all')
        : document.querySelector('#breakers tr[data-name="' + CSS.escape(name) + '"] button[data-action="reset"]');
      if (again) again.focus();
    }
  }

  /* --- metrics ---------------------------------------------------------------------------------------- */

  let prevSample = null;
  const history = []; /* {rpsAll, errAll, rpsRoutes, errRoutes, p95} */
  let lastRoutes = []; /* per-route rates of the last two samples */
  let reloadsFromMetrics = null;

  function family(doc, name) {
    return (doc.metrics || []).find((f) => f && f.name === name);
  }

  function sumSeries(f) {
    let s = 0;
    for (const x of (f && f.series) || []) s += num(x.value) || 0;
    return s;
  }

  function sample(doc) {
    const routes = new Map();
    const req = family(doc, 'gateway_http_requests_total');
    for (const x of (req && req.series) || []) {
      const l = x.labels || {};
      const route = l.route || '(none)';
      const r = routes.get(route) || {total: 0, errors: 0};
      const v = num(x.value) || 0;
      r.total += v;
      if (parseInt(l.status, 10) >= 500) r.errors += v;
      routes.set(route, r);
    }
    let p95 = null;
    const dur = family(doc, 'gateway_http_request_duration_ms');
    for (const x of (dur && dur.series) || [])
      for (const q of x.quantiles || []) if (Math.abs(num(q.quantile) - 0.95) < 1e-9) p95 = num(q.value);
    const reloads = {};
    const rl = family(doc, 'gateway_config_reloads_total');
    for (const x of (rl && rl.series) || []) reloads[(x.labels && x.labels.result) || ''] = num(x.value) || 0;
    return {
      t: performance.now(),
      routes,
      limited: sumSeries(family(doc, 'gateway_rate_limited_total')),
      hasLimited: !!family(doc, 'gateway_rate_limited_total'),
      p95,
      hasP95: !!dur,
      reloads: rl ? reloads : null,
    };
  }

  /* A counter's growth between two samples (a smaller value means the gateway restarted). */
  function delta(cur, prev) {
    return cur >= prev ? cur - prev : cur;
  }

  const isEndpoint = (route) => route.charAt(0) === '/';

  async function loadMetrics() {
    const r = await api('GET', PATHS.metrics);
    if (!r.json || !Array.isArray(r.json.metrics)) throw new ApiError('GET ' + PATHS.metrics + ': not the metrics JSON', r.status);
    const cur = sample(r.json);
    reloadsFromMetrics = cur.reloads;
    if (prevSample) {
      const dt = (cur.t - prevSample.t) / 1000;
      if (dt > 0) {
        const point = {rpsAll: 0, errAll: 0, rpsRoutes: 0, errRoutes: 0, p95: cur.p95};
        lastRoutes = [];
        for (const [route, c] of cur.routes) {
          const p = prevSample.routes.get(route) || {total: 0, errors: 0};
          const rps = delta(c.total, p.total) / dt, eps = delta(c.errors, p.errors) / dt;
          lastRoutes.push({route, rps, eps, total: c.total});
          point.rpsAll += rps;
          point.errAll += eps;
          if (!isEndpoint(route)) {
            point.rpsRoutes += rps;
            point.errRoutes += eps;
          }
        }
        point.limited = cur.hasLimited ? delta(cur.limited, prevSample.limited) / dt : null;
        history.push(point);
        while (history.length > HISTORY) history.shift();
      }
    }
    prevSample = cur;
    renderTraffic();
    renderReloads();
  }

  function renderTraffic() {
    const all = $('show-endpoints').checked;
    const last = history[history.length - 1];
    if (last) {
      const rps = all ? last.rpsAll : last.rpsRoutes, eps = all ? last.errAll : last.errRoutes;
      setText($('stat-rps'), fmtRate(rps));
      setText($('stat-errors'), fmtRate(eps) + '/s · ' + fmtPct(eps, rps));
      setText($('stat-ratelimited'), fmtRate(last.limited));
    }
    setText($('stat-p95'), prevSample && prevSample.hasP95 ? fmtMs(prevSample.p95) : '–');
    const routes = lastRoutes
      .filter((x) => all || !isEndpoint(x.route))
      .sort((a, b) => b.rps - a.rps || a.route.localeCompare(b.route));
    syncRows(
      $('routes'),
      routes,
      (x) => x.route,
      (x) =>
        h('tr', {data: {route: x.route}}, [
          h('th', {scope: 'row', text: x.route}),
          h('td', {class: 'num rps', 'data-label': 'Requests/s'}),
          h('td', {class: 'num eps', 'data-label': '5xx/s'}),
          h('td', {class: 'num pct', 'data-label': 'Error %'}),
          h('td', {class: 'num total', 'data-label': 'Total'}),
        ]),
      (row, x) => {
        setText(row.querySelector('.rps'), fmtRate(x.rps));
        setText(row.querySelector('.eps'), fmtRate(x.eps));
        setText(row.querySelector('.pct'), fmtPct(x.eps, x.rps));
        setText(row.querySelector('.total'), Math.round(x.total).toLocaleString());
        row.classList.toggle('bad', x.eps > 0);
      }
    );
    const empty = $('routes-empty');
    empty.hidden = routes.length > 0;
    setText(empty, history.length ? 'No requests on routes yet.' : 'Waiting for two samples of the metrics…');
    drawCharts(all);
  }

  /* The points of a polyline in the 600x120 box of the charts, the newest at the right edge. */
  function points(values, max) {
    const n = values.length;
    return values
      .map((v, i) => {
        const x = n < 2 ? 600 : (600 * (HISTORY - n + i)) / (HISTORY - 1);
        const y = v === null || !max ? 120 : 120 - (112 * v) / max;
        return x.toFixed(1) + ',' + y.toFixed(1);
      })
      .join(' ');
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function drawCharts(all) {
    const rps = history.map((p) => (all ? p.rpsAll : p.rpsRoutes));
    const err = history.map((p) => (all ? p.errAll : p.errRoutes));
    const p95 = history.map((p) => p.p95);
    const maxRate = niceMax(Math.max(0, ...rps, ...err));
    const maxP95 = niceMax(Math.max(0, ...p95.filter((v) => v !== null)));
    $('line-rps').setAttribute('points', points(rps, maxRate));
    $('line-err').setAttribute('points', points(err, maxRate));
    $('line-p95').setAttribute('points', points(p95, maxP95));
    setText($('chart-rate-max'), 'scale ' + fmtRate(maxRate) + '/s');
    setText($('chart-p95-max'), 'scale ' + fmtMs(maxP95));
    const last = history[history.length - 1];
    $('chart-rate').setAttribute('aria-label', last ? 'Request rate now ' + fmtRate(all ? last.rpsAll : last.rpsRoutes) + ' per second, 5xx ' + fmtRate(all ? last.errAll : last.errRoutes) + ' per second' : 'Request rate: no data yet');
    $('chart-p95').setAttribute('aria-label', last ? 'p95 latency now ' + fmtMs(last.p95) : 'p95 latency: no data yet');
  }

  /* --- info, configuration, reloads ------------------------------------------------------------------- */

  let info = null;
  let configGeneration = null;
  let configAvailable = true; /* false after GET /admin/config answered 404: asked again after a reload */

  async function loadInfo() {
    const r = await api('GET', PATHS.info);
    info = r.json || {};
    setText($('version'), info.version ? 'gateway ' + info.version : 'gateway');
    const filters = Array.isArray(info.filters) ? info.filters : [];
    syncRows(
      $('filters'),
      filters,
      (f) => f.name,
      (f) => h('tr', {data: {name: f.name}}, [h('th', {scope: 'row', text: f.name}), h('td', {class: 'ver'}), h('td', {class: 'abi'})]),
      (row, f) => {
        setText(row.querySelector('.ver'), f.version || '–');
        setText(row.querySelector('.abi'), f.abi || '–');
      }
    );
    renderReloads();
  }

  function renderReloads() {
    const gen = configGeneration !== null ? configGeneration : info && info.generation !== undefined ? info.generation : null;
    setText($('stat-generation'), gen === null ? '–' : gen);
    setText($('generation'), gen === null ? '–' : String(gen) + (configGeneration === null && gen !== null ? ' (from /info)' : ''));
    let ok = null, bad = null;
    if (reloadsFromMetrics) {
      ok = reloadsFromMetrics.success || 0;
      bad = reloadsFromMetrics.failure || 0;
    } else if (info && info.reloads) {
      ok = info.reloads.success || 0;
      bad = info.reloads.failure || 0;
    }
    setText($('stat-reloads'), ok === null ? '–' : ok + ' / ' + bad);
    setText($('reloads'), ok === null ? '–' : ok + ' succeeded, ' + bad + ' failed');
  }

  async function loadConfig() {
    if (!configAvailable) return;
    const r = await api('GET', PATHS.config, undefined, [404]);
    const pre = $('config-json');
    if (r.status === 404) {
      configAvailable = false;
      configGeneration = null;
      setText(pre, 'This gateway does not serve GET ' + PATHS.config + ' (404).');
    } else {
      const data = (r.json && r.json.data) || {};
      configGeneration = data.generation !== undefined ? data.generation : null;
      setText($('config-file'), data.file || '–');
      setText(pre, JSON.stringify(data.config !== undefined ? data.config : data, null, 2));
    }
    renderReloads();
  }

  async function reload(button) {
    const out = $('reload-result');
    button.disabled = true;
    out.hidden = false;
    out.className = 'result';
    setText(out, 'Reloading…');
    try {
      const r = await api('POST', PATHS.reload);
      const gen = r.json && r.json.data ? r.json.data.generation : undefined;
      out.className = 'result ok';
      setText(out, ((r.json && r.json.message) || 'Configuration reloaded') + (gen !== undefined ? ' (generation ' + gen + ')' : ''));
      clearError('action');
      configAvailable = true;
      await tick(true);
    } catch (e) {
      out.className = 'result error';
      setText(out, e.message);
      failed('action', e);
    } finally {
      button.disabled = false;
    }
  }

  /* --- API keys --------------------------------------------------------------------------------------- */

  let confirmDelete = null; /* id of the key whose deletion waits for confirmation */
  const keysById = new Map();

  function keyStatus(k) {
    if (!k.active) return 'revoked';
    if (k.expires_at && new Date(k.expires_at).getTime() <= Date.now()) return 'expired';
    return 'active';
  }

  async function loadKeys() {
    const r = await api('GET', PATHS.apikeys);
    const keys = r.json && Array.isArray(r.json.data) ? r.json.data : [];
    keysById.clear();
    for (const k of keys) keysById.set(k.id, k);
    if (confirmDelete !== null && !keysById.has(confirmDelete)) confirmDelete = null;
    syncRows(
      $('keys'),
      keys,
      (k) => k.id,
      (k) =>
        h('tr', {data: {id: k.id, name: k.name}}, [
          h('th', {scope: 'row', class: 'key-name', text: k.name}),
          h('td', {'data-label': 'Id'}, [h('code', {class: 'key-id', text: k.id, title: k.id})]),
          h('td', {class: 'num rate', 'data-label': 'Rate limit'}),
          h('td', {class: 'status', 'data-label': 'Status'}),
          h('td', {class: 'created', 'data-label': 'Created'}),
          h('td', {class: 'expires', 'data-label': 'Expires'}),
          h('td', {class: 'actions'}),
        ]),
      (row, k) => {
        const st = keyStatus(k);
        row.dataset.status = st;
        setText(row.querySelector('.key-name'), k.name);
        setText(row.querySelector('.rate'), k.rate_limit ? k.rate_limit + '/min' : 'default');
        const sc = row.querySelector('.status');
        if (sc.dataset.status !== st) {
          sc.dataset.status = st;
          sc.replaceChildren(badge(st));
        }
        setText(row.querySelector('.created'), fmtTime(k.created_at));
        setText(row.querySelector('.expires'), k.expires_at ? fmtTime(k.expires_at) : 'never');
        keyActions(row.querySelector('.actions'), k, st);
      }
    );
    $('keys-empty').hidden = keys.length > 0;
  }

  /* The buttons of a key's row; rebuilt only when what they offer changes, so focus stays put. */
  function keyActions(cell, k, st) {
    const mode = confirmDelete === k.id ? 'confirm' : st === 'revoked' ? 'revoked' : 'normal';
    if (cell.dataset.mode === mode) return;
    cell.dataset.mode = mode;
    const b = (action, text, label, cls) =>
      h('button', {type: 'button', class: 'small' + (cls ? ' ' + cls : ''), data: {action, id: k.id}, 'aria-label': label, text});
    if (mode === 'confirm') {
      cell.replaceChildren(
        h('span', {class: 'confirm-text', text: 'Delete?'}),
        b('confirm-delete', 'Delete', 'Confirm: delete the key ' + k.name, 'danger'),
        b('cancel-delete', 'Cancel', 'Keep the key ' + k.name)
      );
    } else {
      const revoke = b('revoke', 'Revoke', 'Revoke the key ' + k.name);
      if (mode === 'revoked') revoke.disabled = true;
      cell.replaceChildren(revoke, b('delete', 'Delete', 'Delete the key ' + k.name, 'danger-outline'));
    }
  }

  /* After an action on a key: focus stays in its row if it is still there, else goes to the form. */
  function refocus(row, selector) {
    const b = row && row.isConnected ? row.querySelector(selector) : null;
    if (b) b.focus();
    else if (!document.activeElement || document.activeElement === document.body) $('key-name').focus();
  }

  async function keyAction(button, action, id) {
    const row = button.closest('tr');
    const k = keysById.get(id);
    const name = k ? k.name : id;
    if (action === 'delete' || action === 'cancel-delete') {
      const prev = confirmDelete !== null && confirmDelete !== id ? confirmDelete : null;
      confirmDelete = action === 'delete' ? id : null;
      if (k && row) keyActions(row.querySelector('.actions'), k, keyStatus(k));
      if (prev !== null && keysById.has(prev)) { /* one confirmation at a time */
        const other = $('keys').querySelector('tr[data-key="' + CSS.escape(prev) + '"]');
        if (other) keyActions(other.querySelector('.actions'), keysById.get(prev), keyStatus(keysById.get(prev)));
      }
      refocus(row, action === 'delete' ? 'button[data-action="cancel-delete"]' : 'button[data-action="delete"]');
      return;
    }
    button.disabled = true;
    try {
      if (action === 'revoke') {
        await api('POST', PATHS.apikeys + '/' + encodeURIComponent(id) + '/revoke');
        notice('Key ' + name + ' revoked');
      } else if (action === 'confirm-delete') {
        await api('DELETE', PATHS.apikeys + '/' + encodeURIComponent(id));
        confirmDelete = null;
        notice('Key ' + name + ' deleted');
      }
      clearError('action');
    } catch (e) {
      failed('action', e);
    } finally {
      button.disabled = false;
    }
    await guard('keys', 'keys-card', loadKeys);
    refocus(row, 'button:not([disabled])');
  }

  function formError(text) {
    const e = $('key-form-error');
    e.hidden = !text;
    setText(e, text || '');
  }

  async function createKey(ev) {
    ev.preventDefault();
    const nameIn = $('key-name'), rateIn = $('key-rate'), submit = $('key-create');
    const name = nameIn.value.trim();
    const rateText = rateIn.value.trim();
    if (!name) {
      formError('Give the key a name.');
      nameIn.setAttribute('aria-invalid', 'true');
      nameIn.focus();
      return;
    }
    nameIn.removeAttribute('aria-invalid');
    const body = {name};
    if (rateText) {
      const rate = Number(rateText);
      if (!Number.isInteger(rate) || rate < 1) {
        formError('The rate limit is a whole number of requests per minute, at least 1 (or empty for the default).');
        rateIn.setAttribute('aria-invalid', 'true');
        rateIn.focus();
        return;
      }
      body.rate_limit = rate;
    }
    rateIn.removeAttribute('aria-invalid');
    formError('');
    submit.disabled = true;
    try {
      const r = await api('POST', PATHS.apikeys, body);
      const data = (r.json && r.json.data) || {};
      if (!data.raw_key) throw new ApiError('POST ' + PATHS.apikeys + ': the answer holds no raw_key', r.status);
      setText($('new-key-name'), (data.api_key && data.api_key.name) || name);
      setText($('raw-key'), data.raw_key);
      setText($('copy-result'), '');
      $('new-key').hidden = false;
      $('key-form').reset();
      clearError('action');
      $('copy-key').focus();
    } catch (e) {
      formError(e.message);
      failed('action', e);
    } finally {
      submit.disabled = false;
    }
    await guard('keys', 'keys-card', loadKeys);
  }

  function selectRawKey() {
    const range = document.createRange();
    range.selectNodeContents($('raw-key'));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  async function copyKey() {
    const text = $('raw-key').textContent;
    const out = $('copy-result');
    try {
      if (!navigator.clipboard || !window.isSecureContext) throw new Error('no clipboard');
      await navigator.clipboard.writeText(text);
      setText(out, 'Copied to the clipboard.');
    } catch (e) {
      selectRawKey();
      let copied = false;
      try {
        copied = document.execCommand('copy');
      } catch (e2) {
        copied = false;
      }
      setText(out, copied ? 'Copied to the clipboard.' : 'The key is selected: press Ctrl+C (⌘C on a Mac) to copy it.');
    }
  }

  function hideKey() {
    setText($('raw-key'), '');
    $('new-key').hidden = true;
    $('key-name').focus();
  }

  /* --- polling ---------------------------------------------------------------------------------------- */

  let tickNo = 0, timer = 0, paused = false, running = null, wantFull = false;

  /* One round of polling; `full` reads the slow sources too. A round asked for while one runs follows it. */
  function tick(full) {
    if (running) {
      if (full) wantFull = true;
      return running;
    }
    clearTimeout(timer);
    running = (async () => {
      const slow = full || tickNo % SLOW_EVERY === 0;
      tickNo++;
      const jobs = [
        guard('services', 'services-card', loadServices),
        guard('metrics', 'traffic-card', loadMetrics),
        guard('breakers', 'breakers-card', loadBreakers),
      ];
      if (slow)
        jobs.push(
          guard('info', 'filters-card', loadInfo),
          guard('keys', 'keys-card', loadKeys),
          guard('config', 'config-card', loadConfig)
        );
      const ok = await Promise.all(jobs);
      const now = new Date().toLocaleTimeString();
      if (ok.some(Boolean)) setText($('refreshed'), (paused ? 'Paused · updated ' : 'Updated ') + now);
      else setText($('refreshed'), (paused ? 'Paused · ' : '') + 'Refresh failed at ' + now);
    })().finally(() => {
      running = null;
      if (wantFull) {
        wantFull = false;
        tick(true);
      } else {
        schedule();
      }
    });
    return running;
  }

  function schedule() {
    clearTimeout(timer);
    if (paused) return;
    const wait = Math.max(REFRESH_MS, holdUntil - Date.now());
    timer = setTimeout(() => {
      if (document.hidden) schedule(); /* nobody looks: ask again when the tab is visible */
      else tick(false);
    }, wait);
  }

  function setPaused(p) {
    paused = p;
    const b = $('pause');
    b.setAttribute('aria-pressed', String(p));
    setText(b, p ? 'Resume' : 'Pause');
    const r = $('refreshed');
    if (p) {
      clearTimeout(timer);
      if (!/^Paused/.test(r.textContent)) setText(r, 'Paused · ' + r.textContent.replace(/^Updated/, 'updated'));
    } else {
      tick(false);
    }
  }

  /* --- wiring ----------------------------------------------------------------------------------------- */

  function start() {
    $('pause').addEventListener('click', () => setPaused(!paused));
    $('refresh-now').addEventListener('click', () => tick(true));
    $('error-dismiss').addEventListener('click', () => {
      errors.clear();
      renderErrors();
    });
    $('show-endpoints').addEventListener('change', renderTraffic);
    $('reset-all').addEventListener('click', (ev) => resetBreaker(ev.currentTarget, null));
    $('breakers').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-action="reset"]');
      if (b) resetBreaker(b, b.dataset.name);
    });
    $('keys').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-action]');
      if (b) keyAction(b, b.dataset.action, b.dataset.id);
    });
    $('key-form').addEventListener('submit', createKey);
    $('copy-key').addEventListener('click', copyKey);
    $('hide-key').addEventListener('click', hideKey);
    $('reload').addEventListener('click', (ev) => reload(ev.currentTarget));
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && !paused) tick(false);
    });
    tick(true);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
