import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionError } from "../dist/index.js";
import { startAuthServer, fakeStorage, fakeLocks, laggyStorage, cookieJarFetch, setup, sleep, twoTabsSignedIn } from "./helpers/server.mjs";

const KEY = "sessiongate.session";

const stored = (storage) => JSON.parse(storage.getItem(KEY));

async function waitUntil(condition, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(5);
  }
}

test("login stores tokens and fetch attaches them only to the server's origin", async (t) => {
  const { server, make } = await setup(t);
  const storage = fakeStorage();
  const { client } = make({ storage });
  assert.equal(client.isSignedIn(), false);
  const result = await client.login({ username: "alice", password: "pw" });
  assert.equal(client.isSignedIn(), true);
  assert.equal(client.currentSessionId(), result.sessionId);
  assert.ok(stored(storage).refreshToken.startsWith("rt-"));

  const res = await client.fetch("/api/me");
  assert.equal(res.status, 200);
  assert.equal((await res.json()).sub, "user-alice");
  assert.match(server.requests.at(-1).headers.authorization, /^Bearer at-/);

  // Another origin: passed through untouched, no token leaks.
  const other = await startAuthServer();
  t.after(() => other.close());
  const res2 = await client.fetch(`${other.url}/api/me`);
  assert.equal(res2.status, 401);
  assert.equal(other.requests.at(-1).headers.authorization, undefined);
});

test("failed login rejects with the upstream's code and keeps the client signed out", async (t) => {
  const { make } = await setup(t);
  const { client } = make();
  await assert.rejects(client.login({ username: "alice", password: "nope" }), (err) => {
    assert.ok(err instanceof SessionError);
    assert.equal(err.code, "invalid_credentials");
    assert.equal(err.status, 401);
    return true;
  });
  assert.equal(client.isSignedIn(), false);
});

test("single flight: N concurrent fetches with a server-expired token make exactly 1 refresh", async (t) => {
  const { server, make } = await setup(t, { refreshDelayMs: 50 });
  const { client, events } = make();
  await client.login({ username: "alice", password: "pw" });
  server.expireAccessTokens();
  const responses = await Promise.all(Array.from({ length: 10 }, (_, i) => client.fetch(`/api/item/${i}`)));
  assert.deepEqual(responses.map((r) => r.status), Array(10).fill(200));
  assert.equal(server.refreshCount(), 1);
  assert.equal(server.events.filter((e) => e.type === "reused").length, 0);
  assert.deepEqual(events, []);
});

test("single flight: N concurrent fetches with a locally expired token refresh once before sending", async (t) => {
  const { server, make } = await setup(t, { refreshDelayMs: 30 });
  const storage = fakeStorage();
  const { client } = make({ storage });
  await client.login({ username: "alice", password: "pw" });
  const state = stored(storage);
  storage.setItem(KEY, JSON.stringify({ ...state, expiresAt: Date.now() - 1000 }));
  server.expireAccessTokens();
  const before = server.requests.length;
  const responses = await Promise.all(Array.from({ length: 8 }, () => client.fetch("/api/x")));
  assert.deepEqual(responses.map((r) => r.status), Array(8).fill(200));
  assert.equal(server.refreshCount(), 1);
  // No wasted round trip: 1 refresh + 8 API calls, none of them 401.
  assert.equal(server.requests.length - before, 9);
});

test("401 token_expired: refreshes once and retries the request with its body", async (t) => {
  const { server, make } = await setup(t);
  const { client } = make();
  await client.login({ username: "alice", password: "pw" });
  server.expireAccessTokens();
  const res = await client.fetch("/api/echo", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ hello: "world" }),
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.body, '{"hello":"world"}');
  assert.equal(server.refreshCount(), 1);
  assert.equal(server.count("POST", "/api/echo"), 2);
  const [first, second] = server.requests.filter((r) => r.path === "/api/echo");
  assert.notEqual(first.headers.authorization, second.headers.authorization);
});

