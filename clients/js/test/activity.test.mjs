// Security activity (SPEC 4.8): client.securityEvents() against the test
// server, and the "Recent security activity" list of the sessions component
// in a real DOM (happy-dom).
import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionError, describeSecurityEvent } from "../dist/index.js";
import { mountSessionsView } from "../dist/sessions-view.js";
import { setup } from "./helpers/server.mjs";
import { domRoot, until } from "./helpers/dom.mjs";

const PATH = "/v1/auth/security-events";
const FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const HOSTILE_UA = '<img src=x onerror="globalThis.__xss=1">Evil/1.0 (X11; Linux x86_64)';
const HOSTILE_IP = "<b>198.51.100.4</b>";

/** A signed-in client of user-alice. */
async function signedIn(t, options = {}) {
  const { server, make } = await setup(t);
  const { client } = make({ channelName: null, ...options });
  const { sessionId } = await client.login({ username: "alice", password: "pw" });
  return { server, make, client, sessionId };
}

const apiCalls = (server) => server.requests.filter((r) => r.path === PATH);

// Proves: the query string carries limit/before exactly, pages follow `next` newest first without gaps or repeats, and fields are mapped.
test("securityEvents: query string, paging newest first, field mapping", async (t) => {
  const { server, client, sessionId } = await signedIn(t);
  for (let i = 1; i <= 4; i++) server.addSecurityEvent("user-alice", "new_ip", { ip: `198.51.100.${i}`, user_agent: FIREFOX });
  server.addSecurityEvent("user-alice", "upstream_revoke", { scope: "others", session_id: sessionId });
  server.addSecurityEvent("user-bob", "login"); // another user's: never listed

  const all = await client.securityEvents();
  assert.equal(apiCalls(server).at(-1).search, "", "no limit or before unless asked");
  assert.deepEqual(all.events.map((e) => e.type), ["upstream_revoke", "new_ip", "new_ip", "new_ip", "new_ip", "login"]);
  assert.equal(all.next, null);
  const [revoke, newest] = all.events;
  assert.deepEqual(revoke.scope, "others");
  assert.equal(revoke.currentSession, true);
  assert.deepEqual(
    { ip: newest.ip, userAgent: newest.userAgent, sessionId: newest.sessionId, currentSession: newest.currentSession, scope: newest.scope },
    { ip: "198.51.100.4", userAgent: FIREFOX, sessionId: "", currentSession: false, scope: null },
  );
  assert.ok(!Number.isNaN(Date.parse(newest.at)));
  const login = all.events.at(-1);
  assert.deepEqual([login.sessionId, login.currentSession], [sessionId, true]);

  const seen = [];
  let before = null;
  const searches = [];
  for (;;) {
    const page = await client.securityEvents({ limit: 4, before });
    searches.push(apiCalls(server).at(-1).search);
    seen.push(...page.events.map((e) => e.id));
    if (page.next === null) break;
    before = page.next;
  }
  assert.deepEqual(seen, all.events.map((e) => e.id));
  assert.equal(searches.length, 2);
  assert.equal(searches[0], "?limit=4");
  assert.match(searches[1], /^\?limit=4&before=[A-Za-z0-9_-]+$/);
});

// Proves: a bad limit fails before any request, and server errors become SessionErrors with the server's code.
test("securityEvents: limit checked locally, server errors surface as SessionError", async (t) => {
  const { server, client } = await signedIn(t);
  for (const limit of [0, 201, 1.5, Number.NaN]) {
    await assert.rejects(client.securityEvents({ limit }), RangeError, `limit ${limit}`);
  }
  assert.equal(apiCalls(server).length, 0);

  // A cursor the server did not issue (encoded, not spliced into the query).
  await assert.rejects(client.securityEvents({ before: "x&limit=1000" }), (err) => {
    assert.ok(err instanceof SessionError);
    assert.deepEqual([err.code, err.status], ["invalid_request", 400]);
    return true;
  });
  assert.equal(apiCalls(server).at(-1).search, "?before=x%26limit%3D1000");

  server.behaviour.securityEventsBody = '{"sessions": []}';
  await assert.rejects(client.securityEvents(), (err) => err.code === "bad_response");

  await client.logout();
  await assert.rejects(client.securityEvents(), (err) => err.code === "missing_token" && err.status === 401);
});

// Proves: the call goes through the client's authenticated fetch (expired token: one refresh, one retry).
test("securityEvents: an expired access token is refreshed once and the call retried", async (t) => {
  const { server, client } = await signedIn(t);
  server.expireAccessTokens();
  const page = await client.securityEvents({ limit: 1 });
  assert.deepEqual(page.events.map((e) => e.type), ["login"]);
  assert.equal(server.refreshCount(), 1);
  assert.equal(apiCalls(server).length, 2);
});

