// The "Your sessions" component (issue 20) in a real DOM (happy-dom), driven
// through a real client against the test server, with three sessions of
// different User-Agents. Faults (offline, 429, 503, a slow answer) are
// injected in the client's fetch, in front of the real server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mountSessionsView } from "../dist/sessions-view.js";
import { setup } from "./helpers/server.mjs";
import { domRoot, until } from "./helpers/dom.mjs";

const UA = {
  chrome: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  iphone:
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  windows: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
};
const NOW = Date.parse("2026-11-20T12:00:00Z");
const LOCAL = { locale: "en-US", timeZone: "UTC", now: () => NOW };

/**
 * A fetch that sends `ua` as User-Agent and lets a test answer or hold
 * requests first: `faults.on(method, path)` returns a Response, throws, or
 * returns a promise to wait for before the real call.
 */
function faultyFetch(ua, faults) {
  return async (input, init) => {
    const req = new Request(input, init);
    req.headers.set("user-agent", ua);
    const url = new URL(req.url);
    const fault = faults.on?.(req.method, url.pathname);
    if (fault instanceof Response) return fault;
    if (fault instanceof Error) throw fault;
    if (fault && typeof fault.then === "function") await fault;
    return fetch(req);
  };
}

const errorResponse = (status, code, headers = {}) =>
  new Response(JSON.stringify({ error: code, message: "raw server message" }), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });

/**
 * This browser (Chrome on Linux, signed in first, so the server lists it last),
 * then an iPhone and a Windows PC; dates set on the server.
 */
async function threeSessions(t) {
  const { server, make } = await setup(t);
  const faults = {};
  const signIn = async (ua) => {
    const { client } = make({ channelName: null, fetch: faultyFetch(ua, faults) });
    const { sessionId } = await client.login({ username: "alice", password: "pw" });
    return { client, id: sessionId };
  };
  const me = await signIn(UA.chrome);
  const phone = await signIn(UA.iphone);
  const pc = await signIn(UA.windows);
  const set = (id, created, active) => Object.assign(server.sessions.get(id), { createdAt: created, lastActiveAt: active });
  // This device was not the last one active: it still comes first.
  set(me.id, "2026-11-19T09:00:00Z", new Date(NOW - 5 * 3600_000).toISOString());
  set(phone.id, "2026-10-01T08:30:00Z", new Date(NOW - 3 * 3600_000).toISOString());
  set(pc.id, "2025-12-24T18:00:00Z", "2026-10-11T07:00:00Z");
  return { server, faults, client: me.client, ids: { me: me.id, phone: phone.id, pc: pc.id } };
}

async function mount(t, client, options = {}) {
  const { root, window, document } = domRoot(t);
  const view = mountSessionsView(root, client, { activity: false, ...LOCAL, ...options });
  t.after(() => view.destroy());
  await view.reload();
  return { root, view, window, document };
}

const $ = (root, selector) => root.querySelector(selector);
const rowOf = (root, id) => $(root, `.sg-session[data-session-id="${id}"]`);
const ids = (root) => [...root.querySelectorAll(".sg-session")].map((li) => li.dataset.sessionId);
const count = (server, method, prefix) => server.requests.filter((r) => r.method === method && r.path.startsWith(prefix)).length;
const escape = (window, target) => target.dispatchEvent(new window.KeyboardEvent("keydown", { key: "Escape", bubbles: true }));