test("a second 401 is returned as is: no refresh loop", async (t) => {
  const { server, make } = await setup(t);
  const { client, events } = make();
  await client.login({ username: "alice", password: "pw" });
  server.behaviour.apiAlwaysExpired = true;
  const res = await client.fetch("/api/x");
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error, "token_expired");
  assert.equal(server.refreshCount(), 1);
  assert.equal(server.count("GET", "/api/x"), 2);
  assert.equal(client.isSignedIn(), true);
  assert.deepEqual(events, []);
});

for (const [reason, arrange] of [
  ["session_expired", (server, client) => server.setSessionExpired(client.currentSessionId())],
  ["session_revoked", (server, client) => server.revokeSession(client.currentSessionId())],
  [
    "refresh_token_reused",
    // An attacker rotated the stolen refresh token first; the client's copy is now a reused one.
    async (server, _client, storage) => {
      const res = await fetch(`${server.url}/v1/auth/refresh`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: stored(storage).refreshToken }),
      });
      assert.equal(res.status, 200);
    },
  ],
  [
    "invalid_refresh_token",
    (_server, _client, storage) => storage.setItem(KEY, JSON.stringify({ ...stored(storage), refreshToken: "rt-unknown" })),
  ],
]) {
  test(`${reason} on refresh: event, tokens cleared, no loop`, async (t) => {
    const { server, make } = await setup(t);
    const storage = fakeStorage();
    const { client, events } = make({ storage });
    const states = [];
    client.on("statechange", (e) => states.push(e.signedIn));
    await client.login({ username: "alice", password: "pw" });
    await arrange(server, client, storage);
    server.expireAccessTokens();
    const res = await client.fetch("/api/x");
    assert.equal(res.status, 401);
    assert.equal(events.length, 1);
    assert.equal(events[0].reason, reason);
    assert.match(events[0].message, /sign in again/);
    assert.equal(storage.getItem(KEY), null);
    assert.equal(client.isSignedIn(), false);
    assert.deepEqual(states, [true, false]);
    // Afterwards: requests go out without a token and never trigger refreshes.
    const refreshes = server.refreshCount();
    const again = await client.fetch("/api/x");
    assert.equal((await again.json()).error, "missing_token");
    assert.equal(server.refreshCount(), refreshes);
    assert.equal(events.length, 1);
  });
}

test("session_revoked on an API call ends the session once, even with concurrent calls", async (t) => {
  const { server, make } = await setup(t);
  const { client, events } = make();
  await client.login({ username: "alice", password: "pw" });
  server.revokeSession(client.currentSessionId());
  const responses = await Promise.all([client.fetch("/api/a"), client.fetch("/api/b"), client.fetch("/api/c")]);
  assert.deepEqual(responses.map((r) => r.status), [401, 401, 401]);
  assert.equal(events.length, 1);
  assert.equal(events[0].reason, "session_revoked");
  assert.equal(server.refreshCount(), 0);
  assert.equal(client.isSignedIn(), false);
});

test("reused refresh token revokes the session on the server", async (t) => {
  const { server, make } = await setup(t);
  const storage = fakeStorage();
  const { client, events } = make({ storage });
  await client.login({ username: "alice", password: "pw" });
  const oldRefresh = stored(storage).refreshToken;
  await client.refresh();
  storage.setItem(KEY, JSON.stringify({ ...stored(storage), refreshToken: oldRefresh }));
  await assert.rejects(client.refresh(), (err) => err.code === "refresh_token_reused");
  assert.equal(events[0].reason, "refresh_token_reused");
  assert.deepEqual(server.events.filter((e) => e.type === "reused").length, 1);
});

