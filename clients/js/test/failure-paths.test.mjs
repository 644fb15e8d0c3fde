// The browser client's failure paths (issue 18): each test names what it
// proves; each one fails on the client before the fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionError } from "../dist/index.js";
import { setup, fakeStorage, fakeLocks, cookieJarFetch, sleep, twoTabsSignedIn } from "./helpers/server.mjs";
import { faultyFetch, hang, answer, offline, late, within } from "./helpers/faults.mjs";

const KEY = "sessiongate.session";
const REFRESH = "/v1/auth/refresh";
const LOGOUT = "/v1/auth/logout";
const stored = (storage) => JSON.parse(storage.getItem(KEY));
/** Makes the stored access token look expired to the client (the server still takes it). */
const expireLocally = (storage) => storage.setItem(KEY, JSON.stringify({ ...stored(storage), expiresAt: Date.now() - 1000 }));
const reused = (server) => server.events.filter((e) => e.type === "reused").length;

// ---- 1. a hung refresh must not freeze the tabs ------------------------------

// Proves a refresh request that never answers is aborted after refreshTimeoutSeconds and fails as a transient error.
test("a refresh that never answers is aborted: fetch rejects with a timeout instead of hanging", async (t) => {
  const { server, make } = await setup(t);
  const faults = faultyFetch();
  const storage = fakeStorage();
  const { client, events } = make({ storage, fetch: faults.fetch, refreshTimeoutSeconds: 0.3, locks: fakeLocks() });
  await client.login({ username: "alice", password: "pw" });
  faults.on(REFRESH, hang);
  expireLocally(storage);
  const started = Date.now();
  await assert.rejects(within(3000, client.fetch("/api/x")), (err) => err instanceof SessionError && err.code === "timeout");
  assert.ok(Date.now() - started < 2000, "aborted after about the timeout");
  assert.equal(client.isSignedIn(), true, "a timeout is transient: the session is kept");
  assert.deepEqual(events, []);
  // The next call goes through (the lock was released).
  const res = await within(3000, client.fetch("/api/x"));
  assert.equal(res.status, 200);
  assert.equal(server.refreshCount(), 1);
});

// Proves a tab waiting for a refresh lock another tab never releases gives up after a bounded wait.
test("a refresh lock held forever by a frozen tab: the waiting tab gives up with lock_timeout", async (t) => {
  const { make } = await setup(t);
  const locks = fakeLocks();
  const storage = fakeStorage();
  const { client } = make({ storage, locks, refreshTimeoutSeconds: 0.2 });
  await client.login({ username: "alice", password: "pw" });
  // Another tab took the lock and froze.
  void locks.request(`${KEY}:refresh`, {}, () => new Promise(() => {}));
  const started = Date.now();
  await assert.rejects(within(3000, client.refresh()), (err) => err instanceof SessionError && err.code === "lock_timeout");
  assert.ok(Date.now() - started < 2000);
  assert.equal(client.isSignedIn(), true);
});

// Proves the background timer backs off after a timed-out refresh and succeeds on the retry.
test("after a hung refresh times out, the background timer retries with backoff and recovers", async (t) => {
  const { server, make } = await setup(t, { accessTtl: 1 });
  const faults = faultyFetch();
  const { client, events } = make({ fetch: faults.fetch, refreshTimeoutSeconds: 0.2 });
  await client.login({ username: "alice", password: "pw" });
  faults.on(REFRESH, hang);
  // Timer at ~0.8 s, aborted at ~1.0 s, retried 1 s later.
  await sleep(1500);
  assert.equal(faults.count(REFRESH), 1, "no retry storm right after the timeout");
  await sleep(1000);
  assert.equal(server.refreshCount(), 1, "the retry went through");
  assert.equal((await client.fetch("/api/x")).status, 200);
  assert.deepEqual(events, []);
});

// ---- 2. a restored tab never spends a spent refresh token ----------------------