// Proves: this device comes first, each row says when it signed in and was last active (local dates), and buttons carry the device's name.
test("rows: this device first, dates, named buttons, details disclosure", async (t) => {
  const { client, ids: id } = await threeSessions(t);
  const { root } = await mount(t, client);

  assert.deepEqual(ids(root), [id.me, id.phone, id.pc]);
  const text = (sessionId, selector) => $(rowOf(root, sessionId), selector)?.textContent ?? null;
  assert.deepEqual([id.me, id.phone, id.pc].map((s) => text(s, ".sg-device")), ["Chrome on Linux", "Safari on iPhone", "Firefox on Windows"]);
  assert.deepEqual([id.me, id.phone, id.pc].map((s) => text(s, ".sg-this-device")), ["This device", null, null]);
  assert.deepEqual([id.me, id.phone, id.pc].map((s) => text(s, ".sg-created")), ["Signed in Nov 19", "Signed in Oct 1", "Signed in Dec 24, 2025"]);
  assert.deepEqual(
    [id.me, id.phone, id.pc].map((s) => text(s, ".sg-last-active")),
    ["Last active 5 hours ago", "Last active 3 hours ago", "Last active Oct 11"],
  );
  assert.equal($(rowOf(root, id.phone), ".sg-created").title, "Oct 1, 2026, 8:30 AM", "hover text is a local date, not raw UTC");
  assert.deepEqual(
    [...root.querySelectorAll(".sg-revoke")].map((b) => [b.textContent, b.getAttribute("aria-label")]),
    [["Sign out", "Sign out of this device"], ["Sign out", "Sign out Safari on iPhone"], ["Sign out", "Sign out Firefox on Windows"]],
  );
  assert.deepEqual([...root.querySelectorAll(".sg-device-icon")].map((i) => i.dataset.deviceType), ["desktop", "phone", "desktop"]);
  // Details: a <details> (keyboard and touch), with the full User-Agent and local dates.
  const details = $(rowOf(root, id.phone), "details.sg-details");
  assert.equal(details.open, false);
  assert.equal($(details, "summary").getAttribute("aria-label"), "Details: Safari on iPhone");
  assert.equal($(details, ".sg-detail-user-agent").textContent, UA.iphone);
  assert.equal($(details, ".sg-detail-created").textContent, "Oct 1, 2026, 8:30 AM");
  // The section is named by its heading.
  const section = $(root, "section.sg-sessions");
  assert.equal(root.ownerDocument.getElementById(section.getAttribute("aria-labelledby")).textContent, "Your sessions");
  assert.equal(section.getAttribute("aria-busy"), "false");
});

// Proves: a row's sign-out asks inline first; Escape and Cancel send nothing and give focus back; confirming revokes once and focus moves to the next row.
test("keyboard: confirm inline, cancel with Escape or Cancel, focus after revoke", async (t) => {
  const { server, client, ids: id } = await threeSessions(t);
  const { root, window, document } = await mount(t, client);
  const deletes = () => count(server, "DELETE", "/v1/auth/sessions/");
  const rowButton = () => $(rowOf(root, id.phone), ".sg-revoke");

  rowButton().focus();
  rowButton().click();
  const box = $(rowOf(root, id.phone), ".sg-confirm");
  assert.ok(box, "the question appears inside the row");
  assert.equal($(box, ".sg-confirm-question").textContent, "Sign out Safari on iPhone? Whoever uses it will have to sign in again.");
  assert.equal(document.activeElement, $(box, ".sg-confirm-yes"), "focus on the confirming button");
  assert.equal(rowButton().getAttribute("aria-expanded"), "true");
  assert.equal(deletes(), 0, "nothing is signed out before the confirmation");

  escape(window, document.activeElement);
  assert.equal($(root, ".sg-confirm"), null);
  assert.equal(document.activeElement, rowButton(), "Escape gives focus back to the row's button");

  rowButton().click();
  $(root, ".sg-confirm-cancel").click();
  assert.equal($(root, ".sg-confirm"), null);
  assert.equal(document.activeElement, rowButton(), "Cancel gives focus back");
  assert.equal(deletes(), 0);

  rowButton().click();
  $(root, ".sg-confirm-yes").click();
  await until("the row to go", () => rowOf(root, id.phone) === null);
  assert.equal(deletes(), 1);
  assert.equal($(root, ".sg-status").textContent, "Signed out Safari on iPhone.");
  assert.equal(document.activeElement, $(rowOf(root, id.pc), ".sg-revoke"), "focus moves to the next row, not <body>");

  // The last other row: focus goes to the status line.
  $(rowOf(root, id.pc), ".sg-revoke").click();
  $(root, ".sg-confirm-yes").click();
  await until("the row to go", () => rowOf(root, id.pc) === null);
  assert.equal(document.activeElement, $(root, ".sg-status"));
  assert.equal(client.isSignedIn(), true);
});

