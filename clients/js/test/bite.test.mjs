// Behaviour of client.ts that a one-line change could break without any other
// test noticing (issue 18, "tests with bite"), and the newer API
// (getAccessToken, wake-ups, the initial state event, getSession).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Window } from "happy-dom";
import { setup, fakeStorage, fakeLocks, sleep } from "./helpers/server.mjs";
import { faultyFetch, answer, late } from "./helpers/faults.mjs";

const KEY = "sessiongate.session";
const REFRESH = "/v1/auth/refresh";
const stored = (storage) => JSON.parse(storage.getItem(KEY));
/** Makes the stored 60 s token one that expires in `msLeft` (as if time had passed). */
const nearExpiry = (storage, msLeft) => {
  const expiresAt = Date.now() + msLeft;
  storage.setItem(KEY, JSON.stringify({ ...stored(storage), expiresAt, obtainedAt: expiresAt - 60_000 }));
};

// Proves a transient failure of the background refresh is retried by the timer (about 1 s later).
test("timer retry: a 503 on the background refresh is retried and the session goes on", async (t) => {
  const { server, make } = await setup(t, { accessTtl: 1 });
  const faults = faultyFetch();
  const { client, events } = make({ fetch: faults.fetch });
  await client.login({ username: "alice", password: "pw" });
  faults.on(REFRESH, answer(503, "store_unavailable"));
  await sleep(2300);
  const [first, second] = faults.attempts.filter((a) => a.path === REFRESH);
  assert.ok(second, "no retry");
  assert.ok(second.at - first.at >= 900, `retried after ${second.at - first.at} ms`);
  assert.ok(server.refreshCount() >= 1);
  assert.deepEqual(events, []);
});

// Proves the timer waits as long as Retry-After says (2 s), not its own 1 s backoff.
test("Retry-After: the background refresh waits as long as the server asks", async (t) => {
  const { make } = await setup(t, { accessTtl: 1 });
  const faults = faultyFetch();
  const { client } = make({ fetch: faults.fetch });
  await client.login({ username: "alice", password: "pw" });
  faults.on(REFRESH, answer(429, "rate_limited", { "Retry-After": "2" }));
  await sleep(3300);
  const [first, second] = faults.attempts.filter((a) => a.path === REFRESH);
  assert.ok(second, "no retry");
  assert.ok(second.at - first.at >= 1900, `retried after ${second.at - first.at} ms`);
  // And no refresh is sent in the meantime, not even for a call that needs one.
});

// Proves a refresh asked for during Retry-After fails at once without a request.
test("Retry-After: refreshes inside the window fail fast with rate_limited", async (t) => {
  const { make } = await setup(t);
  const faults = faultyFetch();
  const { client } = make({ fetch: faults.fetch });
  await client.login({ username: "alice", password: "pw" });
  faults.on(REFRESH, answer(429, "rate_limited", { "Retry-After": "30" }));
  await assert.rejects(client.refresh(), (err) => err.code === "rate_limited" && err.retryAfter === 30);
  await assert.rejects(client.refresh(), (err) => err.code === "rate_limited");
  assert.equal(faults.count(REFRESH), 1);
});

// Proves a request that carries its own Authorization header is sent untouched.
test("the caller's own Authorization header is kept", async (t) => {
  const { server, make } = await setup(t);
  const { client } = make();
  await client.login({ username: "alice", password: "pw" });
  await client.fetch("/api/x", { headers: { Authorization: "Bearer mine" } });
  assert.equal(server.requests.at(-1).headers.authorization, "Bearer mine");
});

// Proves revoking the current session from the sessions API signs this client out.
test("revoking the current session signs this client out", async (t) => {
  const { server, make } = await setup(t);
  const { client } = make();
  const states = [];
  client.on("statechange", (e) => states.push(e.signedIn));
  const { sessionId } = await client.login({ username: "alice", password: "pw" });
  await client.revokeSession(sessionId);
  assert.equal(client.isSignedIn(), false);
  assert.deepEqual(states, [true, false]);
  assert.equal(server.sessions.get(sessionId).revoked, true);
});