// Proves a tab restored with an old per-tab copy of the tokens does not present a rotated refresh token (no reuse, others stay signed in).
test("a restored tab with an outdated per-tab copy signs itself out instead of tripping reuse detection", async (t) => {
  const { server, make } = await setup(t);
  const shared = fakeStorage(); // localStorage: the ledger lives here
  const { request } = fakeLocks(); // no query(): the 10 s "rotated" markers are long gone
  const locks = { request };
  const aStorage = fakeStorage(); // sessionStorage of tab A
  const a = make({ storage: aStorage, sharedStorage: shared, locks });
  await a.client.login({ username: "alice", password: "pw" });
  const snapshot = aStorage.getItem(KEY); // what a discarded (or duplicated) tab keeps
  await a.client.refresh();
  await a.client.refresh();

  const bStorage = fakeStorage();
  bStorage.setItem(KEY, snapshot);
  const b = make({ storage: bStorage, sharedStorage: shared, locks }); // the tab is restored
  expireLocally(bStorage);
  const res = await b.client.fetch("/api/x");
  assert.equal(res.status, 401);
  assert.equal(reused(server), 0, "the spent refresh token was presented");
  assert.equal(server.refreshCount(), 2, "tab B sent no refresh at all");
  assert.deepEqual(b.events.map((e) => e.reason), ["superseded"]);
  assert.equal(bStorage.getItem(KEY), null);
  // Tab A's session is untouched.
  assert.equal((await a.client.fetch("/api/x")).status, 200);
  assert.deepEqual(a.events, []);
});

// Control (passes before the fix too): with shared storage, the default now, a tab created later uses the current tokens.
test("with shared storage a tab created after other tabs' refreshes continues the session", async (t) => {
  const { server, make } = await setup(t);
  const storage = fakeStorage();
  const a = make({ storage, locks: fakeLocks() });
  await a.client.login({ username: "alice", password: "pw" });
  await a.client.refresh();
  a.client.close();
  const b = make({ storage, locks: fakeLocks() });
  expireLocally(storage);
  assert.equal((await b.client.fetch("/api/x")).status, 200);
  assert.equal(reused(server), 0);
  assert.deepEqual(b.events, []);
});

// ---- 3. logout tells whether the server ended the session --------------------------

// Proves logout() resolves true when the server revoked the session.
test("logout resolves true when the server ended the session", async (t) => {
  const { server, make } = await setup(t);
  const { client } = make();
  const { sessionId } = await client.login({ username: "alice", password: "pw" });
  assert.equal(await client.logout(), true);
  assert.equal(server.sessions.get(sessionId).revoked, true);
});

// Proves logout() retries transient failures and resolves true once the server answers.
test("logout retries a 503 and a network error, then succeeds", async (t) => {
  const { server, make } = await setup(t);
  const faults = faultyFetch();
  const { client } = make({ fetch: faults.fetch });
  const { sessionId } = await client.login({ username: "alice", password: "pw" });
  faults.on(LOGOUT, answer(503, "store_unavailable"));
  faults.on(LOGOUT, offline);
  assert.equal(await client.logout(), true);
  assert.equal(faults.count(LOGOUT), 3);
  assert.equal(server.sessions.get(sessionId).revoked, true);
  assert.equal(client.isSignedIn(), false);
});

// Proves a cookie-mode logout that never reached the server reports false, and the next page load ends the session instead of resuming it.
test("cookie mode: a failed logout resolves false and the next resume() finishes it instead of resuming", async (t) => {
  const { server, make } = await setup(t, { cookie: true });
  const jar = cookieJarFetch();
  const faults = faultyFetch(jar.fetch);
  const shared = fakeStorage(); // localStorage
  const { client } = make({ refreshCookie: true, fetch: faults.fetch, sharedStorage: shared });
  const { sessionId } = await client.login({ username: "alice", password: "pw" });
  faults.on(LOGOUT, offline, 3);
  assert.equal(await client.logout(), false);
  assert.equal(faults.count(LOGOUT), 3, "retried");
  assert.equal(client.isSignedIn(), false, "signed out locally all the same");
  assert.equal(server.sessions.get(sessionId).revoked, false);

  // Reload: a fresh page with the cookie still in the jar.
  const reloaded = make({ refreshCookie: true, fetch: faults.fetch, sharedStorage: shared }).client;
  assert.equal(await reloaded.resume(), false, "the session the user signed out of was resumed");
  assert.equal(server.sessions.get(sessionId).revoked, true, "the retried logout revoked it");
  assert.equal(server.refreshCount(), 0);
  // And the mark is gone: a later load is an ordinary signed-out start.
  assert.equal(await make({ refreshCookie: true, fetch: faults.fetch, sharedStorage: shared }).client.resume(), false);
  assert.equal(faults.count(LOGOUT), 4);
});

// Proves logout() resolves false (no retry) when the server refuses it for good.
test("logout resolves false when the server refuses it", async (t) => {
  const { make } = await setup(t);
  const faults = faultyFetch();
  const { client } = make({ fetch: faults.fetch });
  await client.login({ username: "alice", password: "pw" });
  faults.on(LOGOUT, answer(403, "invalid_request"));
  assert.equal(await client.logout(), false);
  assert.equal(faults.count(LOGOUT), 1);
  assert.equal(client.isSignedIn(), false);
});