test("background refresh: the timer refreshes before expiry, without any request", async (t) => {
  const { server, make } = await setup(t, { accessTtl: 1.5 });
  const { client, events } = make();
  const refreshes = [];
  client.on("refresh", (e) => refreshes.push(e));
  const { expiresAt } = await client.login({ username: "alice", password: "pw" });
  await sleep(1000);
  assert.equal(server.refreshCount(), 0, "not before expires_in minus the margin");
  await sleep(2000);
  // 1.5 s tokens, 0.3 s margin: refreshed at ~1.2 s and ~2.4 s.
  assert.ok(server.refreshCount() >= 2, `refreshes: ${server.refreshCount()}`);
  assert.ok(server.refreshCount() <= 3, `refreshes: ${server.refreshCount()}`);
  assert.ok(refreshes[0].expiresAt > expiresAt);
  assert.equal(refreshes[0].local, true);
  const res = await client.fetch("/api/x");
  assert.equal(res.status, 200);
  assert.equal(server.count("GET", "/api/x"), 1, "token was fresh: no 401 round trip");
  assert.deepEqual(events, []);
});

test("refreshMarginSeconds is honoured and clamped for short tokens", async (t) => {
  const { server, make } = await setup(t, { accessTtl: 1 });
  const { client } = make({ refreshMarginSeconds: 60 }); // clamped to half the lifetime
  await client.login({ username: "alice", password: "pw" });
  await sleep(300);
  assert.equal(server.refreshCount(), 0);
  await sleep(500);
  assert.equal(server.refreshCount(), 1);
});

test("logout revokes on the server, clears tokens, and stops the timer", async (t) => {
  const { server, make } = await setup(t, { accessTtl: 1 });
  const storage = fakeStorage();
  const { client, events } = make({ storage });
  await client.login({ username: "alice", password: "pw" });
  const sid = client.currentSessionId();
  await client.logout();
  assert.equal(storage.getItem(KEY), null);
  assert.equal(server.sessions.get(sid).revoked, true);
  await sleep(1200);
  assert.equal(server.refreshCount(), 0);
  assert.deepEqual(events, [], "a user's own logout is not a 'session ended' surprise");
});

test("cookie mode: no refresh token in storage or in request bodies, credentials include", async (t) => {
  const { server, make } = await setup(t, { cookie: true });
  const jar = cookieJarFetch();
  const storage = fakeStorage();
  const { client } = make({ storage, refreshCookie: true, fetch: jar.fetch });
  await client.login({ username: "alice", password: "pw" });
  const state = stored(storage);
  assert.equal(state.refreshToken, null);
  const cookieValue = jar.jar.get("sg_refresh");
  assert.ok(cookieValue);
  assert.ok(!storage.getItem(KEY).includes(cookieValue), "refresh token not in JS storage");

  server.expireAccessTokens();
  const res = await client.fetch("/api/x");
  assert.equal(res.status, 200);
  assert.equal(server.refreshCount(), 1);
  const refreshCall = jar.calls.find((c) => c.url.endsWith("/v1/auth/refresh"));
  assert.equal(refreshCall.credentials, "include");
  assert.equal(refreshCall.body, null);
  const refreshReq = server.requests.find((r) => r.path === "/v1/auth/refresh");
  assert.equal(refreshReq.body, "");
  assert.ok(refreshReq.headers.cookie.includes("sg_refresh="));
  assert.equal(server.events.filter((e) => e.type === "rotated").length, 1);
  assert.notEqual(jar.jar.get("sg_refresh"), cookieValue, "cookie rotated");

  // A fresh page (memory storage) resumes from the cookie alone.
  const fresh = make({ refreshCookie: true, fetch: jar.fetch, channelName: null }).client;
  assert.equal(await fresh.resume(), true);
  assert.equal((await fresh.fetch("/api/x")).status, 200);

  await client.logout();
  const logoutCall = jar.calls.find((c) => c.url.endsWith("/v1/auth/logout"));
  assert.equal(logoutCall.credentials, "include");
  assert.ok(!String(logoutCall.body ?? "").includes("refresh_token"));
  for (const r of server.requests) assert.ok(!r.body.includes("refresh_token"), `${r.path} sent a refresh token`);
});

test("cookie mode: resume without a cookie is a quiet 'signed out'", async (t) => {
  const { make } = await setup(t, { cookie: true });
  const { client, events } = make({ refreshCookie: true, fetch: cookieJarFetch().fetch });
  assert.equal(await client.resume(), false);
  assert.deepEqual(events, []);
});