// Proves a refresh answer that arrives after a sign-out is dropped (the epoch guard).
test("epoch guard: tokens from a refresh that outlived a sign-out are not stored", async (t) => {
  const { make } = await setup(t);
  const faults = faultyFetch();
  const storage = fakeStorage();
  // No channel, no locks: the refresh request leaves at once.
  const { client } = make({ storage, fetch: faults.fetch, channelName: null, locks: null });
  await client.login({ username: "alice", password: "pw" });
  faults.on(REFRESH, late(200));
  const refreshing = client.refresh().catch((err) => err);
  await sleep(50);
  assert.equal(faults.count(REFRESH), 1, "the refresh request was sent");
  await client.revokeAll(); // signs out while the refresh answer is on its way
  const outcome = await refreshing;
  assert.equal(outcome?.code, "not_signed_in");
  assert.equal(client.isSignedIn(), false);
  assert.equal(storage.getItem(KEY), null);
});

// Proves logout uses the access token while it is valid, and sends no refresh token then.
test("logout prefers the Bearer access token", async (t) => {
  const { make } = await setup(t);
  const faults = faultyFetch();
  const { client } = make({ fetch: faults.fetch });
  await client.login({ username: "alice", password: "pw" });
  await client.logout();
  const call = faults.attempts.find((a) => a.path === "/v1/auth/logout");
  assert.match(call.authorization ?? "", /^Bearer at-/);
  assert.equal(call.body, null);
});

// Proves logout uses the refresh token when the access token has expired locally.
test("logout with an expired access token sends the refresh token instead", async (t) => {
  const { server, make } = await setup(t);
  const faults = faultyFetch();
  const storage = fakeStorage();
  const { client } = make({ storage, fetch: faults.fetch });
  const { sessionId } = await client.login({ username: "alice", password: "pw" });
  storage.setItem(KEY, JSON.stringify({ ...stored(storage), expiresAt: Date.now() - 1 }));
  assert.equal(await client.logout(), true);
  const call = faults.attempts.find((a) => a.path === "/v1/auth/logout");
  assert.equal(call.authorization, null);
  assert.match(call.body, /refresh_token/);
  assert.equal(server.sessions.get(sessionId).revoked, true);
});

// Proves a "changed" signal about tokens older than the ones held is ignored (no event, no timer change).
test("a signal about older tokens from another tab is ignored", async (t) => {
  const { make } = await setup(t);
  const storage = fakeStorage();
  const channelName = `older-${process.pid}`;
  const a = make({ storage, channelName, locks: fakeLocks() });
  const b = make({ storage, channelName, locks: fakeLocks() });
  const seen = [];
  b.client.on("refresh", (e) => seen.push(e));
  await a.client.login({ username: "alice", password: "pw" });
  const loginState = stored(storage);
  await sleep(100);
  await a.client.refresh();
  await sleep(100);
  assert.equal(seen.length, 2, "the other tab's login and refresh were followed");
  assert.deepEqual(seen.map((e) => e.local), [false, false]);
  const other = new BroadcastChannel(channelName);
  other.postMessage({ type: "changed", from: "tab-x", sessionId: loginState.sessionId, obtainedAt: loginState.obtainedAt });
  await sleep(100);
  other.close();
  assert.equal(seen.length, 2);
});

// Proves the validity margin: a token with less than 1 s left is refreshed before it is sent.
test("validity margin: a token about to expire is refreshed before the request", async (t) => {
  const { server, make } = await setup(t);
  const storage = fakeStorage();
  const { client } = make({ storage });
  await client.login({ username: "alice", password: "pw" });
  const before = stored(storage).accessToken;
  nearExpiry(storage, 500);
  assert.equal((await client.fetch("/api/x")).status, 200);
  assert.equal(server.refreshCount(), 1);
  assert.notEqual(server.requests.at(-1).headers.authorization, `Bearer ${before}`);
});