// Proves: "everywhere" and this device get the stronger warning; "other devices" says how many; confirming signs out the others and says so.
test("confirmations: stronger warning for everywhere and this device; sign out others", async (t) => {
  const { server, client, ids: id } = await threeSessions(t);
  const { root, document } = await mount(t, client);

  $(root, ".sg-revoke-all").click();
  let box = $(root, ".sg-actions .sg-confirm");
  assert.ok(box.classList.contains("sg-confirm-danger"));
  assert.equal($(box, ".sg-confirm-question").textContent, "Sign out everywhere? Every device, this one included, will have to sign in again.");
  assert.equal($(box, ".sg-confirm-yes").textContent, "Sign out everywhere");
  $(box, ".sg-confirm-cancel").click();

  $(rowOf(root, id.me), ".sg-revoke").click();
  box = $(rowOf(root, id.me), ".sg-confirm");
  assert.ok(box.classList.contains("sg-confirm-danger"));
  assert.equal($(box, ".sg-confirm-question").textContent, "Sign out of this device? You will have to sign in again here.");

  // Opening another question closes the first: one at a time.
  $(root, ".sg-revoke-others").click();
  assert.equal(root.querySelectorAll(".sg-confirm").length, 1);
  box = $(root, ".sg-actions .sg-confirm");
  assert.ok(!box.classList.contains("sg-confirm-danger"));
  assert.equal($(box, ".sg-confirm-question").textContent, "Sign out 2 other devices? They will have to sign in again.");
  $(box, ".sg-confirm-yes").click();
  await until("the other rows to go", () => ids(root).length === 1);
  assert.equal(count(server, "POST", "/v1/auth/sessions/revoke-all"), 1);
  assert.equal($(root, ".sg-status").textContent, "Signed out 2 other sessions.");
  assert.equal(document.activeElement, $(root, ".sg-status"));
  // Now one session: no sign-out-all buttons, a sentence instead.
  assert.equal($(root, ".sg-only-device").hidden, false);
  assert.equal($(root, ".sg-only-device").textContent, "You're only signed in on this device.");
  assert.equal($(root, ".sg-actions").hidden, true);
  assert.equal(client.isSignedIn(), true);
});

// Proves (issue 18 item 6): two clicks while an app's own confirmation is pending sign out once, not twice (old code: two DELETEs and a "No such session" error).
test("double confirmation race: a second click while confirming is ignored", async (t) => {
  const { server, client, ids: id } = await threeSessions(t);
  const pending = [];
  const { root } = await mount(t, client, { confirm: () => new Promise((resolve) => pending.push(resolve)) });
  const rowButton = $(rowOf(root, id.phone), ".sg-revoke");
  rowButton.click();
  rowButton.click();
  $(root, ".sg-revoke-all").click();
  await until("the confirmation to be asked", () => pending.length > 0);
  await new Promise((r) => setTimeout(r, 20));
  for (const resolve of pending) resolve(true);
  await until("the row to go", () => rowOf(root, id.phone) === null);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(count(server, "DELETE", "/v1/auth/sessions/"), 1);
  assert.equal(count(server, "POST", "/v1/auth/sessions/revoke-all"), 0);
  assert.equal($(root, ".sg-error").hidden, true, `error: ${$(root, ".sg-error-text").textContent}`);
  assert.equal(client.isSignedIn(), true);

  // And the inline one: a double click on "Sign out" sends one request.
  const { root: root2 } = await mount(t, client);
  $(rowOf(root2, id.pc), ".sg-revoke").click();
  const yes = $(root2, ".sg-confirm-yes");
  yes.click();
  yes.click();
  await until("the row to go", () => rowOf(root2, id.pc) === null);
  assert.equal(count(server, "DELETE", "/v1/auth/sessions/"), 2);
});

