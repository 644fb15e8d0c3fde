import {
  END_MESSAGES,
  SessionError,
  endReasonFor,
  errorFromResponse,
  isRecord,
  readServerError,
  type SessionEndReason,
} from "./errors.js";
import { createMemoryStorage, parseState, readState, type TokenState, type TokenStorage } from "./storage.js";

/** The subset of `fetch` the client needs (inject one for tests or cookie jars). */
export type FetchLike = (input: Request | string | URL, init?: RequestInit) => Promise<Response>;

/** The subset of the Web Locks API (`navigator.locks`) the client needs. */
export interface LockManagerLike {
  request<T>(name: string, callback: () => Promise<T>): Promise<T>;
  /**
   * Optional, as in `navigator.locks`: the locks held right now. With it the
   * client can tell that another tab already rotated the refresh token even
   * when that tab's write to shared storage has not reached this tab yet.
   */
  query?(): Promise<{ held?: { name?: string }[] }>;
}

/** Options of {@link createSessionClient}. */
export interface SessionClientOptions {
  /**
   * Where sessiongate answers (scheme, host, optional path prefix), e.g.
   * `https://app.example.com`. Defaults to the page's origin. The access token
   * is only ever attached to requests for this origin.
   */
  baseUrl?: string;
  /**
   * Where tokens are kept. Defaults to memory (lost on reload). Pass
   * `localStorage` to survive reloads and to share one session between tabs.
   */
  storage?: TokenStorage;
  /** Storage key, also the name of the refresh lock. Default `sessiongate.session`. */
  storageKey?: string;
  /**
   * Refresh-cookie mode (SPEC `sessions.refresh_cookie`): the refresh token is
   * an HttpOnly cookie and never reaches JavaScript; refresh and logout are
   * sent with `credentials: "include"` and no token in the body.
   */
  refreshCookie?: boolean;
  /**
   * How many seconds before expiry to refresh in the background. Default:
   * 20% of the token lifetime, at most 60 s (a 15-minute token is refreshed
   * after 14 minutes, a 5-second one after 4 seconds).
   */
  refreshMarginSeconds?: number;
  /** BroadcastChannel name used to share tokens between tabs; `null` disables. Default `sessiongate`. */
  channelName?: string | null;
  /** Lock manager; defaults to `navigator.locks` when the browser has it. `null` disables. */
  locks?: LockManagerLike | null;
  /** `fetch` implementation. Defaults to the global one. */
  fetch?: FetchLike;
  /** Login path (SPEC `login.path`). Default `/v1/auth/login`. */
  loginPath?: string;
}

/** Fired when the session ended without the user signing out on this tab. */
export interface SessionEndedEvent {
  reason: SessionEndReason;
  /** A sentence to show to the user, e.g. "Your session has expired. Please sign in again." */
  message: string;
}

/** Fired whenever signed-in state changes (login, logout, session end, another tab). */
export interface StateChangeEvent {
  signedIn: boolean;
  sessionId: string | null;
}

/** Fired when this tab (or another one) obtained fresh tokens. */
export interface RefreshEvent {
  sessionId: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** False when the tokens came from another tab. */
  local: boolean;
}

/** Events of a {@link SessionClient}. */
export interface SessionClientEvents {
  sessionended: SessionEndedEvent;
  statechange: StateChangeEvent;
  refresh: RefreshEvent;
}