// ---- 4. a refresh refused for good ends the session ---------------------------------

// Proves a non-retryable 4xx on refresh (403 invalid_request) ends the session once with a clear reason, with no retry loop.
test("a 403 invalid_request on refresh ends the session with reason refresh_rejected and is not retried", async (t) => {
  const { server, make } = await setup(t, { accessTtl: 1 });
  const faults = faultyFetch();
  const storage = fakeStorage();
  const { client, events } = make({ storage, fetch: faults.fetch });
  await client.login({ username: "alice", password: "pw" });
  faults.on(REFRESH, answer(403, "invalid_request"), 100);
  await sleep(2500); // background timer at ~0.8 s; a retry loop would make several attempts
  assert.equal(faults.count(REFRESH), 1);
  assert.equal(events.length, 1);
  assert.equal(events[0].reason, "refresh_rejected");
  assert.equal(events[0].code, "invalid_request");
  assert.match(events[0].message, /sign in again/);
  assert.equal(storage.getItem(KEY), null);
  assert.equal(server.refreshCount(), 0);
});

// Proves 429 and 5xx stay transient (the session is kept) while other 4xx end it.
test("429 and 503 on refresh keep the session; 409 ends it", async (t) => {
  const { make } = await setup(t);
  const faults = faultyFetch();
  const storage = fakeStorage();
  const { client, events } = make({ storage, fetch: faults.fetch });
  await client.login({ username: "alice", password: "pw" });
  faults.on(REFRESH, answer(503, "store_unavailable"));
  await assert.rejects(client.refresh(), (err) => err.code === "store_unavailable" && err.endReason === null);
  faults.on(REFRESH, answer(429, "rate_limited"));
  await assert.rejects(client.refresh(), (err) => err.code === "rate_limited" && err.endReason === null);
  assert.equal(client.isSignedIn(), true);
  faults.on(REFRESH, answer(409, "conflict"));
  await assert.rejects(client.refresh(), (err) => err.endReason === "refresh_rejected");
  assert.equal(client.isSignedIn(), false);
  assert.deepEqual(events.map((e) => [e.reason, e.code]), [["refresh_rejected", "conflict"]]);
});

// ---- 5. nothing secret on the BroadcastChannel -----------------------------------

// Proves no token (refresh or access) is ever posted on the BroadcastChannel.
test("the BroadcastChannel carries no token, only change signals", async (t) => {
  const { make } = await setup(t);
  const channelName = `secret-check-${process.pid}`;
  const seen = [];
  const listener = new BroadcastChannel(channelName);
  listener.onmessage = (e) => seen.push(JSON.stringify(e.data));
  t.after(() => listener.close());
  const storage = fakeStorage();
  const { client } = make({ storage, channelName, locks: null });
  await client.login({ username: "alice", password: "pw" });
  const tokens = [stored(storage).accessToken, stored(storage).refreshToken];
  await client.refresh();
  tokens.push(stored(storage).accessToken, stored(storage).refreshToken);
  await client.logout();
  await sleep(50);
  assert.ok(seen.some((m) => m.includes('"changed"')), "no change signal seen");
  for (const message of seen) {
    for (const token of tokens) assert.ok(!message.includes(token), `a token was broadcast: ${message.slice(0, 40)}…`);
  }
});

// ---- 6. timers, 401 codes, logout racing a refresh ----------------------------------

// Proves a token living longer than setTimeout's 24.8-day limit is not refreshed at once.
test("a 30-day token is not refreshed right away (setTimeout overflow)", async (t) => {
  const { server, make } = await setup(t, { accessTtl: 30 * 86400 });
  const delays = [];
  const realSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = (fn, ms, ...args) => (delays.push(ms ?? 0), realSetTimeout(fn, ms, ...args));
  t.after(() => (globalThis.setTimeout = realSetTimeout));
  const { client } = make();
  await client.login({ username: "alice", password: "pw" });
  await sleep(300);
  globalThis.setTimeout = realSetTimeout;
  assert.equal(server.refreshCount(), 0);
  assert.ok(delays.every((ms) => ms <= 2 ** 31 - 1), "a delay setTimeout can't hold was set");
  assert.ok(delays.length < 50, `the timer spins: ${delays.length} timeouts in 300 ms`);
});