// Proves: every event type gets its sentence, and the server's IP is the only variable part.
test("describeSecurityEvent: one sentence per type", () => {
  const cases = [
    [{ type: "login" }, "New sign-in"],
    [{ type: "new_ip", ip: "198.51.100.4" }, "Sign-in from a new IP address 198.51.100.4"],
    [{ type: "new_ip", ip: "" }, "Sign-in from a new IP address"],
    [{ type: "new_device" }, "Sign-in from a new device"],
    [{ type: "refresh_token_reuse" }, "Someone reused an old refresh token — the session was ended"],
    [{ type: "session_revoked" }, "Signed out"],
    [{ type: "revoke_all" }, "Signed out everywhere"],
    [{ type: "upstream_revoke", scope: "current" }, "Signed out by the application"],
    [{ type: "upstream_revoke", scope: null }, "Signed out by the application"],
    [{ type: "upstream_revoke", scope: "others" }, "Other sessions signed out by the application"],
    [{ type: "upstream_revoke", scope: "all" }, "Signed out everywhere by the application"],
    [{ type: "something_new" }, "Other security event"],
  ];
  for (const [event, sentence] of cases) assert.equal(describeSecurityEvent({ ip: "", scope: null, ...event }), sentence);
});

const rows = (root) =>
  [...root.querySelectorAll(".sg-activity .sg-event")].map((li) => ({
    id: li.dataset.eventId,
    type: li.dataset.eventType,
    text: li.querySelector(".sg-event-text").textContent,
    device: li.querySelector(".sg-device").textContent,
    deviceTitle: li.querySelector(".sg-device").title,
    ip: li.querySelector(".sg-ip").textContent,
    time: li.querySelector(".sg-event-time").textContent,
    thisDevice: li.querySelector(".sg-this-device")?.textContent ?? null,
  }));

/** Mounts the component and waits for its first load (sessions and activity). */
async function mount(t, client, options = {}) {
  const { root } = domRoot(t);
  const view = mountSessionsView(root, client, options);
  t.after(() => view.destroy());
  await view.reload();
  return { root, view };
}

// Proves: the list shows a sentence, device, IP, time and "This device" per event, newest first, under its heading.
test("sessions component: recent security activity, one row per event", async (t) => {
  const { server, client, sessionId } = await signedIn(t);
  server.addSecurityEvent("user-alice", "new_device", { ip: "203.0.113.9", user_agent: FIREFOX, session_id: "s-other" });
  server.addSecurityEvent("user-alice", "upstream_revoke", { scope: "all", session_id: sessionId, user_agent: "curl/8.5.0" });
  const now = Date.now() + 5 * 60_000;
  const { root } = await mount(t, client, { now: () => now });

  assert.equal(root.querySelector(".sg-activity .sg-activity-title").textContent, "Recent security activity");
  assert.equal(root.querySelectorAll(".sg-session").length, 1, "the sessions list is still there");
  const list = rows(root);
  assert.deepEqual(list.map((r) => r.text), ["Signed out everywhere by the application", "Sign-in from a new device", "New sign-in"]);
  assert.deepEqual(list.map((r) => r.thisDevice), ["This device", null, "This device"]);
  // The login came from Node's fetch, whose User-Agent is "node".
  assert.deepEqual(list.map((r) => r.device), ["curl", "Firefox on Linux", "node"]);
  assert.deepEqual(list.map((r) => r.ip), ["127.0.0.1", "203.0.113.9", "127.0.0.1"]);
  assert.deepEqual(list.map((r) => r.time), ["5 minutes ago", "5 minutes ago", "5 minutes ago"]);
  assert.equal(root.querySelector(".sg-event-time").getAttribute("datetime"), server.securityEventsOf("user-alice").at(-1).at);
  assert.equal(root.querySelector(".sg-activity-more").hidden, true, "one page only: no Show more");
  assert.equal(root.querySelector(".sg-activity-status").textContent, "");
  assert.equal(apiCalls(server).at(-1).search, "?limit=10", "default page size");
});