/** Result of {@link SessionClient.login}. */
export interface LoginResult {
  sessionId: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

/** One of the user's sessions (SPEC 4.4). Times are RFC 3339 strings. */
export interface SessionInfo {
  id: string;
  createdAt: string;
  lastActiveAt: string;
  expiresAt: string;
  ip: string;
  userAgent: string;
  /** True for the session this client is using. */
  current: boolean;
}

/** Event types a user sees in their own security activity (SPEC 4.8). */
export type SecurityEventType =
  | "login"
  | "new_ip"
  | "new_device"
  | "refresh_token_reuse"
  | "session_revoked"
  | "revoke_all"
  | "upstream_revoke";

/** What an `upstream_revoke` event ended (SPEC 10). */
export type UpstreamRevokeScope = "current" | "others" | "all";

/** One entry of the user's security activity (SPEC 4.8). Times are RFC 3339 strings. */
export interface SecurityEvent {
  id: string;
  /** One of {@link SecurityEventType}; a newer server may send others, keep them as strings. */
  type: SecurityEventType | (string & {});
  at: string;
  /** The session the event is about ("" when the server gave none). */
  sessionId: string;
  ip: string;
  userAgent: string;
  /** True when the event is about the session this client is using. */
  currentSession: boolean;
  /** For `upstream_revoke`: which sessions the application ended; else null. */
  scope: UpstreamRevokeScope | null;
}

/** One page of {@link SessionClient.securityEvents}, newest first. */
export interface SecurityEventsPage {
  events: SecurityEvent[];
  /** Pass as `before` to get the next (older) page; null on the last page. */
  next: string | null;
}

/** Options of {@link SessionClient.securityEvents}. */
export interface SecurityEventsOptions {
  /** Page size, an integer from 1 to 200. Default: the server's (50). */
  limit?: number;
  /** The `next` cursor of the previous page. Omit (or null) for the newest events. */
  before?: string | null;
}

/** A sessiongate client. Create one per page with {@link createSessionClient}. */
export interface SessionClient {
  /**
   * Signs in. `credentials` is sent as JSON to the login route, which
   * sessiongate forwards to the upstream. Rejects with a {@link SessionError}
   * (`code` is the upstream's `error` field if it had one, else `login_failed`).
   */
  login(credentials: object): Promise<LoginResult>;
  /** Signs out (revokes this session on the server, best effort) and forgets the tokens. */
  logout(): Promise<void>;
  /**
   * Drop-in `fetch`: attaches the access token to requests for `baseUrl`'s
   * origin, refreshes first if it has expired, and on a 401 `token_expired`
   * refreshes once and retries. Relative URLs resolve against `baseUrl`.
   * A session that can't be continued emits `sessionended` and the request's
   * 401 response is returned. Rejects with a {@link SessionError} when a needed
   * refresh failed for a transient reason (network, 429, 5xx).
   */
  fetch(input: Request | string | URL, init?: RequestInit): Promise<Response>;
  /**
   * Continues an existing session on page load: schedules the background
   * refresh, refreshes an expired token, and in cookie mode asks the server
   * for tokens with the refresh cookie. Resolves to whether the user is signed in.
   */
  resume(): Promise<boolean>;
  /** Refreshes now (coordinated with other tabs). */
  refresh(): Promise<void>;
  /** Lists the user's active sessions, newest first. */
  listSessions(): Promise<SessionInfo[]>;
  /**
   * One page of the user's own security activity (sign-ins, new IPs and
   * devices, refresh token reuse, sign-outs), newest first. Follow `next`
   * with `before` for older events. Rejects with a {@link SessionError}
   * (`invalid_request` for a cursor the server does not accept) and with a
   * `RangeError`, before any request, for a `limit` outside 1-200.
   */
  securityEvents(options?: SecurityEventsOptions): Promise<SecurityEventsPage>;
  /** Revokes one of the user's sessions. Revoking the current one signs this client out. */
  revokeSession(id: string): Promise<void>;
  /**
   * Revokes all of the user's sessions; with `keepCurrent: true` all but this
   * one. Resolves to the number revoked. Without `keepCurrent` this client is signed out.
   */
  revokeAll(options?: { keepCurrent?: boolean }): Promise<number>;
  /** Whether tokens are held. */
  isSignedIn(): boolean;
  /** The current session id, or null. */
  currentSessionId(): string | null;
  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof SessionClientEvents>(type: K, listener: (event: SessionClientEvents[K]) => void): () => void;
  /** Stops timers, closes the BroadcastChannel and drops listeners (tokens are kept). */
  close(): void;
}

/** Creates a client. See {@link SessionClientOptions}. */
export function createSessionClient(options: SessionClientOptions = {}): SessionClient {
  return new Client(options);
}

type ChannelMessage =
  | { type: "tokens"; from: string; state: TokenState }
  | { type: "ended"; from: string; reason: SessionEndReason }
  | { type: "claim"; from: string };

type Listener = (event: never) => void;

/** How long a tab waits for another tab's refresh before doing its own. */
const REMOTE_WAIT_MS = 10_000;
/**
 * How long a tab holds the "rotated" marker lock after a refresh, and how long
 * another tab waits for the new tokens once it sees that marker.
 */
const ROTATED_MARK_MS = 10_000;
/** Polling interval while waiting for another tab's tokens to show up in storage. */
const ROTATED_POLL_MS = 20;
/** Election window when Web Locks are not available. */
const CLAIM_WINDOW_MS = 60;
const REFRESH_PATH = "v1/auth/refresh";
const LOGOUT_PATH = "v1/auth/logout";
const SESSIONS_PATH = "v1/auth/sessions";
const SECURITY_EVENTS_PATH = "v1/auth/security-events";
const SCOPES: readonly string[] = ["current", "others", "all"] satisfies UpstreamRevokeScope[];

class Client implements SessionClient {
  readonly #base: URL;
  readonly #fetchImpl: FetchLike;
  readonly #storage: TokenStorage;
  readonly #key: string;
  readonly #cookieMode: boolean;
  readonly #marginOverrideMs: number | null;
  readonly #locks: LockManagerLike | null;
  readonly #loginPath: string;
  readonly #tabId = randomId();
  readonly #listeners = new Map<keyof SessionClientEvents, Set<Listener>>();
  #channel: BroadcastChannel | null = null;