// Proves: while a sign-out runs, the clicked row says "Signing out…" (no generic "Working…"), other buttons are inert, and a failure is explained and gives focus back.
test("progress on the row; a failed sign-out is explained in words", async (t) => {
  const { server, faults, client, ids: id } = await threeSessions(t);
  const { root, document } = await mount(t, client);
  let release;
  const held = new Promise((r) => (release = r));
  faults.on = (method) => (method === "DELETE" ? held : undefined);

  const button = $(rowOf(root, id.phone), ".sg-revoke");
  button.click();
  $(root, ".sg-confirm-yes").click();
  await until("the request", () => count(server, "DELETE", "/v1/auth/sessions/") === 0 && button.textContent === "Signing out…");
  assert.equal(rowOf(root, id.phone).getAttribute("aria-busy"), "true");
  assert.equal(document.activeElement, button, "focus stays on the working button");
  assert.equal($(root, ".sg-status").textContent, "", "no generic status while working");
  assert.equal($(rowOf(root, id.pc), ".sg-revoke").getAttribute("aria-disabled"), "true");
  $(rowOf(root, id.pc), ".sg-revoke").click();
  assert.equal($(root, ".sg-confirm"), null, "other buttons are inert while one sign-out runs");
  release();
  await until("the row to go", () => rowOf(root, id.phone) === null);
  assert.equal($(rowOf(root, id.pc), ".sg-revoke").getAttribute("aria-disabled"), null);

  // A 503 from the store: the row stays, the reason is given, the button is back.
  faults.on = (method) => (method === "DELETE" ? errorResponse(503, "store_unavailable") : undefined);
  const pcButton = $(rowOf(root, id.pc), ".sg-revoke");
  pcButton.click();
  $(root, ".sg-confirm-yes").click();
  await until("the error", () => !$(root, ".sg-error").hidden);
  assert.equal($(root, ".sg-error-text").textContent, "The sign-in service is having trouble. Try again in a moment.");
  assert.equal($(root, ".sg-error").getAttribute("role"), "alert");
  assert.ok(rowOf(root, id.pc));
  assert.equal(pcButton.textContent, "Sign out");
  assert.equal(document.activeElement, pcButton);

  // Signed out elsewhere meanwhile: 404, the list is refreshed and says so.
  faults.on = undefined;
  server.revokeSession(id.pc);
  pcButton.click();
  $(root, ".sg-confirm-yes").click();
  await until("the row to go", () => rowOf(root, id.pc) === null);
  await until("the error", () => !$(root, ".sg-error").hidden);
  assert.equal($(root, ".sg-error-text").textContent, "That session had already ended.");
});

// Proves: loading shows a skeleton with aria-busy; load errors replace the list with a friendly reason and "Try again", which works.
test("loading skeleton, friendly load errors by code, Try again", async (t) => {
  const { faults, client, ids: id } = await threeSessions(t);
  let release;
  faults.on = (method, path) => (path === "/v1/auth/sessions" ? new Promise((r) => (release = r)) : undefined);
  const { root, window } = domRoot(t);
  const view = mountSessionsView(root, client, { activity: false, ...LOCAL });
  t.after(() => view.destroy());
  const section = $(root, ".sg-sessions");
  assert.equal(section.getAttribute("aria-busy"), "true");
  assert.equal(root.querySelectorAll(".sg-skeleton[aria-hidden=true]").length, 2);
  assert.equal($(root, ".sg-status").textContent, "Loading your sessions…");
  await until("the request", () => release);
  release();
  await until("the rows", () => ids(root).length === 3);
  assert.equal(section.getAttribute("aria-busy"), "false");
  assert.equal(root.querySelectorAll(".sg-skeleton").length, 0);
  assert.equal($(root, ".sg-status").textContent, "");

  const cases = [
    [new TypeError("Failed to fetch"), "You seem to be offline. Check your connection and try again."],
    [errorResponse(429, "rate_limited", { "Retry-After": "30" }), "Too many requests. Try again in 30 seconds."],
    [errorResponse(503, "store_unavailable"), "The sign-in service is having trouble. Try again in a moment."],
    [errorResponse(400, "invalid_request"), "Something went wrong. Try again."],
  ];
  for (const [fault, sentence] of cases) {
    faults.on = (method, path) => (path === "/v1/auth/sessions" ? fault : undefined);
    await view.reload();
    assert.equal($(root, ".sg-error-text").textContent, `Your sessions couldn't be loaded. ${sentence}`);
    assert.equal(ids(root).length, 0, "no stale list under the error");
    assert.equal($(root, ".sg-retry").hidden, false);
    assert.ok(!root.textContent.includes("Failed to fetch") && !root.textContent.includes("raw server message"));
  }
  faults.on = undefined;
  $(root, ".sg-retry").click();
  await until("the rows", () => ids(root).length === 3);
  assert.equal($(root, ".sg-error").hidden, true);
  assert.equal(window.document.activeElement, $(root, ".sg-title"), "focus lands on the heading, not <body>");
  assert.deepEqual(ids(root)[0], id.me);
});