// Proves: attacker-controlled user agents, IPs and types are rendered as text, never parsed as HTML.
test("sessions component: hostile user agent and IP in the activity list stay text", async (t) => {
  const { server, client } = await signedIn(t);
  server.addSecurityEvent("user-alice", "new_ip", { ip: HOSTILE_IP, user_agent: HOSTILE_UA });
  server.addSecurityEvent("user-alice", '"><img src=x>', { user_agent: HOSTILE_UA });
  const { root } = await mount(t, client);
  const [odd, newIp] = rows(root);
  assert.equal(newIp.text, `Sign-in from a new IP address ${HOSTILE_IP}`);
  assert.equal(newIp.ip, HOSTILE_IP);
  assert.equal(newIp.deviceTitle, HOSTILE_UA);
  assert.equal(newIp.device, "Linux");
  assert.equal(odd.type, '"><img src=x>');
  assert.equal(odd.text, "Other security event");
  assert.equal(root.querySelectorAll("img, b").length, 0, "server values were parsed as HTML");
  assert.equal(globalThis.__xss, undefined);
});

// Proves: "Show more" follows `next` page by page, appends in order, and disappears on the last page.
test("sessions component: Show more follows next until the last page", async (t) => {
  const { server, client } = await signedIn(t);
  for (let i = 1; i <= 4; i++) server.addSecurityEvent("user-alice", "new_ip", { ip: `198.51.100.${i}` });
  const { root } = await mount(t, client, { activityLimit: 2 });
  const more = root.querySelector(".sg-activity-more");
  const ips = () => rows(root).map((r) => r.ip);
  assert.deepEqual(ips(), ["198.51.100.4", "198.51.100.3"]);
  assert.equal(more.hidden, false);

  more.click();
  await until("the second page", () => rows(root).length === 4);
  assert.deepEqual(ips(), ["198.51.100.4", "198.51.100.3", "198.51.100.2", "198.51.100.1"]);
  assert.equal(more.hidden, false);
  assert.match(apiCalls(server).at(-1).search, /^\?limit=2&before=/);

  more.click();
  await until("the last page", () => rows(root).length === 5);
  assert.equal(rows(root).at(-1).text, "New sign-in");
  assert.equal(more.hidden, true);
  assert.equal(new Set(rows(root).map((r) => r.id)).size, 5, "no event twice");
  assert.equal(root.querySelector(".sg-activity-status").textContent, "");
});

// Proves: the activity list reloads with the sessions list (after a sign-out from the component it shows that event first, from page one).
test("sessions component: the activity list reloads with the sessions", async (t) => {
  const { server, make, client } = await signedIn(t);
  const other = make({ channelName: null }).client;
  const { sessionId: otherId } = await other.login({ username: "alice", password: "pw" });
  for (let i = 1; i <= 3; i++) server.addSecurityEvent("user-alice", "new_device");
  const { root } = await mount(t, client, { activityLimit: 2 });
  root.querySelector(".sg-activity-more").click();
  await until("the second page", () => rows(root).length === 4);

  root.querySelector(`.sg-session[data-session-id="${otherId}"] .sg-revoke`).click();
  root.querySelector(".sg-confirm-yes").click();
  await until("the revoked session to go", () => root.querySelectorAll(".sg-session").length === 1);
  await until("the activity list to reload", () => rows(root).length === 2);
  assert.equal(rows(root)[0].text, "Signed out");
  assert.equal(rows(root)[0].thisDevice, null, "another device's session was signed out");
  assert.equal(root.querySelector(".sg-activity-more").hidden, false);
});

// Proves: a failing activity call is reported in its own status line, in words (not the parser's message), and does not hide the sessions.
test("sessions component: an activity error leaves the sessions list alone", async (t) => {
  const { server, client } = await signedIn(t);
  server.behaviour.securityEventsBody = "not json";
  const { root } = await mount(t, client);
  assert.equal(root.querySelectorAll(".sg-session").length, 1);
  assert.equal(root.querySelector(".sg-status").textContent, "");
  assert.equal(root.querySelector(".sg-activity-status").textContent, "Recent activity couldn't be loaded. Something went wrong. Try again.");
  assert.equal(rows(root).length, 0);
});

// Proves: activity: false renders no list and never calls the endpoint.
test("sessions component: activity: false turns the list off", async (t) => {
  const { server, client } = await signedIn(t);
  const { root, view } = await mount(t, client, { activity: false });
  await view.reload();
  assert.equal(root.querySelectorAll(".sg-session").length, 1);
  assert.equal(root.querySelector(".sg-activity"), null);
  assert.equal(apiCalls(server).length, 0);
});

// Proves: signing out empties the activity list (nothing of the previous user stays on screen).
test("sessions component: sign-out clears the activity list", async (t) => {
  const { client } = await signedIn(t);
  const { root } = await mount(t, client);
  assert.equal(rows(root).length, 1);
  await client.logout();
  assert.equal(rows(root).length, 0);
  assert.equal(root.querySelector(".sg-activity-more").hidden, true);
});