  /** Incremented on every sign-out, so a refresh that outlives it is dropped. */
  #epoch = 0;
  #inflight: Promise<TokenState> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerFor: string | null = null;
  #retryAttempt = 0;
  #closed = false;
  /** This tab's view of whether it is signed in (shared storage can change under it). */
  #signedIn = false;

  // Election state, only used without Web Locks.
  readonly #remoteClaims = new Map<string, number>();
  #rivals: Set<string> | null = null;
  readonly #remoteWaiters = new Set<(outcome: TokenState | SessionEndReason) => void>();
  /** Releases the "rotated" marker locks this tab holds (Web Locks only). */
  readonly #markers = new Set<() => void>();

  constructor(options: SessionClientOptions) {
    const origin = typeof location !== "undefined" ? location.origin : undefined;
    const base = options.baseUrl ?? origin;
    if (base === undefined) throw new TypeError("createSessionClient: baseUrl is required outside a browser page");
    this.#base = new URL(base.endsWith("/") ? base : `${base}/`, origin);
    const globalFetch: FetchLike | undefined = typeof fetch === "function" ? fetch.bind(globalThis) : undefined;
    const fetchImpl = options.fetch ?? globalFetch;
    if (fetchImpl === undefined) throw new TypeError("createSessionClient: no fetch available");
    this.#fetchImpl = fetchImpl;
    this.#storage = options.storage ?? createMemoryStorage();
    this.#key = options.storageKey ?? "sessiongate.session";
    this.#cookieMode = options.refreshCookie ?? false;
    this.#marginOverrideMs = options.refreshMarginSeconds === undefined ? null : options.refreshMarginSeconds * 1000;
    this.#loginPath = (options.loginPath ?? "/v1/auth/login").replace(/^\/+/, "");
    this.#locks = options.locks === undefined ? defaultLocks() : options.locks;

    const channelName = options.channelName === undefined ? "sessiongate" : options.channelName;
    if (channelName !== null && typeof BroadcastChannel !== "undefined") {
      this.#channel = new BroadcastChannel(channelName);
      this.#channel.onmessage = (event: MessageEvent<unknown>) => this.#onMessage(event.data);
    }

    const state = this.#read();
    if (state !== null) {
      this.#signedIn = true;
      this.#schedule(state);
    }
  }

  // ---- public API -------------------------------------------------------

