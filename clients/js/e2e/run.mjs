// End-to-end test: the built client and the demo page in headless Chromium,
// against the REAL sessiongate binary, with a tiny upstream written here.
//
//   npm run test:e2e            (binary: $SG_BIN, else ../../target/release/sessiongate)
//
// Needs Debian's chromium (/usr/bin/chromium, or $CHROMIUM). Exits non-zero,
// with a message, when the binary or the browser is missing.
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import {
  CHROMIUM,
  PASSWORD,
  check,
  createHarness,
  here,
  requirePrerequisites,
  startSessiongate,
  startUpstream,
  waitFor,
} from "./lib.mjs";

const ACCESS_TTL_S = 5;

requirePrerequisites("e2e", "index.js");
const harness = createHarness({ prefix: "e2e", tmpPrefix: "sg-e2e-", watchdogSeconds: 360 });
const { tmp, cleanups, step } = harness;

// ---- metrics ----

async function metric(adminUrl, name, labels) {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$/.exec(line.trim());
    if (!m || m[1] !== name) continue;
    if (Object.entries(labels).every(([k, v]) => (m[2] ?? "").includes(`${k}="${v}"`))) total += Number(m[3]);
  }
  return total;
}

// ---- main ----

async function main() {
  const { port: upPort } = await startUpstream(harness);
  const { gw, admin, ready } = await startSessiongate(harness, {
    dir: tmp,
    upPort,
    accessTtl: `${ACCESS_TTL_S}s`,
    leeway: "0s",
    sessions: ["reuse_grace: 0s          # strict: any duplicate refresh from the tabs would revoke the session"],
  });

  await step("sessiongate starts and /readyz answers 200", ready);

  const userDataDir = fs.mkdtempSync(path.join(tmp, "chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
    ],
  });
  cleanups.push(() => context.close());
  const pageErrors = [];
  const watch = (page, name) => page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));

  const tabA = context.pages()[0] ?? (await context.newPage());
  watch(tabA, "A");
  const log = (page) => page.evaluate(() => ({ ...window.demo.log, signedIn: window.demo.client.isSignedIn() }));
  const stored = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("sessiongate.session")));

  await step("login through the demo page (same origin, via sessiongate)", async () => {
    await tabA.goto(`${gw}/app/`);
    await tabA.waitForFunction(() => window.demo?.ready === true);
    check(await tabA.isVisible("#login"), "login form not shown");
    await tabA.fill("#username", "alice");
    await tabA.fill("#password", "wrong");
    await tabA.click("#sign-in");
    await tabA.waitForSelector("#banner:not([hidden])");
    check((await tabA.textContent("#banner")).includes("Wrong username or password"), "failed login not reported");
    await tabA.fill("#password", PASSWORD);
    await tabA.click("#sign-in");
    await tabA.waitForSelector("#app:not([hidden])");
    await tabA.click("#call");
    await tabA.waitForFunction(() => document.querySelector("#result").textContent.startsWith("200"));
    const result = await tabA.textContent("#result");
    check(result.includes('"user":"user-alice"'), `whoami: ${result}`);
    check(result.includes("role"), `claims missing: ${result}`);
  });

  await step(`auto-refresh with access_ttl ${ACCESS_TTL_S}s keeps the API working`, async () => {
    const before = await stored(tabA);
    await waitFor("two background refreshes", async () => (await log(tabA)).localRefresh >= 2, 4 * ACCESS_TTL_S * 1000);
    const after = await stored(tabA);
    check(after.accessToken !== before.accessToken, "access token did not change");
    check(after.sessionId === before.sessionId, "session changed");
    await tabA.click("#call");
    await tabA.waitForFunction(() => document.querySelector("#result").textContent.startsWith("200"));
    const l = await log(tabA);
    check(l.ended.length === 0, `session ended: ${l.ended}`);
  });

  const tabB = await context.newPage();
  watch(tabB, "B");

  await step("two tabs refresh at once without triggering reuse detection (reuse_grace 0s)", async () => {
    await tabB.goto(`${gw}/app/`);
    await tabB.waitForFunction(() => window.demo?.ready === true);
    check(await tabB.isVisible("#app"), "tab B did not pick up the session");
    const rotatedBefore = await metric(admin, "sessiongate_refresh_total", { result: "rotated" });
    // Forced refreshes in both tabs at the same moment, several times.
    for (let i = 0; i < 3; i++) {
      await Promise.all([
        tabA.evaluate(() => window.demo.client.refresh()),
        tabB.evaluate(() => window.demo.client.refresh()),
      ]);
    }
    // And both background timers running through two token lifetimes.
    await new Promise((r) => setTimeout(r, 2 * ACCESS_TTL_S * 1000 + 500));
    for (const tab of [tabA, tabB]) {
      await tab.click("#call");
      await tab.waitForFunction(() => /^\d/.test(document.querySelector("#result").textContent));
      const text = await tab.textContent("#result");
      check(text.startsWith("200"), `API call failed: ${text}`);
    }
    const [la, lb] = [await log(tabA), await log(tabB)];
    check(la.ended.length === 0 && lb.ended.length === 0, `session ended: ${la.ended} / ${lb.ended}`);
    check(la.signedIn && lb.signedIn, "a tab got signed out");
    const reused = await metric(admin, "sessiongate_refresh_total", { result: "reused" });
    const grace = await metric(admin, "sessiongate_refresh_total", { result: "grace" });
    const rotated = (await metric(admin, "sessiongate_refresh_total", { result: "rotated" })) - rotatedBefore;
    check(reused === 0, `refresh_token_reused happened ${reused} times`);
    check(grace === 0, `the grace window was needed ${grace} times (tabs raced)`);
    // 3 forced pairs coordinated: 3 to 6 rotations (a tab may refresh right after the other); plus ~2-3 timer cycles.
    check(rotated >= 3 && rotated <= 12, `unexpected number of rotations: ${rotated}`);
    console.log(`  rotations: ${rotated}, tab A refresh events: ${la.refresh} (own ${la.localRefresh}), tab B: ${lb.refresh} (own ${lb.localRefresh})`);
  });

  const hostileUA = '<img src=x onerror="window.__xss=1">Evil/1.0 (X11; Linux x86_64)';
  await step("sessions component lists sessions (hostile User-Agent escaped) and revokes another one", async () => {
    const res = await fetch(`${gw}/v1/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "User-Agent": hostileUA },
      body: JSON.stringify({ username: "alice", password: PASSWORD }),
    });
    check(res.status === 200, `second login: ${res.status}`);
    const other = await res.json();
    const whoami = () => fetch(`${gw}/api/whoami`, { headers: { Authorization: `Bearer ${other.access_token}` } });
    check((await whoami()).status === 200, "other device's token does not work");

    await tabA.evaluate(() => window.demo.view.reload());
    await tabA.waitForFunction(() => document.querySelectorAll("#sessions .sg-session").length === 2);
    const rows = await tabA.$$eval("#sessions .sg-session", (els) =>
      els.map((el) => ({
        id: el.dataset.sessionId,
        current: el.classList.contains("sg-current"),
        device: el.querySelector(".sg-device").textContent,
        title: el.querySelector(".sg-device").title,
        thisDevice: el.querySelector(".sg-this-device")?.textContent ?? null,
        meta: el.querySelector(".sg-meta").textContent,
      })),
    );
    const mine = rows.find((r) => r.current);
    const theirs = rows.find((r) => r.id === other.session_id);
    check(mine && mine.thisDevice === "This device", `current row: ${JSON.stringify(rows)}`);
    check(mine.device.includes("Chrome") && mine.device.includes("Linux"), `device: ${mine.device}`);
    check(/127\.0\.0\.1/.test(mine.meta) && /active/.test(mine.meta), `meta: ${mine.meta}`);
    check(theirs && !theirs.current, `other row missing: ${JSON.stringify(rows)}`);
    check(theirs.title === hostileUA, "full user agent not kept as plain text");
    check((await tabA.$$("#sessions img")).length === 0, "user agent was parsed as HTML");
    check((await tabA.evaluate(() => window.__xss)) === undefined, "XSS payload ran");

    await tabA.click(`#sessions .sg-session[data-session-id="${other.session_id}"] .sg-revoke`);
    await tabA.click("#sessions .sg-confirm-yes"); // the inline confirmation (issue 20)
    await tabA.waitForFunction(() => document.querySelectorAll("#sessions .sg-session").length === 1);
    const status = await tabA.textContent("#sessions .sg-status");
    check(/Signed out/.test(status), `status: ${status}`);
    const after = await whoami();
    const body = await after.json();
    check(after.status === 401 && body.error === "session_revoked", `revoked token still answers ${after.status} ${JSON.stringify(body)}`);
    check((await log(tabA)).signedIn, "revoking another session signed this tab out");
  });

  await step("sessions component shows recent security activity (SPEC 4.8) from the real server", async () => {
    // The revoke above reloaded the component: its sign-out is the newest event.
    await tabA.waitForFunction(() => document.querySelector("#sessions .sg-activity .sg-event-text")?.textContent === "Signed out");
    const events = await tabA.$$eval("#sessions .sg-activity .sg-event", (els) =>
      els.map((el) => ({
        type: el.dataset.eventType,
        text: el.querySelector(".sg-event-text").textContent,
        thisDevice: el.querySelector(".sg-this-device")?.textContent ?? null,
        device: el.querySelector(".sg-device").textContent,
        title: el.querySelector(".sg-device").title,
        meta: el.querySelector(".sg-meta").textContent,
      })),
    );
    const heading = await tabA.textContent("#sessions .sg-activity-title");
    check(heading === "Recent security activity", `heading: ${heading}`);
    const logins = events.filter((e) => e.type === "login");
    check(logins.length === 2, `expected 2 login events: ${JSON.stringify(events)}`);
    const mine = logins.find((e) => e.thisDevice === "This device");
    check(mine && mine.text === "New sign-in" && mine.device.includes("Chrome"), `own login: ${JSON.stringify(events)}`);
    check(/127\.0\.0\.1/.test(mine.meta), `own login meta: ${mine.meta}`);
    const theirs = logins.find((e) => e.thisDevice === null);
    check(theirs && theirs.title === hostileUA, `other login: ${JSON.stringify(events)}`);
    check(events[0].type === "session_revoked" && events[0].thisDevice === null, `newest: ${JSON.stringify(events[0])}`);
    check((await tabA.$$("#sessions img")).length === 0, "user agent was parsed as HTML");
    check((await tabA.evaluate(() => window.__xss)) === undefined, "XSS payload ran");
    if (process.env.E2E_SCREENSHOT) await tabA.screenshot({ path: process.env.E2E_SCREENSHOT, fullPage: true });
  });

  await step("sign out everywhere logs both tabs out and revokes the tokens", async () => {
    // With one session left the component offers no "Sign out everywhere" (issue 20): sign in a second device.
    const second = await fetch(`${gw}/v1/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: "alice", password: PASSWORD }),
    });
    check(second.status === 200, `second device login: ${second.status}`);
    await tabA.evaluate(() => window.demo.view.reload());
    await tabA.waitForSelector("#sessions .sg-revoke-all:not([hidden])");
    await tabA.evaluate(() => window.demo.client.refresh()); // a fresh token, so it is still unexpired when checked below
    const token = (await stored(tabA)).accessToken;
    // Tab B keeps calling the API, as a busy app does: a call that reaches the
    // server after the revocation, before tab A's "ended" signal reaches tab B,
    // must still be reported as this sign-out (logged_out), not a revocation.
    await tabB.evaluate(() => {
      window.__poll = setInterval(() => void window.demo.client.fetch("/api/whoami").catch(() => undefined), 2);
    });
    await tabA.click("#sessions .sg-revoke-all");
    await tabA.click("#sessions .sg-confirm-yes");
    await tabA.waitForSelector("#login:not([hidden])");
    await waitFor("tab B to be signed out", async () => !(await log(tabB)).signedIn, 5000);
    await tabB.evaluate(() => clearInterval(window.__poll));
    check(await tabB.isVisible("#login"), "tab B still shows the app");
    const endedB = (await log(tabB)).ended;
    check(endedB.join() === "logged_out", `tab B's sessionended reasons: ${endedB.join() || "none"}`);
    check(!(await log(tabA)).ended.length, "tab A reported an unexpected session end");
    check((await tabA.evaluate(() => localStorage.getItem("sessiongate.session"))) === null, "tokens left in storage");
    const res = await fetch(`${gw}/api/whoami`, { headers: { Authorization: `Bearer ${token}` } });
    check(res.status === 401 && (await res.json()).error === "session_revoked", `old token: ${res.status}`);
    check(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
  });
}

// ---- issue 18: cookie mode and a restored tab (own sessiongate instances, own browser) ----

const OUT_DIR = path.join(here, "out");
const KEY = "sessiongate.session";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts one more sessiongate with its own key, store and ports; `sessions` are the lines of its `sessions:` block. */
async function startGateway(name, upPort, sessions) {
  const dir = fs.mkdtempSync(path.join(tmp, `${name}-`));
  const gateway = await startSessiongate(harness, { dir, name, upPort, accessTtl: `${ACCESS_TTL_S}s`, leeway: "0s", sessions });
  await gateway.ready();
  return gateway;
}

async function openDemo(context, url, errors, name) {
  const page = await context.newPage();
  page.on("pageerror", (err) => errors.push(`${name}: ${err.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.demo?.ready === true);
  return page;
}

async function signIn(page) {
  await page.fill("#username", "alice");
  await page.fill("#password", PASSWORD);
  await page.click("#sign-in");
  await page.waitForSelector("#app:not([hidden])");
}

const demoLog = (page) => page.evaluate(() => ({ ...window.demo.log, signedIn: window.demo.client.isSignedIn() }));

async function shot(page, file) {
  await page.screenshot({ path: path.join(OUT_DIR, file), fullPage: true });
}

async function issue18Scenarios() {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const { port: upPort } = await startUpstream(harness);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic"],
  });
  cleanups.push(() => browser.close());
  await cookieModeScenario(browser, upPort);
  await restoredTabScenario(browser, upPort);
}

/** Cookie mode (HttpOnly refresh cookie): forced 401 -> refresh -> retry, the real session_expired, logout. */
async function cookieModeScenario(browser, upPort) {
  const ABSOLUTE_S = 25;
  const { gw, admin } = await startGateway(
    "cookie",
    upPort,
    [
      "reuse_grace: 0s",
      `absolute_lifetime: ${ABSOLUTE_S}s`,
      "refresh_cookie: { name: sg_refresh, path: /v1/auth, secure: false, same_site: Strict }",
    ],
  );
  const context = await browser.newContext();
  cleanups.push(() => context.close());
  const errors = [];
  const url = `${gw}/app/?cookie`;
  const page = await openDemo(context, url, errors, "cookie");
  let signedInAt = 0;

  await step("cookie mode: login keeps the refresh token out of JavaScript (screenshot)", async () => {
    await signIn(page);
    signedInAt = Date.now();
    const state = await page.evaluate((key) => JSON.parse(localStorage.getItem(key)), KEY);
    check(state.refreshToken === null, "a refresh token is in localStorage");
    check(!(await page.evaluate(() => document.cookie)).includes("sg_refresh"), "the refresh cookie is readable from JavaScript");
    const cookie = (await context.cookies(`${gw}/v1/auth/refresh`)).find((c) => c.name === "sg_refresh");
    check(cookie && cookie.httpOnly, `refresh cookie: ${JSON.stringify(cookie && { ...cookie, value: "…" })}`);
    await page.waitForSelector("#sessions .sg-session");
    await shot(page, "cookie-signed-in.png");
  });

  await step("cookie mode: a 401 token_expired from the server is refreshed with the cookie and retried", async () => {
    // The client's clock says the token is good for an hour; the server's says it expired.
    await page.evaluate((key) => {
      window.demo.client.close(); // no background refresh: the first call must meet the 401
      const state = JSON.parse(localStorage.getItem(key));
      localStorage.setItem(key, JSON.stringify({ ...state, expiresAt: Date.now() + 3_600_000 }));
    }, KEY);
    await sleep((ACCESS_TTL_S + 1) * 1000);
    const seen = [];
    page.on("response", (r) => {
      const p = new URL(r.url()).pathname;
      if (p === "/api/whoami" || p === "/v1/auth/refresh") seen.push(`${r.request().method()} ${p} ${r.status()}`);
    });
    const rotatedBefore = await metric(admin, "sessiongate_refresh_total", { result: "rotated" });
    const result = await page.evaluate(async () => {
      const res = await window.demo.client.fetch("/api/whoami");
      return `${res.status} ${await res.text()}`;
    });
    check(result.startsWith("200") && result.includes("user-alice"), `call: ${result}`);
    check(
      JSON.stringify(seen) === JSON.stringify(["GET /api/whoami 401", "POST /v1/auth/refresh 200", "GET /api/whoami 200"]),
      `requests: ${seen.join(", ")}`,
    );
    check((await metric(admin, "sessiongate_refresh_total", { result: "rotated" })) === rotatedBefore + 1, "not exactly one rotation");
  });

  await step("cookie mode: the server's session_expired reaches the user as its message (screenshot)", async () => {
    await page.goto(url); // a fresh client on the same session (localStorage + cookie)
    await page.waitForFunction(() => window.demo?.ready === true);
    check(await page.isVisible("#app"), "the reload did not resume the session");
    const left = signedInAt + ABSOLUTE_S * 1000 - Date.now();
    await page.waitForSelector("#banner:not([hidden])", { timeout: left + 3 * ACCESS_TTL_S * 1000 });
    const banner = await page.textContent("#banner");
    check(banner === "Your session has expired. Please sign in again.", `banner: ${banner}`);
    check(await page.isVisible("#login"), "the login form is not shown");
    check((await demoLog(page)).ended.includes("session_expired"), "no session_expired event");
    await shot(page, "cookie-session-expired.png");
  });

  await step("cookie mode: logout reports whether the server ended the session; a failed one is finished on reload", async () => {
    await signIn(page);
    check(await page.evaluate(() => window.demo.client.logout()), "logout() said the server did not end the session");
    check(!(await context.cookies(`${gw}/v1/auth/refresh`)).some((c) => c.name === "sg_refresh"), "the refresh cookie survived the logout");

    await signIn(page);
    const token = await page.evaluate((key) => JSON.parse(localStorage.getItem(key)).accessToken, KEY);
    await context.setOffline(true);
    const ended = await page.evaluate(() => window.demo.client.logout());
    await context.setOffline(false);
    check(ended === false, "logout() claimed success while offline");
    check((await context.cookies(`${gw}/v1/auth/refresh`)).some((c) => c.name === "sg_refresh"), "setup: the cookie should still be there");
    await page.goto(url);
    await page.waitForFunction(() => window.demo?.ready === true);
    check(await page.isVisible("#login"), "the reload resumed the session the user signed out of");
    const res = await fetch(`${gw}/api/whoami`, { headers: { Authorization: `Bearer ${token}` } });
    check(res.status === 401 && (await res.json()).error === "session_revoked", `the old session still works: ${res.status}`);
    check(errors.length === 0, `page errors: ${errors.join("; ")}`);
  });
}

/**
 * A tab restored from per-tab storage (sessionStorage, as after Memory Saver
 * discarded it) with tokens other tabs have rotated since: it must not spend
 * them (reuse_grace 0s would revoke the session in every tab).
 */
async function restoredTabScenario(browser, upPort) {
  const { gw, admin } = await startGateway("restored", upPort, ["reuse_grace: 0s"]);
  const context = await browser.newContext();
  cleanups.push(() => context.close());
  const errors = [];
  const url = `${gw}/app/?storage=session`;

  await step("restored tab: an outdated per-tab copy of the tokens is never spent (screenshot)", async () => {
    const tabA = await openDemo(context, url, errors, "A");
    await signIn(tabA);
    const snapshot = await tabA.evaluate((key) => sessionStorage.getItem(key), KEY);
    // Tab A refreshes in the background while the other tab is discarded,
    // until its 10 s "rotated" marker for the snapshot's tokens is gone.
    await waitFor("four refreshes in tab A", async () => (await demoLog(tabA)).localRefresh >= 4, 6 * ACCESS_TTL_S * 1000);
    const restored = await context.newPage();
    restored.on("pageerror", (err) => errors.push(`restored: ${err.message}`));
    await restored.addInitScript(([key, value]) => {
      if (!sessionStorage.getItem("e2e.restored")) {
        sessionStorage.setItem(key, value);
        sessionStorage.setItem("e2e.restored", "1");
      }
    }, [KEY, snapshot]);
    await restored.goto(url);
    await restored.waitForFunction(() => window.demo?.ready === true);
    await restored.waitForSelector("#banner:not([hidden])");
    const banner = await restored.textContent("#banner");
    check(banner === "Your session continued in another tab. Please sign in again here.", `banner: ${banner}`);
    check((await demoLog(restored)).ended.join() === "superseded", `ended: ${(await demoLog(restored)).ended}`);
    await shot(restored, "restored-tab.png");
    const reused = await metric(admin, "sessiongate_refresh_total", { result: "reused" });
    check(reused === 0, `the restored tab presented a spent refresh token (${reused})`);
    await tabA.click("#call");
    await tabA.waitForFunction(() => /^\d/.test(document.querySelector("#result").textContent));
    check((await tabA.textContent("#result")).startsWith("200"), "tab A lost its session");
    check((await demoLog(tabA)).ended.length === 0, "tab A saw its session end");
    await shot(tabA, "restored-tab-other-tab.png");
    check(errors.length === 0, `page errors: ${errors.join("; ")}`);
  });
}

harness.run(() => main().then(() => issue18Scenarios()));
