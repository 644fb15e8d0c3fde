// A small in-process stand-in for sessiongate's /v1/auth routes (SPEC 4) and a
// protected API, with the behaviour the client relies on: login, refresh with
// rotation, reuse detection (strict by default: reuse_grace 0), 401 codes,
// sessions list/revoke, logout, the refresh cookie mode, and the user's
// security activity with cursor paging (SPEC 4.8).
import http from "node:http";
import { randomBytes } from "node:crypto";
import { createSessionClient } from "../../dist/index.js";

const COOKIE = "sg_refresh";

/**
 * @param {{accessTtl?: number, reuseGraceMs?: number, cookie?: boolean, refreshDelayMs?: number}} [options]
 */
export async function startAuthServer(options = {}) {
  const cfg = { accessTtl: 60, reuseGraceMs: 0, cookie: false, refreshDelayMs: 0, ...options };
  /** @type {Map<string, any>} */
  const sessions = new Map();
  /** @type {Map<string, {sid: string, exp: number}>} */
  const access = new Map();
  /** refresh token -> session id, for every token ever issued */
  const refreshIndex = new Map();
  const requests = [];
  const events = [];
  // endReplyDelayMs: logout and revoke-all end the sessions at once but answer
  // that late, the window in which another tab's request already sees the end.
  const behaviour = { apiAlwaysExpired: false, securityEventsBody: null, endReplyDelayMs: 0 };
  const endReplyDelay = () => new Promise((r) => setTimeout(r, behaviour.endReplyDelayMs));
  /** Security events of every user, oldest first (SPEC 4.8 lists them newest first). */
  const securityEvents = [];
  let eventSeq = 0;

  function record(sub, type, fields = {}) {
    const n = ++eventSeq;
    const event = {
      n, sub, id: `ev-${n}`, type, at: new Date().toISOString(), session_id: "", ip: "127.0.0.1", user_agent: "",
      ...fields,
    };
    securityEvents.push(event);
    return event;
  }
  const sessionFields = (s) => ({ session_id: s.id, ip: s.ip, user_agent: s.ua });
  const cursorFor = (n) => Buffer.from(`n:${n}`).toString("base64url");
  const cursorValue = (c) => {
    const m = /^n:(\d+)$/.exec(/^[A-Za-z0-9_-]+$/.test(c) ? Buffer.from(c, "base64url").toString("utf8") : "");
    return m ? Number(m[1]) : null;
  };

  const token = (prefix) => `${prefix}-${randomBytes(16).toString("base64url")}`;

  function issueAccess(session) {
    const at = token("at");
    access.set(at, { sid: session.id, exp: Date.now() + cfg.accessTtl * 1000 });
    return at;
  }

  function tokenResponse(res, session, refreshToken) {
    const headers = {};
    if (cfg.cookie) headers["Set-Cookie"] = `${COOKIE}=${refreshToken}; HttpOnly; Path=/v1/auth; SameSite=Strict`;
    json(res, 200, {
      access_token: issueAccess(session),
      token_type: "Bearer",
      expires_in: cfg.accessTtl,
      refresh_token: refreshToken,
      session_id: session.id,
    }, headers);
  }

  function bearer(req, res) {
    const h = req.headers.authorization;
    if (!h) return void error(res, 401, "missing_token", "No token.");
    const m = /^Bearer (.+)$/i.exec(h);
    const entry = m && access.get(m[1]);
    if (!entry) return void error(res, 401, "invalid_token", "Bad token.");
    const session = sessions.get(entry.sid);
    if (session.revoked) return void error(res, 401, "session_revoked", "Session revoked.");
    if (entry.exp <= Date.now() || behaviour.apiAlwaysExpired) return void error(res, 401, "token_expired", "Expired.");
    return session;
  }

  function cookieToken(req) {
    const m = new RegExp(`(?:^|;\\s*)${COOKIE}=([^;]+)`).exec(req.headers.cookie ?? "");
    return m ? m[1] : null;
  }

  function revoke(session, reason) {
    if (!session.revoked) {
      session.revoked = true;
      events.push({ type: "revoked", sid: session.id, reason });
      if (reason === "user" || reason === "logout") record(session.sub, "session_revoked", sessionFields(session));
    }
  }

  async function handle(req, res, body) {
    const url = new URL(req.url, "http://x");
    const path = url.pathname;
    const route = `${req.method} ${path}`;
    if (route === "POST /v1/auth/login") {
      const creds = parse(body);
      if (!creds || creds.password !== "pw") return error(res, 401, "invalid_credentials", "Wrong username or password.");
      const now = new Date().toISOString();
      const session = {
        id: token("s"), sub: `user-${creds.username}`, current: token("rt"), previous: null,
        revoked: false, expired: false, createdAt: now, lastActiveAt: now,
        ip: "127.0.0.1", ua: req.headers["user-agent"] ?? "",
      };
      sessions.set(session.id, session);
      refreshIndex.set(session.current, session.id);
      record(session.sub, "login", sessionFields(session));
      return tokenResponse(res, session, session.current);
    }
    if (route === "POST /v1/auth/refresh") {
      if (cfg.refreshDelayMs) await new Promise((r) => setTimeout(r, cfg.refreshDelayMs));
      const parsed = body.length ? parse(body) : {};
      if (parsed === null) return error(res, 400, "invalid_request", "Bad JSON.");
      const presented = (parsed && typeof parsed.refresh_token === "string" && parsed.refresh_token) ||
        (cfg.cookie ? cookieToken(req) : null);
      if (!presented) return error(res, 400, "invalid_request", "No refresh token.");
      const session = sessions.get(refreshIndex.get(presented));
      if (!session) return error(res, 401, "invalid_refresh_token", "Unknown refresh token.");
      if (session.revoked) return error(res, 401, "session_revoked", "Session revoked.");
      if (session.expired) return error(res, 401, "session_expired", "Your session has expired. Please sign in again.");
      session.lastActiveAt = new Date().toISOString();
      if (presented === session.current) {
        session.previous = { token: session.current, at: Date.now() };
        session.current = token("rt");
        refreshIndex.set(session.current, session.id);
        events.push({ type: "rotated", sid: session.id });
        return tokenResponse(res, session, session.current);
      }
      if (session.previous?.token === presented && Date.now() - session.previous.at < cfg.reuseGraceMs) {
        events.push({ type: "grace", sid: session.id });
        return tokenResponse(res, session, session.current);
      }
      events.push({ type: "reused", sid: session.id });
      record(session.sub, "refresh_token_reuse", sessionFields(session));
      revoke(session, "reuse");
      return error(res, 401, "refresh_token_reused", "Refresh token reused.");
    }
    if (route === "POST /v1/auth/logout") {
      let session = null;
      if (req.headers.authorization) {
        session = bearer(req, res);
        if (!session) return;
      } else {
        const parsed = body.length ? parse(body) : {};
        const presented = parsed?.refresh_token || (cfg.cookie ? cookieToken(req) : null);
        session = presented ? sessions.get(refreshIndex.get(presented)) : null;
        if (!session) return error(res, 400, "invalid_request", "No token.");
      }
      revoke(session, "logout");
      await endReplyDelay();
      res.writeHead(204).end();
      return;
    }
    if (route === "GET /v1/auth/sessions") {
      const me = bearer(req, res);
      if (!me) return;
      const list = [...sessions.values()]
        .filter((s) => s.sub === me.sub && !s.revoked)
        .reverse()
        .map((s) => ({
          id: s.id, created_at: s.createdAt, last_active_at: s.lastActiveAt,
          expires_at: new Date(Date.now() + 86400000).toISOString(), ip: s.ip, user_agent: s.ua,
          current: s.id === me.id,
        }));
      return json(res, 200, { sessions: list });
    }
    if (req.method === "DELETE" && path.startsWith("/v1/auth/sessions/")) {
      const me = bearer(req, res);
      if (!me) return;
      const target = sessions.get(decodeURIComponent(path.slice("/v1/auth/sessions/".length)));
      if (!target || target.sub !== me.sub || target.revoked) return error(res, 404, "not_found", "No such session.");
      revoke(target, "user");
      res.writeHead(204).end();
      return;
    }
    if (route === "POST /v1/auth/sessions/revoke-all") {
      const me = bearer(req, res);
      if (!me) return;
      const keep = parse(body)?.keep_current === true;
      record(me.sub, "revoke_all", sessionFields(me));
      let n = 0;
      for (const s of sessions.values()) {
        if (s.sub === me.sub && !s.revoked && !(keep && s.id === me.id)) {
          revoke(s, "revoke_all");
          n++;
        }
      }
      await endReplyDelay();
      return json(res, 200, { revoked: n });
    }
    if (route === "GET /v1/auth/security-events") {
      const me = bearer(req, res);
      if (!me) return;
      if (behaviour.securityEventsBody !== null) {
        return void res.writeHead(200, { "Content-Type": "application/json" }).end(behaviour.securityEventsBody);
      }
      let limit = 50;
      let before = Infinity;
      for (const [name, value] of url.searchParams) {
        if (name === "limit" && /^\d{1,3}$/.test(value) && Number(value) >= 1 && Number(value) <= 200) limit = Number(value);
        else if (name === "before" && cursorValue(value) !== null) before = cursorValue(value);
        else return error(res, 400, "invalid_request", `Bad query parameter ${name}.`);
      }
      const mine = securityEvents.filter((e) => e.sub === me.sub && e.n < before).reverse();
      const page = mine.slice(0, limit);
      return json(res, 200, {
        events: page.map(({ n: _n, sub: _sub, ...e }) => ({ ...e, current_session: e.session_id === me.id })),
        next: mine.length > limit ? cursorFor(page.at(-1).n) : null,
      });
    }
    if (path.startsWith("/api/")) {
      const me = bearer(req, res);
      if (!me) return;
      return json(res, 200, { sub: me.sub, path, method: req.method, body: body.toString("utf8") });
    }
    return error(res, 404, "not_found", "Not found.");
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests.push({
        method: req.method, path: new URL(req.url, "http://x").pathname, search: new URL(req.url, "http://x").search,
        headers: { ...req.headers }, body: body.toString("utf8"),
      });
      handle(req, res, body).catch((err) => {
        res.writeHead(500).end(String(err));
      });
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();

  return {
    url: `http://127.0.0.1:${port}`,
    cfg,
    behaviour,
    requests,
    events,
    sessions,
    /** number of requests with this method and path */
    count(method, path) {
      return requests.filter((r) => r.method === method && r.path === path).length;
    },
    refreshCount() {
      return this.count("POST", "/v1/auth/refresh");
    },
    /** every access token issued so far expires now (server side only) */
    expireAccessTokens() {
      for (const entry of access.values()) entry.exp = 0;
    },
    setSessionExpired(sid) {
      sessions.get(sid).expired = true;
    },
    revokeSession(sid) {
      revoke(sessions.get(sid), "admin");
    },
    /** Records a security event for `sub` (fields as in SPEC 4.8, e.g. a hostile user_agent). */
    addSecurityEvent(sub, type, fields = {}) {
      return record(sub, type, fields);
    },
    /** The security events the server holds for `sub`, oldest first. */
    securityEventsOf(sub) {
      return securityEvents.filter((e) => e.sub === sub);
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

function parse(buf) {
  try {
    return JSON.parse(buf.toString("utf8"));
  } catch {
    return null;
  }
}

function json(res, status, body, headers = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers }).end(JSON.stringify(body));
}

function error(res, status, code, message) {
  const headers = { "Content-Type": "application/json" };
  if (status === 401) headers["WWW-Authenticate"] = `Bearer realm="sessiongate", error="invalid_token"`;
  res.writeHead(status, headers).end(JSON.stringify({ error: code, message }));
}

let channelSeq = 0;

/**
 * Server + client(s) with cleanup: `make(options)` creates a client of the
 * built package (own BroadcastChannel name per test) and collects its
 * `sessionended` events.
 */
export async function setup(t, serverOptions = {}) {
  const server = await startAuthServer(serverOptions);
  const channelName = `test-${process.pid}-${++channelSeq}`;
  const clients = [];
  const make = (options = {}) => {
    const client = createSessionClient({ baseUrl: server.url, storage: fakeStorage(), channelName, ...options });
    const events = [];
    client.on("sessionended", (e) => events.push(e));
    clients.push(client);
    return { client, events };
  };
  t.after(async () => {
    for (const c of clients) c.close();
    await server.close();
  });
  return { server, make };
}

/** Two tabs of one browser (shared storage, Web Locks, channel), the first signed in; `make` as `setup`'s. */
export async function twoTabsSignedIn(t, serverOptions = {}) {
  const { server, make } = await setup(t, serverOptions);
  const storage = fakeStorage();
  const locks = fakeLocks();
  const a = make({ storage, locks });
  const b = make({ storage, locks });
  await a.client.login({ username: "alice", password: "pw" });
  await sleep(20);
  return { server, make, storage, locks, a, b };
}

/** A storage object like localStorage, in memory; `raw` exposes the map. */
export function fakeStorage() {
  const raw = new Map();
  return {
    raw,
    getItem: (k) => (raw.has(k) ? raw.get(k) : null),
    setItem: (k, v) => void raw.set(k, String(v)),
    removeItem: (k) => void raw.delete(k),
  };
}

/** An in-process Web Locks stand-in: one FIFO queue per lock name, and `query()`. */
export function fakeLocks() {
  const tails = new Map();
  const held = new Map();
  let granted = 0;
  return {
    get granted() {
      return granted;
    },
    // As navigator.locks: request(name, callback) or request(name, {signal}, callback).
    request(name, options, callback) {
      if (typeof options === "function") [options, callback] = [{}, options];
      const prev = tails.get(name) ?? Promise.resolve();
      const signal = options.signal;
      let mine = false;
      const run = prev.then(async () => {
        if (signal?.aborted) throw signal.reason ?? new Error("aborted");
        mine = true;
        granted++;
        held.set(name, (held.get(name) ?? 0) + 1);
        try {
          return await callback();
        } finally {
          const n = held.get(name) - 1;
          if (n === 0) held.delete(name);
          else held.set(name, n);
        }
      });
      tails.set(name, run.catch(() => undefined));
      if (!signal) return run;
      // An aborted wait rejects at once, as in browsers; the queue moves on without it.
      return new Promise((resolve, reject) => {
        const onAbort = () => {
          if (!mine) reject(signal.reason ?? new Error("aborted"));
        };
        signal.addEventListener("abort", onAbort, { once: true });
        run.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
      });
    },
    async query() {
      return { held: [...held.keys()].map((name) => ({ name, mode: "exclusive" })), pending: [] };
    },
  };
}

/**
 * localStorage as Chromium has it across renderer processes: each tab sees
 * its own writes at once and other tabs' writes only after `lagMs`.
 */
export function laggyStorage(lagMs) {
  const views = [];
  return () => {
    const raw = new Map();
    const view = {
      raw,
      getItem: (k) => (raw.has(k) ? raw.get(k) : null),
      setItem: (k, v) => {
        raw.set(k, String(v));
        for (const other of views) if (other !== view) setTimeout(() => other.raw.set(k, String(v)), lagMs);
      },
      removeItem: (k) => {
        raw.delete(k);
        for (const other of views) if (other !== view) setTimeout(() => other.raw.delete(k), lagMs);
      },
    };
    views.push(view);
    return view;
  };
}

/**
 * A fetch with a tiny cookie jar (Node's fetch has none), sending cookies only
 * with `credentials: "include"`, and recording what the client asked for.
 */
export function cookieJarFetch() {
  const jar = new Map();
  const calls = [];
  const fn = async (input, init) => {
    const req = new Request(input, init);
    const credentials = init?.credentials ?? req.credentials;
    calls.push({ url: req.url, method: req.method, credentials, body: init?.body ?? null });
    if (credentials === "include" && jar.size) {
      req.headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "));
    }
    const res = await fetch(req);
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const i = pair.indexOf("=");
      jar.set(pair.slice(0, i), pair.slice(i + 1));
    }
    return res;
  };
  return { fetch: fn, calls, jar };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