  async login(credentials: object): Promise<LoginResult> {
    let res: Response;
    try {
      res = await this.#fetchImpl(this.#url(this.#loginPath), {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(credentials),
        credentials: this.#cookieMode ? "include" : "same-origin",
      });
    } catch (cause) {
      throw new SessionError("network_error", "Could not reach the server.", { cause });
    }
    if (!res.ok) throw await errorFromResponse(res, "login_failed");
    const state = await this.#stateFromResponse(res);
    if (state === null) {
      throw new SessionError("login_failed", "The server did not start a session.", { status: res.status });
    }
    this.#epoch++;
    this.#adopt(state, true);
    this.#signedIn = true;
    this.#emit("statechange", { signedIn: true, sessionId: state.sessionId });
    return { sessionId: state.sessionId, expiresAt: state.expiresAt };
  }

  async logout(): Promise<void> {
    // Let a refresh in flight finish: logging out with a refresh token it is
    // rotating would look like token reuse to the server.
    await this.#inflight?.catch(() => undefined);
    const state = this.#read();
    if (state === null && !this.#cookieMode) return;
    const headers: Record<string, string> = { Accept: "application/json" };
    let body: string | undefined;
    if (state !== null && this.#usable(state)) {
      headers.Authorization = `Bearer ${state.accessToken}`;
    } else if (!this.#cookieMode && state?.refreshToken) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify({ refresh_token: state.refreshToken });
    }
    try {
      await this.#fetchImpl(this.#url(LOGOUT_PATH), {
        method: "POST",
        headers,
        credentials: this.#cookieMode ? "include" : "same-origin",
        keepalive: true,
        ...(body === undefined ? {} : { body }),
      });
    } catch {
      // Best effort: the local sign-out below happens regardless.
    } finally {
      this.#signOut("logged_out", false);
    }
  }

  async fetch(input: Request | string | URL, init?: RequestInit): Promise<Response> {
    const request = new Request(typeof input === "string" ? new URL(input, this.#base) : input, init);
    if (new URL(request.url).origin !== this.#base.origin || request.headers.has("Authorization")) {
      return this.#fetchImpl(request);
    }
    let state = this.#read();
    if (state !== null && !this.#usable(state)) {
      try {
        state = await this.#refreshFrom(state.accessToken);
      } catch (err) {
        if (!isEnded(err)) throw err;
        state = null; // Session over: send without a token, the app gets the 401.
      }
    }
    if (state === null) return this.#fetchImpl(request);

    const retry = request.clone();
    const first = await this.#send(request, state);
    if (first.status !== 401) return first;
    const { code } = await readServerError(first);
    if (code !== "token_expired" && code !== "invalid_token") {
      this.#endIfFinal(code, state);
      return first;
    }
    let fresh: TokenState;
    try {
      fresh = await this.#refreshFrom(state.accessToken);
    } catch (err) {
      if (isEnded(err)) return first;
      throw err;
    }
    const second = await this.#send(retry, fresh);
    if (second.status === 401) this.#endIfFinal((await readServerError(second)).code, fresh);
    return second; // Never more than one retry.
  }

  async resume(): Promise<boolean> {
    const state = this.#read();
    if (state !== null) {
      this.#schedule(state);
      if (this.#usable(state)) return true;
    } else if (!this.#cookieMode) {
      return false;
    }
    try {
      await this.#refreshFrom(state?.accessToken ?? null);
      return true;
    } catch (err) {
      if (isEnded(err)) return false;
      throw err;
    }
  }

  async refresh(): Promise<void> {
    const state = this.#read();
    if (state === null && !this.#cookieMode) throw notSignedIn();
    await this.#refreshFrom(state?.accessToken ?? null, true);
  }

  async listSessions(): Promise<SessionInfo[]> {
    const res = await this.fetch(this.#url(SESSIONS_PATH), { headers: { Accept: "application/json" } });
    if (!res.ok) throw await errorFromResponse(res);
    const body: unknown = await res.json().catch(() => null);
    if (!isRecord(body) || !Array.isArray(body.sessions)) {
      throw new SessionError("bad_response", "Unexpected sessions response.", { status: res.status });
    }
    return body.sessions.filter(isRecord).map((s) => ({
      id: str(s.id),
      createdAt: str(s.created_at),
      lastActiveAt: str(s.last_active_at),
      expiresAt: str(s.expires_at),
      ip: str(s.ip),
      userAgent: str(s.user_agent),
      current: s.current === true,
    }));
  }

  async securityEvents(options: SecurityEventsOptions = {}): Promise<SecurityEventsPage> {
    const url = this.#url(SECURITY_EVENTS_PATH);
    if (options.limit !== undefined) {
      const { limit } = options;
      if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
        throw new RangeError("securityEvents: limit must be an integer from 1 to 200");
      }
      url.searchParams.set("limit", String(limit));
    }
    if (options.before != null) url.searchParams.set("before", options.before);
    const res = await this.fetch(url, { headers: { Accept: "application/json" } });
    if (!res.ok) throw await errorFromResponse(res);
    const body: unknown = await res.json().catch(() => null);
    if (!isRecord(body) || !Array.isArray(body.events)) {
      throw new SessionError("bad_response", "Unexpected security events response.", { status: res.status });
    }
    return {
      events: body.events.filter(isRecord).map((e) => ({
        id: str(e.id),
        type: str(e.type),
        at: str(e.at),
        sessionId: str(e.session_id),
        ip: str(e.ip),
        userAgent: str(e.user_agent),
        currentSession: e.current_session === true,
        scope: typeof e.scope === "string" && SCOPES.includes(e.scope) ? (e.scope as UpstreamRevokeScope) : null,
      })),
      next: typeof body.next === "string" && body.next !== "" ? body.next : null,
    };
  }

  async revokeSession(id: string): Promise<void> {
    const res = await this.fetch(this.#url(`${SESSIONS_PATH}/${encodeURIComponent(id)}`), {
      method: "DELETE",
      headers: { Accept: "application/json" },
    });
    if (!res.ok) throw await errorFromResponse(res);
    if (id === this.currentSessionId()) this.#signOut("logged_out", false);
  }

  async revokeAll(options: { keepCurrent?: boolean } = {}): Promise<number> {
    const keepCurrent = options.keepCurrent ?? false;
    const res = await this.fetch(this.#url(`${SESSIONS_PATH}/revoke-all`), {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ keep_current: keepCurrent }),
    });
    if (!res.ok) throw await errorFromResponse(res);
    const body: unknown = await res.json().catch(() => null);
    if (!keepCurrent) this.#signOut("logged_out", false);
    return isRecord(body) && typeof body.revoked === "number" ? body.revoked : 0;
  }

  isSignedIn(): boolean {
    return this.#read() !== null;
  }

  currentSessionId(): string | null {
    return this.#read()?.sessionId ?? null;
  }

  on<K extends keyof SessionClientEvents>(type: K, listener: (event: SessionClientEvents[K]) => void): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) this.#listeners.set(type, (set = new Set()));
    const stored = listener as Listener;
    set.add(stored);
    return () => void set.delete(stored);
  }

  close(): void {
    this.#closed = true;
    this.#stopTimer();
    for (const release of [...this.#markers]) release();
    this.#channel?.close();
    this.#channel = null;
    this.#listeners.clear();
  }

  // ---- tokens and storage ----------------------------------------------

  #url(path: string): URL {
    return new URL(path, this.#base);
  }

  #read(): TokenState | null {
    return readState(this.#storage, this.#key);
  }

  #usable(state: TokenState): boolean {
    const skew = Math.min(1000, (state.expiresAt - state.obtainedAt) / 4);
    return state.expiresAt - Date.now() > skew;
  }

  /** Stores tokens (ours or another tab's) and follows them with the timer. */
  #adopt(state: TokenState, broadcast: boolean): void {
    try {
      this.#storage.setItem(this.#key, JSON.stringify(state));
    } catch {
      // Storage full or blocked: the tokens still work for this call.
    }
    if (broadcast) this.#post({ type: "tokens", from: this.#tabId, state });
    this.#schedule(state);
  }

  async #stateFromResponse(res: Response): Promise<TokenState | null> {
    const body: unknown = await res.json().catch(() => null);
    if (!isRecord(body)) return null;
    const { access_token, expires_in, refresh_token, session_id } = body;
    if (typeof access_token !== "string" || typeof expires_in !== "number" || typeof session_id !== "string") {
      return null;
    }
    const now = Date.now();
    return {
      accessToken: access_token,
      expiresAt: now + expires_in * 1000,
      obtainedAt: now,
      sessionId: session_id,
      // Cookie mode: the server echoes the token in the body too; never keep it.
      refreshToken: this.#cookieMode || typeof refresh_token !== "string" ? null : refresh_token,
    };
  }

  /** Forgets the tokens here and in other tabs. */
  #signOut(reason: SessionEndReason, notify: boolean): void {
    const had = this.#signedIn || this.#read() !== null;
    this.#signedIn = false;
    this.#epoch++;
    this.#stopTimer();
    try {
      this.#storage.removeItem(this.#key);
    } catch {
      // ignore
    }
    this.#post({ type: "ended", from: this.#tabId, reason });
    if (!had) return;
    if (notify) this.#emit("sessionended", { reason, message: END_MESSAGES[reason] });
    this.#emit("statechange", { signedIn: false, sessionId: null });
  }

  /** A 401 on an API call that says the session is over ends it here too. */
  #endIfFinal(code: string, used: TokenState): void {
    const reason = endReasonFor(code);
    if (reason !== null && this.#read()?.sessionId === used.sessionId) this.#signOut(reason, true);
  }

  // ---- refresh: single flight, then coordinated across tabs --------------

  /**
   * Returns tokens newer than `stale` (the access token the caller found too
   * old), refreshing at most once per tab at a time.
   */
  #refreshFrom(stale: string | null, force = false): Promise<TokenState> {
    const current = this.#read();
    if (!force && current !== null && current.accessToken !== stale && this.#usable(current)) {
      this.#schedule(current);
      return Promise.resolve(current);
    }
    if (this.#inflight === null) {
      const run = this.#locks !== null ? this.#withLock(stale) : this.#channel !== null ? this.#elect(stale) : this.#refreshIfStill(stale);
      this.#inflight = run.finally(() => {
        this.#inflight = null;
      });
    }
    return this.#inflight;
  }

  #withLock(stale: string | null): Promise<TokenState> {
    const locks = this.#locks as LockManagerLike;
    return locks.request(`${this.#key}:refresh`, async () => {
      // Let a "tokens" message from the tab that held the lock arrive first.
      await sleep(0);
      const before = this.#read();
      // Storage writes reach other tabs asynchronously (Chromium syncs
      // localStorage between renderer processes in the background), so the
      // tokens read here can be the ones another tab rotated a moment ago.
      // Refreshing with them would be a reuse and end the session; the marker
      // lock that tab still holds says so, consistently, so wait instead.
      const wouldRefresh = before !== null && (before.accessToken === stale || !this.#usable(before));
      if (wouldRefresh && (await this.#rotatedElsewhere(before.accessToken))) {
        return this.#awaitTokensNewerThan(before.accessToken);
      }
      const state = await this.#refreshIfStill(stale);
      if (before !== null && state.accessToken !== before.accessToken) await this.#markRotated(before.accessToken);
      return state;
    });
  }

  /** Whether some tab holds the marker saying `accessToken`'s session was rotated. */
  async #rotatedElsewhere(accessToken: string): Promise<boolean> {
    const query = this.#locks?.query;
    if (query === undefined) return false;
    const name = this.#markerName(accessToken);
    try {
      const snapshot = await query.call(this.#locks);
      return (snapshot.held ?? []).some((lock) => lock.name === name);
    } catch {
      return false;
    }
  }

  /**
   * Takes the marker lock for the tokens just replaced and keeps it for a
   * while; resolves once it is held, so it is visible before the refresh lock
   * is released.
   */
  async #markRotated(replaced: string): Promise<void> {
    const locks = this.#locks;
    // Without query() no tab can see a marker; and one already held (another
    // tab got these tokens replaced too) must not be waited for.
    if (locks === null || locks.query === undefined || this.#closed) return;
    if (await this.#rotatedElsewhere(replaced)) return;
    return new Promise((held) => {
      locks
        .request(this.#markerName(replaced), () => {
          held();
          return new Promise<void>((release) => {
            const done = (): void => {
              clearTimeout(timer);
              this.#markers.delete(done);
              release();
            };
            const timer = setTimeout(done, ROTATED_MARK_MS);
            this.#markers.add(done);
          });
        })
        .catch(() => held());
    });
  }

  /** Lock names are visible to the whole origin: never put a token in one. */
  #markerName(accessToken: string): string {
    return `${this.#key}:rotated:${fingerprint(accessToken)}`;
  }

  /** Waits for another tab's new tokens to reach this tab (storage or channel). */
  async #awaitTokensNewerThan(replaced: string): Promise<TokenState> {
    const deadline = Date.now() + ROTATED_MARK_MS;
    for (;;) {
      const current = this.#read();
      if (current === null) throw notSignedIn();
      if (current.accessToken !== replaced) {
        this.#schedule(current);
        return current;
      }
      if (Date.now() >= deadline || this.#closed) {
        throw new SessionError("network_error", "Another tab refreshed the session, but its tokens did not arrive.");
      }
      await sleep(ROTATED_POLL_MS);
    }
  }

  /** Without Web Locks: claim over the BroadcastChannel; the lowest tab id wins. */
  async #elect(stale: string | null): Promise<TokenState> {
    const now = Date.now();
    for (const [tab, at] of this.#remoteClaims) if (now - at > REMOTE_WAIT_MS) this.#remoteClaims.delete(tab);
    let lost = this.#remoteClaims.size > 0;
    if (!lost) {
      this.#rivals = new Set();
      this.#post({ type: "claim", from: this.#tabId });
      await sleep(CLAIM_WINDOW_MS);
      lost = [...this.#rivals].some((tab) => tab < this.#tabId);
      this.#rivals = null;
    }
    if (lost) {
      const outcome = await this.#waitForRemote();
      if (typeof outcome === "string") throw endedError(outcome);
      if (outcome !== null) return outcome;
    }
    return this.#refreshIfStill(stale);
  }

  #waitForRemote(): Promise<TokenState | SessionEndReason | null> {
    return new Promise((resolve) => {
      const done = (outcome: TokenState | SessionEndReason | null): void => {
        clearTimeout(timer);
        this.#remoteWaiters.delete(done);
        resolve(outcome);
      };
      const timer = setTimeout(() => done(null), REMOTE_WAIT_MS);
      this.#remoteWaiters.add(done);
    });
  }

  /** Under the lock (or after the election): refresh unless someone already did. */
  async #refreshIfStill(stale: string | null): Promise<TokenState> {
    const current = this.#read();
    if (current !== null && current.accessToken !== stale && this.#usable(current)) {
      this.#schedule(current);
      return current;
    }
    if (current === null && (stale !== null || !this.#cookieMode)) throw notSignedIn();
    return this.#doRefresh(current);
  }

  async #doRefresh(current: TokenState | null): Promise<TokenState> {
    const epoch = this.#epoch;
    const init: RequestInit = { method: "POST", headers: { Accept: "application/json" } };
    if (this.#cookieMode) {
      init.credentials = "include";
    } else {
      if (current?.refreshToken == null) throw notSignedIn();
      init.headers = { Accept: "application/json", "Content-Type": "application/json" };
      init.body = JSON.stringify({ refresh_token: current.refreshToken });
    }
    let res: Response;
    try {
      res = await this.#fetchImpl(this.#url(REFRESH_PATH), init);
    } catch (cause) {
      throw new SessionError("network_error", "Could not reach the server to refresh the session.", { cause });
    } finally {
      this.#remoteClaims.clear();
    }
    if (epoch !== this.#epoch) throw notSignedIn(); // Signed out meanwhile: drop the answer.
    if (res.ok) {
      const state = await this.#stateFromResponse(res);
      if (state === null) throw new SessionError("bad_response", "Unexpected refresh response.", { status: res.status });
      if (epoch !== this.#epoch) throw notSignedIn();
      this.#adopt(state, true);
      this.#signedIn = true;
      this.#emit("refresh", { sessionId: state.sessionId, expiresAt: state.expiresAt, local: true });
      return state;
    }
    const error = await errorFromResponse(res);
    // 400 in cookie mode means no cookie came along: the session can't go on.
    const reason = endReasonFor(error.code) ?? (res.status === 400 ? "invalid_refresh_token" : null);
    if (reason === null) throw error;
    this.#signOut(reason, true);
    throw endedError(reason, error.status);
  }

  // ---- background timer --------------------------------------------------

  #marginMs(lifetimeMs: number): number {
    if (this.#marginOverrideMs !== null) return Math.max(0, Math.min(this.#marginOverrideMs, lifetimeMs / 2));
    return Math.min(60_000, lifetimeMs * 0.2);
  }

  #schedule(state: TokenState, delayOverride?: number): void {
    if (this.#closed) return;
    if (delayOverride === undefined && this.#timerFor === state.accessToken) return;
    this.#stopTimer();
    const margin = this.#marginMs(state.expiresAt - state.obtainedAt);
    // A little jitter so tabs sharing the tokens don't all wake at once.
    const jitter = Math.random() * Math.min(2000, margin / 4);
    const delay = delayOverride ?? Math.max(0, state.expiresAt - margin - jitter - Date.now());
    this.#timerFor = state.accessToken;
    this.#timer = setTimeout(() => this.#onTimer(state), delay);
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerFor = null;
  }

  #onTimer(state: TokenState): void {
    this.#timer = undefined;
    this.#timerFor = null;
    this.#refreshFrom(state.accessToken).then(
      () => {
        this.#retryAttempt = 0;
      },
      (err: unknown) => {
        if (isEnded(err) || (err instanceof SessionError && err.code === "not_signed_in")) return;
        // Transient (network, 429, 5xx): try again with backoff while signed in.
        const current = this.#read();
        if (current === null) return;
        const backoff = Math.min(30_000, 1000 * 2 ** this.#retryAttempt++);
        const wait = err instanceof SessionError && err.retryAfter !== null ? err.retryAfter * 1000 : backoff;
        this.#schedule(current, wait);
      },
    );
  }

  // ---- tabs ---------------------------------------------------------------

  #post(message: ChannelMessage): void {
    try {
      this.#channel?.postMessage(message);
    } catch {
      // A closed channel: nothing to share.
    }
  }

  #onMessage(data: unknown): void {
    if (!isRecord(data) || typeof data.from !== "string" || data.from === this.#tabId) return;
    if (data.type === "claim") {
      this.#remoteClaims.set(data.from, Date.now());
      this.#rivals?.add(data.from);
      return;
    }
    this.#remoteClaims.clear();
    if (data.type === "tokens") {
      const state = parseState(data.state);
      if (state === null) return;
      const current = this.#read();
      if (current === null || state.obtainedAt >= current.obtainedAt) {
        // Shared storage already holds them; per-tab storage needs a copy.
        if (current?.accessToken !== state.accessToken) this.#adopt(state, false);
        else this.#schedule(state);
        const wasSignedIn = this.#signedIn;
        this.#signedIn = true;
        if (!wasSignedIn) this.#emit("statechange", { signedIn: true, sessionId: state.sessionId });
        this.#emit("refresh", { sessionId: state.sessionId, expiresAt: state.expiresAt, local: false });
      }
      for (const done of [...this.#remoteWaiters]) done(state);
    } else if (data.type === "ended" && typeof data.reason === "string" && data.reason in END_MESSAGES) {
      const reason = data.reason as SessionEndReason;
      for (const done of [...this.#remoteWaiters]) done(reason);
      const had = this.#signedIn || this.#read() !== null;
      this.#signedIn = false;
      this.#epoch++;
      this.#stopTimer();
      // Shared storage is already cleared by the other tab; per-tab storage isn't.
      try {
        this.#storage.removeItem(this.#key);
      } catch {
        // ignore
      }
      if (!had) return;
      this.#emit("sessionended", { reason, message: END_MESSAGES[reason] });
      this.#emit("statechange", { signedIn: false, sessionId: null });
    }
  }

  #emit<K extends keyof SessionClientEvents>(type: K, event: SessionClientEvents[K]): void {
    for (const listener of [...(this.#listeners.get(type) ?? [])]) {
      try {
        (listener as (e: SessionClientEvents[K]) => void)(event);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  async #send(request: Request, state: TokenState): Promise<Response> {
    request.headers.set("Authorization", `Bearer ${state.accessToken}`);
    return this.#fetchImpl(request);
  }
}

function defaultLocks(): LockManagerLike | null {
  if (typeof navigator === "undefined") return null;
  const locks = (navigator as { locks?: LockManagerLike }).locks;
  return locks !== undefined && typeof locks.request === "function" ? locks : null;
}

function notSignedIn(): SessionError {
  return new SessionError("not_signed_in", "Not signed in.");
}

function endedError(reason: SessionEndReason, status = 401): SessionError {
  return new SessionError(reason, END_MESSAGES[reason], { status, endReason: reason });
}

function isEnded(err: unknown): boolean {
  return err instanceof SessionError && (err.endReason !== null || err.code === "not_signed_in");
}

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

/** FNV-1a, 32 bits, as hex: tells tokens apart without revealing them. */
function fingerprint(value: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) {
    hash ^= value.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function randomId(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