// ---- getAccessToken, wake-ups, initial state, getSession ------------------------------

// Proves getAccessToken returns the held token while it is valid long enough and refreshes otherwise.
test("getAccessToken({ minValidity }) refreshes only a token that expires too soon", async (t) => {
  const { server, make } = await setup(t); // 60 s tokens
  const { client } = make();
  assert.equal(await client.getAccessToken(), null);
  await client.login({ username: "alice", password: "pw" });
  const first = await client.getAccessToken({ minValidity: 30 });
  assert.match(first, /^at-/);
  assert.equal(server.refreshCount(), 0);
  const second = await client.getAccessToken({ minValidity: 120 });
  assert.notEqual(second, first);
  assert.equal(server.refreshCount(), 1);
  // Longer than any token lives: refreshed once per call, not in a loop.
  assert.match(await client.getAccessToken({ minValidity: 120 }), /^at-/);
  assert.equal(server.refreshCount(), 2);
});

for (const [what, fire] of [
  ["the tab becomes visible", (win) => win.document.dispatchEvent(new win.Event("visibilitychange"))],
  ["the browser comes back online", (win) => win.dispatchEvent(new win.Event("online"))],
]) {
  // Proves a due token is refreshed at once when the page wakes up, not only when the (throttled) timer fires.
  test(`refresh when ${what}`, async (t) => {
    const win = new Window({ url: "https://app.example.test/" });
    globalThis.window = win;
    globalThis.document = win.document;
    t.after(() => {
      delete globalThis.window;
      delete globalThis.document;
      win.happyDOM.close();
    });
    const { server, make } = await setup(t);
    const storage = fakeStorage();
    const { client } = make({ storage });
    await client.login({ username: "alice", password: "pw" });
    // As after a long sleep: the token is due but the timer has not fired.
    nearExpiry(storage, 5000);
    await sleep(50);
    assert.equal(server.refreshCount(), 0);
    fire(win);
    await sleep(200);
    assert.equal(server.refreshCount(), 1);
    client.close();
    fire(win); // listeners are removed on close
    await sleep(100);
    assert.equal(server.refreshCount(), 1);
  });
}

// Proves resume() ends with one statechange event marked initial, signed in or not.
test("resume() emits the initial state", async (t) => {
  const { make } = await setup(t);
  const storage = fakeStorage();
  const { client } = make({ storage });
  const states = [];
  client.on("statechange", (e) => states.push(e));
  await client.resume();
  await client.login({ username: "alice", password: "pw" });
  const reloaded = make({ storage }).client;
  const reloadedStates = [];
  reloaded.on("statechange", (e) => reloadedStates.push(e));
  await reloaded.resume();
  assert.deepEqual(states.map((e) => [e.signedIn, e.initial]), [[false, true], [true, false]]);
  assert.deepEqual(reloadedStates.map((e) => [e.signedIn, e.initial, e.sessionId]), [[true, true, client.currentSessionId()]]);
});

// Proves getSession exposes the session id, expiry and the access token's (unverified) claims.
test("getSession() decodes the claims of a JWT access token", async (t) => {
  const { make } = await setup(t);
  const storage = fakeStorage();
  const { client } = make({ storage });
  assert.equal(client.getSession(), null);
  await client.login({ username: "alice", password: "pw" });
  assert.equal(client.getSession().claims, null, "an opaque token has no claims");
  const payload = Buffer.from(JSON.stringify({ sub: "user-ä", sid: "s-1", ext: { role: "admin" } })).toString("base64url");
  const state = { ...stored(storage), accessToken: `eyJhbGciOiJFZERTQSJ9.${payload}.sig` };
  storage.setItem(KEY, JSON.stringify(state));
  const snapshot = client.getSession();
  assert.equal(snapshot.sessionId, state.sessionId);
  assert.equal(snapshot.expiresAt, state.expiresAt);
  assert.deepEqual(snapshot.claims, { sub: "user-ä", sid: "s-1", ext: { role: "admin" } });
});
