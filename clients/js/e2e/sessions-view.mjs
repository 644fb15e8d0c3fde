// End-to-end test of the "Your sessions" component (issue 20) in headless
// Chromium against the REAL sessiongate binary: three sessions with different
// User-Agents (this browser as Chrome on Linux, Safari on iPhone, Firefox on
// Windows), keyboard use, an axe-core check of every state, and screenshots
// of each state at desktop width and at 375 px in e2e/out/ (git-ignored).
//
//   npm run test:e2e            (runs e2e/run.mjs, then this file)
//   SG_BIN=/path/to/sessiongate node e2e/sessions-view.mjs
//
// SG_README_SCREENSHOT=path also writes the small README picture there.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";
import { CHROMIUM, PASSWORD, check, createHarness, here, requirePrerequisites, startSessiongate, startUpstream } from "./lib.mjs";

const outDir = path.join(here, "out");
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const UA = {
  chrome: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  iphone:
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  windows: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
};
// Sent as X-Forwarded-For from a trusted proxy (127.0.0.1), so the rows show real-looking addresses.
const IP = { iphone: "203.0.113.7", windows: "2001:db8:85a3:4c1a:8a2e:370:7334:1f2b" };

requirePrerequisites("e2e (sessions view)", "sessions-view.css");
fs.mkdirSync(outDir, { recursive: true });
const harness = createHarness({
  prefix: "e2e (sessions view)",
  tmpPrefix: "sg-e2e-view-",
  watchdogSeconds: 180,
  summarySuffix: () => `; screenshots in ${path.relative(process.cwd(), outDir) || "."}`,
});
const { tmp, cleanups, step } = harness;

