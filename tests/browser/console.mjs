// console.mjs - drives Debian's chromium headless (playwright-core) through the admin console of a running
// gateway, as an operator would: logs in with Basic auth, checks the services, breakers and API keys on the
// page, creates a key (raw key shown once), revokes it, trips a breaker by stopping an upstream and sees the
// state change without reloading the page, resets it, and looks at the page on a phone-sized screen.
// Started by tests/integration/test_console_browser.py, which runs the gateway and the upstreams.
//
// Environment: GW_URL (http://127.0.0.1:PORT), GW_USER, GW_PASSWORD, OUT_DIR (screenshots),
// TRIP_PID (an upstream process to stop), TRIP_SERVICE and TRIP_PATH (its service and a path routed to
// it), KEY_PATH (a path of the other service), SEED_KEY (a key name created before the page loads), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT (optional: also save the 1280x800 overview there, for docs/).
// Prints one JSON line {"ok": true, "steps": [...]} and exits 0, or {"ok": false, "error": ...} and 1.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (k, d) => process.env[k] ?? d;
const URL0 = env('GW_URL');
const USER = env('GW_USER', 'admin');
const PASSWORD = env('GW_PASSWORD');
const OUT = env('OUT_DIR', '.');
const TRIP_PID = parseInt(env('TRIP_PID', '0'), 10);
const TRIP_SERVICE = env('TRIP_SERVICE', 'user-service');
const TRIP_PATH = env('TRIP_PATH', '/api/users/1');
const SEED_KEY = env('SEED_KEY', 'seed-key');
const KEY_PATH = env('KEY_PATH', '/api/auth/me'); // a path of the service that stays up
const WAIT = 20000; // ms for anything the page shows after a refresh (3 s by default)

const steps = [];
const step = (what, detail) => steps.push(detail === undefined ? what : `${what}: ${detail}`);
const fail = (msg) => {
  throw new Error(msg);
};
const basic = 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64');