// Proves: with one session there is no "Sign out everywhere" doing the same as the row's button, but a sentence.
test("one session: You're only signed in on this device", async (t) => {
  const { make } = await setup(t);
  const { client } = make({ channelName: null });
  await client.login({ username: "alice", password: "pw" });
  const { root } = await mount(t, client);
  assert.equal(root.querySelectorAll(".sg-session").length, 1);
  assert.equal($(root, ".sg-only-device").hidden, false);
  assert.equal($(root, ".sg-revoke-all").hidden, true);
  assert.equal($(root, ".sg-revoke-others").hidden, true);
  assert.equal($(root, ".sg-actions").hidden, true);
  assert.equal($(root, ".sg-revoke").getAttribute("aria-label"), "Sign out of this device");

  // Signing out this device from its row.
  $(root, ".sg-revoke").click();
  $(root, ".sg-confirm-yes").click();
  await until("signed out", () => !client.isSignedIn());
  await until("the status", () => $(root, ".sg-status").textContent === "Signed out.");
  assert.equal(root.querySelectorAll(".sg-session").length, 0);
  assert.equal(root.ownerDocument.activeElement, $(root, ".sg-status"));
});

// Proves: a session revoked elsewhere disappears when the tab becomes visible and with the periodic refresh, and relative times move every minute.
test("staying current: visibilitychange, the minute tick, the refresh interval", async (t) => {
  const { server, client, ids: id } = await threeSessions(t);
  t.mock.timers.enable({ apis: ["setInterval"] });
  let now = NOW;
  const { root, document, window } = await mount(t, client, { now: () => now });
  assert.equal(ids(root).length, 3);

  server.revokeSession(id.phone);
  document.dispatchEvent(new window.Event("visibilitychange"));
  await until("the revoked row to go", () => rowOf(root, id.phone) === null);

  now += 2 * 3600_000;
  t.mock.timers.tick(60_000);
  assert.equal($(rowOf(root, id.me), ".sg-last-active").textContent, "Last active 7 hours ago");
  // Revoked elsewhere while its button has focus: focus stays in the panel.
  $(rowOf(root, id.pc), ".sg-revoke").focus();
  server.revokeSession(id.pc);
  await new Promise((r) => setTimeout(r, 50)); // the first tick's reload is done
  t.mock.timers.tick(60_000);
  await until("the poll to drop the row", () => rowOf(root, id.pc) === null);
  assert.equal(document.activeElement, $(root, ".sg-status"));
  assert.equal(client.isSignedIn(), true);
});