async function main() {
  const { port: upPort } = await startUpstream(harness, { extraTypes: { ".css": "text/css; charset=utf-8" } });
  const { gw, ready } = await startSessiongate(harness, {
    dir: tmp,
    upPort,
    accessTtl: "120s",
    server: ["trusted_proxies: [127.0.0.1/32]"],
  });

  await step("sessiongate starts", ready);

  /** Signs in "another device" with its own User-Agent and address. */
  const device = async (ua, ip) => {
    const res = await fetch(`${gw}/v1/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "User-Agent": ua, "X-Forwarded-For": ip },
      body: JSON.stringify({ username: "alice", password: PASSWORD }),
    });
    check(res.status === 200, `device login: ${res.status}`);
    const body = await res.json();
    return { id: body.session_id, token: body.access_token };
  };
  const whoami = (token) => fetch(`${gw}/api/whoami`, { headers: { Authorization: `Bearer ${token}` } });

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-quic"] });
  cleanups.push(() => browser.close());
  const context = await browser.newContext({ userAgent: UA.chrome, viewport: { width: 1024, height: 800 }, locale: "en-US", timezoneId: "Europe/Berlin" });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));

  // ---- helpers: state checks, axe, screenshots ----
  const rows = () =>
    page.$$eval("#sessions .sg-session", (els) =>
      els.map((el) => ({
        id: el.dataset.sessionId,
        device: el.querySelector(".sg-device").textContent,
        thisDevice: el.querySelector(".sg-this-device") !== null,
        ip: el.querySelector(".sg-ip").textContent,
        created: el.querySelector(".sg-created").textContent,
        active: el.querySelector(".sg-last-active").textContent,
        button: el.querySelector(".sg-revoke").getAttribute("aria-label"),
      })),
    );
  const focused = () => page.evaluate(() => {
    const a = document.activeElement;
    return a ? `${a.tagName.toLowerCase()}.${a.className}|${a.getAttribute("aria-label") ?? a.textContent}` : "none";
  });
  const axe = async (state) => {
    if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: AXE });
    const violations = await page.evaluate(async () => {
      const result = await window.axe.run("#sessions", {
        runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
      });
      return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} -> ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
    });
    check(violations.length === 0, `axe-core, state "${state}":\n    ${violations.join("\n    ")}`);
  };
  const shots = [];
  /** Desktop and 375 px screenshots of the page as it is now, then an axe check. */
  const capture = async (state) => {
    await page.screenshot({ path: path.join(outDir, `sessions-${state}-desktop.png`), fullPage: true });
    await page.setViewportSize({ width: 375, height: 812 });
    await page.screenshot({ path: path.join(outDir, `sessions-${state}-375.png`), fullPage: true });
    await axe(`${state} at 375 px`);
    await page.setViewportSize({ width: 1024, height: 800 });
    await axe(state);
    shots.push(state);
  };

  const phone = await device(UA.iphone, IP.iphone);
  const pc = await device(UA.windows, IP.windows);

  await step("three sessions: this device first, named buttons, dates, short IPv6", async () => {
    await page.goto(`${gw}/app/`);
    await page.waitForFunction(() => window.demo?.ready === true);
    await page.fill("#username", "alice");
    await page.fill("#password", PASSWORD);
    await page.click("#sign-in");
    await page.waitForSelector("#app:not([hidden])");
    check((await page.inputValue("#password")) === "", "the password stays in the form after login");
    check((await page.textContent("#status")) === "Signed in as alice.", `status: ${await page.textContent("#status")}`);
    await page.waitForFunction(() => document.querySelectorAll("#sessions .sg-session").length === 3);
    const list = await rows();
    check(list[0].thisDevice && list[0].device === "Chrome on Linux", `first row: ${JSON.stringify(list[0])}`);
    const names = list.map((r) => r.button);
    check(
      JSON.stringify(names.slice(1).sort()) === JSON.stringify(["Sign out Firefox on Windows", "Sign out Safari on iPhone"]) &&
        names[0] === "Sign out of this device",
      `buttons: ${names}`,
    );
    for (const name of ["Sign out Safari on iPhone", "Sign out Firefox on Windows", "Sign out of this device"]) {
      check((await page.getByRole("button", { name, exact: true }).count()) === 1, `no single button named "${name}"`);
    }
    const win = list.find((r) => r.id === pc.id);
    check(win.ip === "2001:db8:85a3:4c1a:…", `IPv6 in the row: ${win.ip}`);
    check(/^Signed in [A-Z][a-z]{2} \d{1,2}$/.test(win.created), `created: ${win.created}`);
    check(list.every((r) => r.active === "Last active just now"), `active: ${list.map((r) => r.active)}`);
    await capture("list");
  });

  await step("Details by keyboard: the full User-Agent and address", async () => {
    const summary = `#sessions .sg-session[data-session-id="${pc.id}"] summary`;
    await page.focus(summary);
    await page.keyboard.press("Enter");
    const open = await page.$eval(`#sessions .sg-session[data-session-id="${pc.id}"] details`, (d) => d.open);
    check(open, "Enter on the summary did not open Details");
    const ua = await page.textContent(`#sessions .sg-session[data-session-id="${pc.id}"] .sg-detail-user-agent`);
    const ip = await page.textContent(`#sessions .sg-session[data-session-id="${pc.id}"] .sg-detail-ip`);
    check(ua === UA.windows && ip === IP.windows, `details: ${ua} / ${ip}`);
    await capture("details");
    await page.keyboard.press("Enter");
  });

  await step("phone layout: 44 px targets, nothing overlaps the device name", async () => {
    await page.setViewportSize({ width: 375, height: 812 });
    const problems = await page.evaluate(() => {
      const out = [];
      const box = (el) => el.getBoundingClientRect();
      for (const b of document.querySelectorAll("#sessions button:not([hidden]), #sessions summary")) {
        const r = box(b);
        if (r.width > 0 && (r.width < 44 || r.height < 44)) out.push(`${b.className || b.tagName} is ${Math.round(r.width)}x${Math.round(r.height)}`);
      }
      for (const row of document.querySelectorAll("#sessions .sg-session")) {
        const button = box(row.querySelector(".sg-revoke"));
        for (const sel of [".sg-device", ".sg-this-device", ".sg-meta"]) {
          const el = row.querySelector(sel);
          if (el === null) continue;
          const r = box(el);
          const overlap = !(button.right <= r.left || r.right <= button.left || button.bottom <= r.top || r.bottom <= button.top);
          if (overlap) out.push(`the sign-out button covers ${sel}`);
        }
        if (row.scrollWidth > row.clientWidth + 1) out.push("a row scrolls sideways");
      }
      return out;
    });
    await page.setViewportSize({ width: 1024, height: 800 });
    check(problems.length === 0, problems.join("; "));
  });

  await step("keyboard: Enter asks inline, Escape cancels, confirming signs the iPhone out and moves focus to the next row", async () => {
    const rowButton = `#sessions .sg-session[data-session-id="${phone.id}"] .sg-revoke`;
    await page.focus(rowButton);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#sessions .sg-confirm");
    check((await focused()).startsWith("button.sg-confirm-yes"), `focus after opening: ${await focused()}`);
    const question = await page.textContent("#sessions .sg-confirm-question");
    check(question.startsWith("Sign out Safari on iPhone?"), `question: ${question}`);
    await capture("confirm-row");
    await page.keyboard.press("Escape");
    check((await page.$("#sessions .sg-confirm")) === null, "Escape did not close the question");
    check((await focused()).includes("Sign out Safari on iPhone"), `focus after Escape: ${await focused()}`);
    check((await whoami(phone.token)).status === 200, "the iPhone was signed out without confirmation");

    // Hold the DELETE to see "Signing out…" on the row.
    let release;
    const held = new Promise((r) => (release = r));
    await page.route(`**/v1/auth/sessions/${phone.id}`, async (route) => {
      await held;
      await route.continue();
    });
    await page.keyboard.press("Enter");
    await page.keyboard.press("Enter"); // focus is on the confirming "Sign out"
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "Signing out…", rowButton);
    await capture("signing-out");
    release();
    await page.waitForFunction((id) => !document.querySelector(`#sessions .sg-session[data-session-id="${id}"]`), phone.id);
    await page.unroute(`**/v1/auth/sessions/${phone.id}`);
    const status = await page.textContent("#sessions .sg-status");
    check(status === "Signed out Safari on iPhone.", `status: ${status}`);
    check((await focused()).includes("Sign out Firefox on Windows"), `focus after the revoke: ${await focused()}`);
    const res = await whoami(phone.token);
    check(res.status === 401 && (await res.json()).error === "session_revoked", `the iPhone's token still answers ${res.status}`);
  });

  await step("sign out everywhere: the stronger warning", async () => {
    await page.click("#sessions .sg-revoke-all");
    await page.waitForSelector("#sessions .sg-confirm.sg-confirm-danger");
    const question = await page.textContent("#sessions .sg-confirm-question");
    check(/this one included/.test(question), `question: ${question}`);
    await capture("confirm-everywhere");
    await page.click("#sessions .sg-confirm-cancel");
    check((await focused()).startsWith("button.sg-revoke-all"), `focus after Cancel: ${await focused()}`);
  });

  await step("loading skeleton and an offline error with Try again", async () => {
    let release;
    const held = new Promise((r) => (release = r));
    await page.route("**/v1/auth/sessions", async (route) => {
      await held;
      await route.abort("internetdisconnected");
    });
    // A fresh mount shows the skeleton.
    await page.evaluate(() => {
      window.demo.view.destroy();
      window.demo.view = null;
    });
    await page.evaluate(async () => {
      const { mountSessionsView } = await import("./dist/sessions-view.js");
      window.demo.view = mountSessionsView(document.getElementById("sessions"), window.demo.client, { changePasswordUrl: "#change-password" });
    });
    await page.waitForSelector("#sessions .sg-skeleton");
    check((await page.getAttribute("#sessions .sg-sessions", "aria-busy")) === "true", "no aria-busy while loading");
    await capture("loading");
    release();
    await page.waitForSelector("#sessions .sg-error:not([hidden])");
    const text = await page.textContent("#sessions .sg-error-text");
    check(text === "Your sessions couldn't be loaded. You seem to be offline. Check your connection and try again.", `error: ${text}`);
    check((await page.$$("#sessions .sg-session")).length === 0, "a stale list under the error");
    await capture("error");
    await page.unroute("**/v1/auth/sessions");
    await page.click("#sessions .sg-retry");
    await page.waitForFunction(() => document.querySelectorAll("#sessions .sg-session").length === 2);
    check((await focused()).startsWith("h2.sg-title"), `focus after Try again: ${await focused()}`);
  });

  await step("a session signed out elsewhere disappears without a reload; one session left", async () => {
    const res = await fetch(`${gw}/v1/auth/logout`, { method: "POST", headers: { Authorization: `Bearer ${pc.token}` } });
    check(res.status === 204, `logout of the Windows device: ${res.status}`);
    await page.evaluate(() => document.dispatchEvent(new Event("visibilitychange")));
    await page.waitForFunction(() => document.querySelectorAll("#sessions .sg-session").length === 1);
    check(await page.isVisible("#sessions .sg-only-device"), "no \"only signed in on this device\" note");
    check(!(await page.isVisible("#sessions .sg-revoke-all")), "\"Sign out everywhere\" offered with one session");
    await capture("one-session");
  });

  await step("README picture (styled component, three sessions)", async () => {
    const again = [await device(UA.iphone, IP.iphone), await device(UA.windows, IP.windows)];
    check(again.length === 2, "devices");
    await page.evaluate(() => window.demo.view.reload());
    await page.waitForFunction(() => document.querySelectorAll("#sessions .sg-session").length === 3);
    await capture("three-sessions");
    // Without sessions-view.css: still a usable list.
    await page.evaluate(() => (document.querySelector('link[href$="sessions-view.css"]').disabled = true));
    await capture("unstyled");
    await page.evaluate(() => (document.querySelector('link[href$="sessions-view.css"]').disabled = false));
    const target = process.env.SG_README_SCREENSHOT;
    if (target) {
      await page.setViewportSize({ width: 640, height: 900 });
      await page.addStyleTag({ content: "#sessions .sg-activity { display: none }" });
      const box = await page.locator("#sessions .sg-sessions").boundingBox();
      const pad = 12;
      await page.screenshot({ path: target, clip: { x: box.x - pad, y: box.y - pad, width: box.width + 2 * pad, height: box.height + 2 * pad } });
      await page.setViewportSize({ width: 1024, height: 800 });
    }
  });

  await step("this device signs out from its row: the app shows the login form", async () => {
    await page.click('#sessions .sg-revoke[aria-label="Sign out of this device"]');
    const question = await page.textContent("#sessions .sg-confirm-question");
    check(question.startsWith("Sign out of this device?"), `question: ${question}`);
    check(await page.isVisible("#sessions .sg-confirm-danger"), "no stronger warning for this device");
    await page.click("#sessions .sg-confirm-yes");
    await page.waitForSelector("#login:not([hidden])");
    check((await focused()).startsWith("input."), `focus after sign-out: ${await focused()}`);
    check(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
  });
  await step("demo: a sign-out from another device is said so", async () => {
    await page.fill("#username", "alice");
    await page.fill("#password", PASSWORD);
    await page.click("#sign-in");
    await page.waitForSelector("#app:not([hidden])");
    await page.waitForFunction(() => document.querySelectorAll("#sessions .sg-session").length >= 1);
    const mine = await page.evaluate(() => window.demo.client.currentSessionId());
    const other = await device(UA.iphone, IP.iphone);
    const res = await fetch(`${gw}/v1/auth/sessions/${encodeURIComponent(mine)}`, { method: "DELETE", headers: { Authorization: `Bearer ${other.token}` } });
    check(res.status === 204, `revoke from the iPhone: ${res.status}`);
    await page.click("#call");
    await page.waitForSelector("#banner:not([hidden])");
    const banner = await page.textContent("#banner");
    check(banner.startsWith("You were signed out from another device"), `banner: ${banner}`);
    check(await page.isVisible("#login"), "the login form is not shown");
    await page.screenshot({ path: path.join(outDir, "demo-revoked-elsewhere-desktop.png"), fullPage: true });
    check(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
  });
  console.log(`  screenshots: ${shots.map((s) => `sessions-${s}-{desktop,375}.png`).join(", ")}`);
}

harness.run(main);