// Proves the election over the channel (no Web Locks) lets one tab refresh and the other follow through shared storage.
test("two tabs sharing a BroadcastChannel (no Web Locks) refresh once; the other follows via shared storage", async (t) => {
  const { server, make } = await setup(t, { refreshDelayMs: 50 });
  // Shared storage, like localStorage: the channel only says "changed".
  const storage = fakeStorage();
  const a = make({ locks: null, storage });
  const b = make({ locks: null, storage });
  const bStates = [];
  b.client.on("statechange", (e) => bStates.push(e.signedIn));
  await a.client.login({ username: "alice", password: "pw" });
  await sleep(50);
  assert.equal(b.client.isSignedIn(), true, "login shared with the other tab");
  assert.deepEqual(bStates, [true]);

  server.expireAccessTokens();
  const [ra, rb] = await Promise.all([a.client.fetch("/api/a"), b.client.fetch("/api/b")]);
  assert.equal(ra.status, 200);
  assert.equal(rb.status, 200);
  assert.equal(server.refreshCount(), 1);
  assert.equal(server.events.filter((e) => e.type === "reused").length, 0);

  // Forced refresh in both at once: still one rotation each time.
  await Promise.all([a.client.refresh(), b.client.refresh()]);
  assert.equal(server.refreshCount(), 2);
  assert.equal(server.events.filter((e) => e.type === "reused").length, 0);
  assert.deepEqual([...a.events, ...b.events], []);

  // Logout in one tab signs the other out with reason logged_out.
  await a.client.logout();
  await sleep(50);
  assert.equal(b.client.isSignedIn(), false);
  assert.deepEqual(b.events.map((e) => e.reason), ["logged_out"]);
  assert.deepEqual(a.events, []);
});

// Proves a tab whose request meets the server-side end of a sign-out another
// tab started (before that tab's "ended" arrives) reports it as that sign-out.
for (const how of ["revokeAll", "logout"]) {
  test(`${how} in one tab: another tab's request racing with it ends with logged_out, not session_revoked`, async (t) => {
    const { server, a, b } = await twoTabsSignedIn(t);
    server.behaviour.endReplyDelayMs = 150;
    const ending = a.client[how]();
    // The server has ended the session; tab A has not heard back yet.
    await waitUntil(() => [...server.sessions.values()].every((s) => s.revoked));
    const res = await b.client.fetch("/api/b");
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error, "session_revoked");
    await ending;
    await sleep(20);
    assert.equal(b.client.isSignedIn(), false);
    assert.deepEqual(b.events.map((e) => e.reason), ["logged_out"]);
    assert.deepEqual(a.events, []);
  });
}

test("a sign-out that fails on the server leaves other tabs' real revocations as they are", async (t) => {
  const { server, a, b } = await twoTabsSignedIn(t);
  server.behaviour.apiAlwaysExpired = true; // revoke-all's bearer is refused: it fails
  await assert.rejects(a.client.revokeAll());
  server.behaviour.apiAlwaysExpired = false;
  assert.equal(a.client.isSignedIn(), true);
  await sleep(20);
  server.revokeSession(a.client.currentSessionId()); // an administrator
  const res = await b.client.fetch("/api/b");
  assert.equal(res.status, 401);
  await sleep(20);
  assert.deepEqual(b.events.map((e) => e.reason), ["session_revoked"]);
});