// Proves only a 401 token_expired triggers refresh-and-retry; invalid_token is returned as is.
test("a 401 invalid_token is returned as is, without a refresh", async (t) => {
  const { server, make } = await setup(t);
  const storage = fakeStorage();
  const { client, events } = make({ storage });
  await client.login({ username: "alice", password: "pw" });
  storage.setItem(KEY, JSON.stringify({ ...stored(storage), accessToken: "at-forged" }));
  const res = await client.fetch("/api/x");
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error, "invalid_token");
  assert.equal(server.refreshCount(), 0);
  assert.equal(client.isSignedIn(), true);
  assert.deepEqual(events, []);
});

// Proves a logout in one tab waits for another tab's refresh and ends the session with its tokens: the other tab sees "logged_out", not a revocation.
test("logout while another tab refreshes: the refresh finishes first, the other tab sees logged_out", async (t) => {
  const { server, a, b } = await twoTabsSignedIn(t, { refreshDelayMs: 150 });
  const refreshing = a.client.refresh();
  await sleep(20); // tab A holds the lock, its request is at the server
  assert.equal(await b.client.logout(), true);
  await refreshing;
  await sleep(50);
  assert.deepEqual(a.events.map((e) => e.reason), ["logged_out"]);
  assert.equal(a.client.isSignedIn(), false);
  assert.equal(reused(server), 0);
  assert.deepEqual(server.events.filter((e) => e.type === "revoked").map((e) => e.reason), ["logout"]);
});

// Proves a logout with an access token the server no longer takes falls back to the refresh token and still ends the session.
test("logout falls back to the refresh token when the server refuses the access token", async (t) => {
  const { server, make } = await setup(t);
  const { client } = make();
  const { sessionId } = await client.login({ username: "alice", password: "pw" });
  server.expireAccessTokens(); // the client's clock still calls it valid
  assert.equal(await client.logout(), true);
  assert.equal(server.sessions.get(sessionId).revoked, true);
  assert.equal(reused(server), 0);
});

// ---- 7. the default storage survives a reload -----------------------------------------

// Proves the default storage is localStorage when the page has it: a reload keeps the session.
test("default storage: a reloaded page is still signed in", async (t) => {
  const localStorage = fakeStorage();
  globalThis.localStorage = localStorage;
  t.after(() => delete globalThis.localStorage);
  const { make } = await setup(t);
  const { client } = make({ storage: undefined });
  const { sessionId } = await client.login({ username: "alice", password: "pw" });
  assert.ok(localStorage.getItem(KEY), "tokens not in localStorage");
  client.close();
  const reloaded = make({ storage: undefined }).client;
  assert.equal(await reloaded.resume(), true);
  assert.equal(reloaded.currentSessionId(), sessionId);
  assert.equal((await reloaded.fetch("/api/x")).status, 200);
});

// Proves the election (no Web Locks) tolerates a rival's claim that arrives 100 ms late: this tab waits instead of refreshing too.
test("election without Web Locks: a rival claim 100 ms late still wins, this tab does not refresh", async (t) => {
  const { server, make } = await setup(t);
  const channelName = `election-${process.pid}`;
  const rival = new BroadcastChannel(channelName);
  t.after(() => rival.close());
  rival.onmessage = (e) => {
    // A busy tab: its claim (lowest id) goes out 100 ms after ours arrived.
    if (e.data?.type === "claim") setTimeout(() => rival.postMessage({ type: "claim", from: "0000" }), 100);
  };
  const storage = fakeStorage();
  const { client } = make({ storage, channelName, locks: null });
  await client.login({ username: "alice", password: "pw" });
  const refreshing = client.refresh().catch((err) => err);
  await sleep(600);
  assert.equal(server.refreshCount(), 0, "both tabs would have refreshed with the same token");
  // The rival finishes: it wrote new tokens to the shared storage and says so.
  const res = await fetch(`${server.url}/v1/auth/refresh`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: stored(storage).refreshToken }),
  });
  const body = await res.json();
  const now = Date.now();
  const state = { accessToken: body.access_token, expiresAt: now + body.expires_in * 1000, obtainedAt: now, sessionId: body.session_id, refreshToken: body.refresh_token };
  storage.setItem(KEY, JSON.stringify(state));
  rival.postMessage({ type: "changed", from: "0000", sessionId: state.sessionId, obtainedAt: now });
  await refreshing;
  assert.equal(stored(storage).accessToken, state.accessToken);
  assert.equal(server.refreshCount(), 1);
  assert.equal(reused(server), 0);
});