// Proves: strings, locale, heading level, the per-row hook and the "Don't recognize a session?" note are the app's to set.
test("embedding: strings, locale, headingLevel, renderRow, change-password note", async (t) => {
  const { client, ids: id } = await threeSessions(t);
  const seen = [];
  const { root } = await mount(t, client, {
    activity: true,
    locale: "de-DE",
    headingLevel: 3,
    strings: {
      title: "Deine Sitzungen",
      signOut: "Abmelden",
      signOutDevice: (d) => `${d} abmelden`,
      signedIn: (d) => `Angemeldet am ${d}`,
      lastActive: (r) => `Zuletzt aktiv ${r}`,
    },
    renderRow: (row, session) => {
      seen.push(session.id);
      row.append(Object.assign(row.ownerDocument.createElement("span"), { className: "app-extra", textContent: "extra" }));
    },
    changePasswordUrl: "/account/password",
  });
  assert.equal($(root, "h3.sg-title").textContent, "Deine Sitzungen");
  assert.ok($(root, "h4.sg-activity-title"), "the activity heading is one level below");
  const phone = rowOf(root, id.phone);
  assert.equal($(phone, ".sg-revoke").textContent, "Abmelden");
  assert.equal($(phone, ".sg-revoke").getAttribute("aria-label"), "Safari on iPhone abmelden");
  assert.equal($(phone, ".sg-created").textContent, "Angemeldet am 1. Okt.");
  assert.equal($(phone, ".sg-last-active").textContent, "Zuletzt aktiv vor 3 Stunden");
  assert.deepEqual(seen.sort(), Object.values(id).sort());
  assert.equal(root.querySelectorAll(".app-extra").length, 3);
  const note = $(root, ".sg-unrecognized");
  assert.equal(note.textContent, "Don't recognize a session? Sign it out and change your password.");
  assert.equal($(note, "a").getAttribute("href"), "/account/password");

  // The app's own content replaces the note.
  const help = root.ownerDocument.createElement("p");
  help.textContent = "Call the help desk.";
  const { root: root2 } = await mount(t, client, { help, changePasswordUrl: "/ignored" });
  assert.equal($(root2, ".sg-unrecognized").textContent, "Call the help desk.");
  assert.equal($(root2, ".sg-change-password"), null);
});

// Proves: the describeSession and formatLocation hooks name and place a session; a long IPv6 address is short in the row and whole in Details; equal names are told apart.
test("hooks: describeSession, formatLocation, IPv6 abbreviated, duplicate names", async (t) => {
  const { server, client, ids: id } = await threeSessions(t);
  const ipv6 = "2001:0db8:85a3:0000:0000:8a2e:0370:7334";
  server.sessions.get(id.pc).ip = ipv6;
  const { root } = await mount(t, client, {
    describeSession: (s) => (s.id === id.phone ? "Work phone" : null),
    formatLocation: (s) => (s.id === id.pc ? "Berlin, Germany" : null),
  });
  assert.equal($(rowOf(root, id.phone), ".sg-device").textContent, "Work phone");
  assert.equal($(rowOf(root, id.phone), ".sg-revoke").getAttribute("aria-label"), "Sign out Work phone");
  const pc = rowOf(root, id.pc);
  assert.equal($(pc, ".sg-location").textContent, "Berlin, Germany");
  assert.equal($(pc, ".sg-ip").textContent, "2001:db8:85a3:0:…");
  assert.equal($(pc, ".sg-detail-ip").textContent, ipv6);
  assert.equal($(pc, ".sg-detail-location").textContent, "Berlin, Germany");
  assert.equal($(rowOf(root, id.me), ".sg-location"), null);

  // Two rows called "Work phone": their buttons get the sign-in date too.
  const { root: root2 } = await mount(t, client, { describeSession: (s) => (s.current ? null : "Work phone") });
  assert.deepEqual(
    [id.phone, id.pc].map((s) => $(rowOf(root2, s), ".sg-revoke").getAttribute("aria-label")),
    ["Sign out Work phone, signed in Oct 1", "Sign out Work phone, signed in Dec 24, 2025"],
  );
});

// Proves: a hostile User-Agent stays text in the row and in Details.
test("hostile User-Agent in the sessions list stays text", async (t) => {
  const { server, client, ids: id } = await threeSessions(t);
  const hostile = '<img src=x onerror="globalThis.__xss=1">Evil/1.0 (X11; Linux x86_64)';
  server.sessions.get(id.pc).ua = hostile;
  const { root } = await mount(t, client, { formatLocation: () => "<b>x</b>" });
  assert.equal($(rowOf(root, id.pc), ".sg-detail-user-agent").textContent, hostile);
  assert.equal($(rowOf(root, id.pc), ".sg-device").textContent, "Linux");
  assert.equal(root.querySelectorAll("img, b").length, 0);
  assert.equal(globalThis.__xss, undefined);
});