test("two tabs with Web Locks and shared storage: background timers refresh once per cycle", async (t) => {
  const { server, make } = await setup(t, { accessTtl: 1.2, refreshDelayMs: 20 });
  const storage = fakeStorage(); // like localStorage: shared by both tabs
  const locks = fakeLocks();
  const a = make({ storage, locks });
  await a.client.login({ username: "alice", password: "pw" });
  const b = make({ storage, locks }); // a tab opened later picks the session up from storage
  assert.equal(b.client.isSignedIn(), true);
  await sleep(2200);
  // ~0.96 s per cycle: 2 cycles; two uncoordinated tabs would make 4 and trip reuse detection.
  assert.ok(server.refreshCount() >= 2 && server.refreshCount() <= 3, `refreshes: ${server.refreshCount()}`);
  assert.equal(server.events.filter((e) => e.type === "reused").length, 0);
  assert.ok(locks.granted >= 2);
  server.expireAccessTokens();
  const statuses = await Promise.all([a.client.fetch("/api/a"), b.client.fetch("/api/b")].map((p) => p.then((r) => r.status)));
  assert.deepEqual(statuses, [200, 200]);
  assert.equal(server.events.filter((e) => e.type === "reused").length, 0);
  assert.deepEqual([...a.events, ...b.events], []);
});

test("two tabs whose shared storage lags: the second tab waits for the first one's tokens instead of reusing", async (t) => {
  const { server, make } = await setup(t);
  const tab = laggyStorage(150); // another renderer process sees writes 150 ms late
  const locks = fakeLocks();
  // No BroadcastChannel: only the (late) storage and the locks connect the tabs.
  const a = make({ storage: tab(), locks, channelName: null });
  const b = make({ storage: tab(), locks, channelName: null });
  await a.client.login({ username: "alice", password: "pw" });
  await sleep(200);
  assert.equal(b.client.isSignedIn(), true);
  for (let round = 0; round < 3; round++) {
    const before = server.refreshCount();
    await Promise.all([a.client.refresh(), b.client.refresh()]);
    assert.equal(server.refreshCount() - before, 1, `round ${round}: both tabs refreshed`);
    await sleep(200);
  }
  assert.equal(server.events.filter((e) => e.type === "reused").length, 0);
  const statuses = await Promise.all([a.client.fetch("/api/a"), b.client.fetch("/api/b")].map((p) => p.then((r) => r.status)));
  assert.deepEqual(statuses, [200, 200]);
  assert.deepEqual([...a.events, ...b.events], []);
});

test("control: without query() the lagging-storage harness does reproduce the reuse", async (t) => {
  const { server, make } = await setup(t);
  const tab = laggyStorage(150);
  const { query: _unused, ...locks } = fakeLocks();
  const a = make({ storage: tab(), locks: { request: locks.request }, channelName: null });
  const b = make({ storage: tab(), locks: { request: locks.request }, channelName: null });
  await a.client.login({ username: "alice", password: "pw" });
  await sleep(200);
  await Promise.allSettled([a.client.refresh(), b.client.refresh()]);
  // This is the race the marker lock closes: the second refresh reuses the old token.
  assert.equal(server.events.filter((e) => e.type === "reused").length, 1);
});

test("session helpers: list, revoke one, revoke all", async (t) => {
  const { server, make } = await setup(t);
  const { client } = make();
  const other = make({ channelName: null }).client; // another device
  const { sessionId: otherId } = await other.login({ username: "alice", password: "pw" });
  const { sessionId } = await client.login({ username: "alice", password: "pw" });

  let list = await client.listSessions();
  assert.equal(list.length, 2);
  assert.deepEqual(list.map((s) => [s.id, s.current]), [[sessionId, true], [otherId, false]]);
  assert.equal(typeof list[0].lastActiveAt, "string");
  assert.equal(list[0].ip, "127.0.0.1");

  await client.revokeSession(otherId);
  list = await client.listSessions();
  assert.deepEqual(list.map((s) => s.id), [sessionId]);
  await assert.rejects(client.revokeSession("s-nope"), (err) => err.code === "not_found" && err.status === 404);

  await other.login({ username: "alice", password: "pw" });
  assert.equal(await client.revokeAll({ keepCurrent: true }), 1);
  assert.equal(client.isSignedIn(), true);
  assert.equal(await client.revokeAll(), 1);
  assert.equal(client.isSignedIn(), false);
  assert.ok([...server.sessions.values()].every((s) => s.revoked));
});