async function call(path, opts = {}) {
  const r = await fetch(URL0 + path, { ...opts, signal: AbortSignal.timeout(10000) });
  const text = await r.text();
  return { status: r.status, text };
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    // 1. without credentials: 401 for the page and its assets
    // (a browser page with no credentials to offer cancels the Basic challenge: ask with the context's
    // request API, which shows the answer as it is)
    const anon = await browser.newContext();
    for (const p of ['/admin/console', '/admin/console/app.js', '/admin/console/app.css']) {
      const r = await anon.request.get(URL0 + p);
      if (r.status() !== 401) fail(`${p} without credentials: ${r.status()}, not 401`);
      if (!/^Basic /.test(r.headers()['www-authenticate'] || '')) fail(`${p}: no Basic challenge`);
    }
    step('401 without credentials for the page, app.js and app.css');
    await anon.close();

    // 2. logged in, 1280x800
    const ctx = await browser.newContext({
      httpCredentials: { username: USER, password: PASSWORD },
      viewport: { width: 1280, height: 800 },
    });
    const page = await ctx.newPage();
    const problems = []; // console errors and page errors, with what allows some of them
    let killedAt = 0;
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() !== 'error' && m.type() !== 'warning') return;
      const where = m.location().url || '';
      // Chrome logs every non-2xx fetch. /services/health is 503 by contract while a service has no
      // healthy target, which is the case once the test stopped one: the page shows it, it is no error.
      if (killedAt && /status of 503/.test(m.text()) && where.endsWith('/services/health')) return;
      problems.push(`console ${m.type()}: ${m.text()} (${where})`);
    });
    let navigations = 0;
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) navigations++;
    });
    const resp = await page.goto(URL0 + '/admin/console');
    if (resp.status() !== 200) fail(`/admin/console: ${resp.status()}`);
    const csp = resp.headers()['content-security-policy'] || '';
    if (!/default-src 'none'/.test(csp) || /unsafe-inline|unsafe-eval/.test(csp)) fail(`CSP: ${csp}`);
    step('page 200 with a strict CSP', csp);

    for (const s of ['auth-service', 'user-service']) {
      await page.waitForSelector(`#services .service[data-name="${s}"]`, { timeout: WAIT });
      await page.waitForSelector(`#breakers tr[data-name="${s}"][data-state="closed"]`, { timeout: WAIT });
    }
    step('both services and their closed breakers shown');
    await page.waitForSelector(`#keys tr[data-name="${SEED_KEY}"]`, { timeout: WAIT });
    step('key list shows', SEED_KEY);
    await page.waitForFunction(() => document.querySelectorAll('#filters tr').length >= 9,
      null, { timeout: WAIT });
    step('filters listed');
    // one more refresh, so rates and charts have two points (for docs/, a few more, under traffic)
    await page.waitForTimeout(process.env.SCREENSHOT ? 24000 : 3500);
    await page.screenshot({ path: join(OUT, '01-overview-1280x800.png') });
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });

    // 3. create a key: raw key shown once
    await page.fill('#key-name', 'browser-key');
    await page.click('#key-create');
    await page.waitForFunction(() => /^gw_/.test(document.getElementById('raw-key')?.textContent || ''),
      null, { timeout: WAIT });
    const raw = (await page.textContent('#raw-key')).trim();
    await page.waitForSelector('#keys tr[data-name="browser-key"][data-status="active"]', { timeout: WAIT });
    let r = await call(KEY_PATH, { headers: { 'X-API-Key': raw } });
    if (r.status === 401) fail(`the new key is refused: ${r.text}`);
    step('key created, raw key shown', `${raw.slice(0, 6)}..., accepted by the gateway (${r.status})`);
    await page.screenshot({ path: join(OUT, '02-key-created.png') });

    // 4. revoke it
    await page.click('#keys tr[data-name="browser-key"] button[data-action="revoke"]');
    await page.waitForSelector('#keys tr[data-name="browser-key"][data-status="revoked"]', { timeout: WAIT });
    r = await call(KEY_PATH, { headers: { 'X-API-Key': raw } });
    if (r.status !== 401) fail(`the revoked key still gets ${r.status}`);
    step('key revoked, refused with 401');

    // 5. trip a breaker: stop the upstream, send traffic until the breaker answers, watch the page
    const navBefore = navigations;
    if (!TRIP_PID) fail('TRIP_PID not set');
    process.kill(TRIP_PID, 'SIGTERM');
    killedAt = Date.now();
    let opened = false;
    for (let i = 0; i < 40 && !opened; i++) {
      r = await call(TRIP_PATH);
      opened = r.status === 503 && /Circuit breaker is open/.test(r.text);
    }
    if (!opened) fail(`the ${TRIP_SERVICE} breaker did not open: last answer ${r.status} ${r.text}`);
    await page.waitForSelector(`#breakers tr[data-name="${TRIP_SERVICE}"][data-state="open"]`,
      { timeout: WAIT });
    if (navigations !== navBefore) fail('the page was reloaded to show the change');
    const shown = await page.textContent(`#breakers tr[data-name="${TRIP_SERVICE}"] .state`);
    step('breaker open on the page without a reload', shown.trim());
    await page.screenshot({ path: join(OUT, '03-breaker-open.png') });

    // 6. reset it from the page
    await page.click(`#breakers tr[data-name="${TRIP_SERVICE}"] button[data-action="reset"]`);
    await page.waitForSelector(`#breakers tr[data-name="${TRIP_SERVICE}"][data-state="closed"]`,
      { timeout: WAIT });
    // the outcome is shown where the operator is looking, however far down the page the button was
    await page.waitForSelector('#notice:not([hidden])', { timeout: WAIT });
    const box = await page.locator('#notice').boundingBox();
    if (!box || box.y < 0 || box.y > 800) fail(`the reset notice is off screen (${JSON.stringify(box)})`);
    r = await call('/admin/circuit-breakers', { headers: { Authorization: basic } });
    const b = JSON.parse(r.text).data.find((x) => x.name === TRIP_SERVICE);
    if (!b || b.state !== 'closed') fail(`after reset the API says ${r.text}`);
    step('breaker reset from the page', 'closed');

    // 7. the raw key is gone after a reload of the page
    await page.reload();
    await page.waitForSelector(`#keys tr[data-name="browser-key"]`, { timeout: WAIT });
    if ((await page.content()).includes(raw)) fail('the raw key is still on the page after a reload');
    step('raw key shown once');

    // 8. keyboard: Tab reaches the key form
    await page.focus('body');
    let reached = false;
    for (let i = 0; i < 80 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement && document.activeElement.id === 'key-name');
    }
    if (!reached) fail('Tab never reached the key name field');
    step('keyboard reaches the key form');

    // 9. a phone-sized screen: no sideways scrolling
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    if (width > 391) {
      const wide = await page.evaluate(() => [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 391).map((e) => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right) + ' ' + (e.textContent || '').slice(0, 60)).slice(-12).join('\n'));
      fail(`at 390 px the page is ${width} px wide\n${wide}`);
    }
    await page.screenshot({ path: join(OUT, '04-phone-390.png'), fullPage: true });
    step('readable at 390 px', `scrollWidth ${width}`);

    if (problems.length) fail('console errors:\n' + problems.join('\n'));
    step('no console errors');
    await ctx.close();
  } finally {
    await browser.close();
  }
}

main().then(
  () => {
    console.log(JSON.stringify({ ok: true, steps }));
  },
  (e) => {
    console.log(JSON.stringify({ ok: false, error: String(e && e.stack ? e.stack : e), steps }));
    process.exit(1);
  },
);
