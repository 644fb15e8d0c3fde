import {
  END_MESSAGES,
  SessionError,
  endReasonFor,
  errorFromBody,
  errorFromResponse,
  isRecord,
  isTransient,
  readServerError,
  type SessionEndReason,
} from "./errors.js";
import {
  browserLocalStorage,
  createMemoryStorage,
  ledgerForget,
  ledgerLatest,
  ledgerRecord,
  readState,
  type TokenState,
  type TokenStorage,
} from "./storage.js";

/** The subset of `fetch` the client needs (inject one for tests or cookie jars). */
export type FetchLike = (input: Request | string | URL, init?: RequestInit) => Promise<Response>;

/** The subset of the Web Locks API (`navigator.locks`) the client needs. */
export interface LockManagerLike {
  /**
   * As `navigator.locks.request(name, {signal}, callback)`: the client always
   * passes a `signal` that aborts the wait for the lock after a while, so a
   * tab that hangs while holding it cannot freeze the others.
   */
  request<T>(name: string, options: { signal?: AbortSignal }, callback: () => Promise<T>): Promise<T>;
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
   * Where tokens are kept. Defaults to `localStorage` when the page may use
   * it (the session survives reloads and all tabs share one copy, so no tab
   * ever holds an outdated refresh token), else memory. Pass
   * `createMemoryStorage()` or `sessionStorage` for per-tab tokens (see the
   * README, "Where tokens live").
   */
  storage?: TokenStorage;
  /**
   * Storage every tab of the origin shares, for the rotation ledger: no token,
   * only which access token of each session is the newest (a hash), so a tab
   * with per-tab storage never spends a refresh token another tab already
   * used. Default `localStorage` when usable; `null` disables.
   */
  sharedStorage?: TokenStorage | null;
  /**
   * How long a refresh request may take before it is aborted and counts as a
   * transient failure (retried with backoff). Default 10. A tab waits at most
   * three times as long for another tab's refresh lock.
   */
  refreshTimeoutSeconds?: number;
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
  /**
   * BroadcastChannel name used to tell other tabs that the tokens changed or
   * the session ended (never a token); `null` disables. Default `sessiongate`.
   */
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
  /** The server's error code that ended it (e.g. `invalid_request`), or the reason itself. */
  code: string;
}

/**
 * Fired whenever signed-in state changes (login, logout, session end, another
 * tab), and once at the end of every {@link SessionClient.resume} with
 * `initial: true`, so an app can render from this one event.
 */
export interface StateChangeEvent {
  signedIn: boolean;
  sessionId: string | null;
  /** True for the event `resume()` ends with. */
  initial: boolean;
}

/** What {@link SessionClient.getSession} tells about the current session. */
export interface SessionSnapshot {
  sessionId: string;
  /** When the access token expires, epoch milliseconds by this machine's clock. */
  expiresAt: number;
  /**
   * The access token's claims (`sub`, `sid`, `exp`, the login's extra claims
   * under `ext`, ...), decoded but NOT verified: for display, never for
   * access decisions. Null if the token is not a JWT.
   */
  claims: Record<string, unknown> | null;
}

/** Options of {@link SessionClient.getAccessToken}. */
export interface GetAccessTokenOptions {
  /**
   * Seconds the returned token must still be valid for; a token closer to
   * its expiry is refreshed first. Default 0 (still 1 s of clock-skew margin).
   */
  minValidity?: number;
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
  /**
   * Signs out: revokes this session on the server (retrying transient
   * failures a few times) and always forgets the tokens here and in the other
   * tabs. Resolves to true when the server ended the session (or said it was
   * already over), false when it could not be reached or refused: the
   * server-side session may then live on until it expires (in cookie mode the
   * client tries again on the next `resume()` instead of resuming it).
   */
  logout(): Promise<boolean>;
  /**
   * The current access token, refreshed first if it expires within
   * `minValidity` seconds, for clients other than {@link SessionClient.fetch}
   * (axios, GraphQL, SSE, WebSocket). Null when signed out (or when the
   * session ended meanwhile). Rejects with a {@link SessionError} when a
   * needed refresh failed for a transient reason.
   */
  getAccessToken(options?: GetAccessTokenOptions): Promise<string | null>;
  /** Session id, expiry and (unverified) claims of the current access token, or null. */
  getSession(): SessionSnapshot | null;
  /**
   * Drop-in `fetch`: attaches the access token to requests for `baseUrl`'s
   * origin (unless the request has its own `Authorization`), refreshes first
   * if it has expired, and on a 401 `token_expired` (only that code) refreshes
   * once and retries. Relative URLs resolve against `baseUrl`.
   * A session that can't be continued emits `sessionended` and the request's
   * 401 response is returned. Rejects with a {@link SessionError} when a needed
   * refresh failed for a transient reason (network, 429, 5xx).
   */
  fetch(input: Request | string | URL, init?: RequestInit): Promise<Response>;
  /**
   * Continues an existing session on page load: schedules the background
   * refresh, refreshes an expired token, and in cookie mode asks the server
   * for tokens with the refresh cookie. Resolves to whether the user is signed
   * in, and ends with a `statechange` event with `initial: true`.
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
  /** Stops timers and listeners, closes the BroadcastChannel and drops subscribers (tokens are kept). */
  close(): void;
}

/** Creates a client. See {@link SessionClientOptions}. */
export function createSessionClient(options: SessionClientOptions = {}): SessionClient {
  return new Client(options);
}

/**
 * What tabs tell each other. Never a token: a tab that gets "changed" reads
 * the tokens from the storage the tabs share (or, with per-tab storage,
 * keeps its own).
 */
type ChannelMessage =
  | { type: "changed"; from: string; sessionId: string; obtainedAt: number }
  | { type: "ended"; from: string; reason: SessionEndReason; sessionId: string | null }
  /** A sign-out of `sessionId` is on its way to the server (`active`), or failed (`!active`). */
  | { type: "ending"; from: string; sessionId: string; active: boolean }
  | { type: "claim"; from: string };

type Listener = (event: never) => void;
/** How another tab's refresh ended, for a tab that lost the election. */
type RemoteOutcome = "changed" | SessionEndReason | null;

/** How long a tab waits for another tab's refresh before doing its own. */
const REMOTE_WAIT_MS = 10_000;
/**
 * How long a tab holds the "rotated" marker lock after a refresh, and how long
 * another tab waits for the new tokens once it sees that marker.
 */
const ROTATED_MARK_MS = 10_000;
/**
 * How long a tab takes another tab's word that it is signing the session out
 * (logout, revoke-all): the logout's retries, with room to spare.
 */
const ENDING_MS = 30_000;
/** Polling interval while waiting for another tab's tokens to show up in storage. */
const ROTATED_POLL_MS = 20;
/**
 * How long a tab waits for shared storage to show tokens it was told about
 * (a "changed" signal, the ledger) before deciding they are not coming.
 */
const FOLLOW_MS = 2_000;
/**
 * Election window when Web Locks are not available: long enough for a claim
 * to cross a busy event loop; the ledger still guards a tab that misses one.
 */
const CLAIM_WINDOW_MS = 150;
const DEFAULT_REFRESH_TIMEOUT_MS = 10_000;
/** setTimeout fires at once for longer delays (24.8 days): wait in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Logout tries at most this often when the server can't be reached or answers 5xx/429. */
const LOGOUT_ATTEMPTS = 3;
const REFRESH_PATH = "v1/auth/refresh";
const LOGOUT_PATH = "v1/auth/logout";
const SESSIONS_PATH = "v1/auth/sessions";
const SECURITY_EVENTS_PATH = "v1/auth/security-events";
const SCOPES: readonly string[] = ["current", "others", "all"] satisfies UpstreamRevokeScope[];

class Client implements SessionClient {
  readonly #base: URL;
  readonly #fetchImpl: FetchLike;
  readonly #storage: TokenStorage;
  /** Storage all tabs share, for the rotation ledger and the pending-logout mark. */
  readonly #shared: TokenStorage | null;
  readonly #key: string;
  readonly #cookieMode: boolean;
  readonly #marginOverrideMs: number | null;
  readonly #refreshTimeoutMs: number;
  readonly #locks: LockManagerLike | null;
  readonly #loginPath: string;
  readonly #tabId = randomId();
  readonly #listeners = new Map<keyof SessionClientEvents, Set<Listener>>();
  readonly #cleanups: (() => void)[] = [];
  #channel: BroadcastChannel | null = null;

  /** Incremented on every sign-out, so a refresh that outlives it is dropped. */
  #epoch = 0;
  #inflight: Promise<TokenState> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerFor: string | null = null;
  #retryAttempt = 0;
  /** A 429/503 with Retry-After: no refresh is sent before this time (epoch ms). */
  #notBefore = 0;
  #notBeforeError: SessionError | null = null;
  #closed = false;
  /** This tab's view of whether it is signed in (shared storage can change under it). */
  #signedIn = false;

  // Election state, only used without Web Locks.
  readonly #remoteClaims = new Map<string, number>();
  #rivals: Set<string> | null = null;
  readonly #remoteWaiters = new Set<(outcome: RemoteOutcome) => void>();
  /**
   * Another tab is signing this session out on the server: a request here
   * that meets the end first reports it as that sign-out, not as a revocation.
   */
  #endingElsewhere: { sessionId: string; until: number } | null = null;
  /** The session this tab is signing out on the server: another tab's "ended" for it is no news here. */
  #endingHere: string | null = null;
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
    const local = options.storage === undefined || options.sharedStorage === undefined ? browserLocalStorage() : null;
    this.#storage = options.storage ?? local ?? createMemoryStorage();
    this.#shared = options.sharedStorage === undefined ? local : options.sharedStorage;
    this.#key = options.storageKey ?? "sessiongate.session";
    this.#cookieMode = options.refreshCookie ?? false;
    this.#marginOverrideMs = options.refreshMarginSeconds === undefined ? null : options.refreshMarginSeconds * 1000;
    const timeout = options.refreshTimeoutSeconds;
    this.#refreshTimeoutMs = timeout === undefined || !(timeout > 0) ? DEFAULT_REFRESH_TIMEOUT_MS : timeout * 1000;
    this.#loginPath = (options.loginPath ?? "/v1/auth/login").replace(/^\/+/, "");
    this.#locks = options.locks === undefined ? defaultLocks() : options.locks;

    const channelName = options.channelName === undefined ? "sessiongate" : options.channelName;
    if (channelName !== null && typeof BroadcastChannel !== "undefined") {
      this.#channel = new BroadcastChannel(channelName);
      this.#channel.onmessage = (event: MessageEvent<unknown>) => this.#onMessage(event.data);
    }
    this.#listenForWake();

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
    const state = this.#stateFromBody(await res.json().catch(() => null));
    if (state === null) {
      throw new SessionError("login_failed", "The server did not start a session.", { status: res.status });
    }
    this.#epoch++;
    this.#setLogoutPending(false);
    this.#adopt(state);
    this.#signedIn = true;
    this.#emit("statechange", { signedIn: true, sessionId: state.sessionId, initial: false });
    return { sessionId: state.sessionId, expiresAt: state.expiresAt };
  }

  async logout(): Promise<boolean> {
    // Let a refresh in flight finish: logging out with a refresh token it is
    // rotating would look like token reuse to the server.
    await this.#inflight?.catch(() => undefined);
    if (this.#locks !== null) {
      // Under the refresh lock, so another tab's refresh finishes first and
      // this tab ends the session with the tokens it produced.
      try {
        return await this.#lock(`${this.#key}:refresh`, this.#refreshTimeoutMs, () => this.#logoutNow(true));
      } catch {
        // The lock did not come in time: sign out all the same.
      }
    }
    return this.#logoutNow(false);
  }

  async getAccessToken(options: GetAccessTokenOptions = {}): Promise<string | null> {
    const minMs = Math.max(0, (options.minValidity ?? 0) * 1000);
    const state = this.#read();
    if (state === null) return null;
    if (this.#usable(state, minMs)) return state.accessToken;
    try {
      return (await this.#refreshFrom(state.accessToken)).accessToken;
    } catch (err) {
      if (isEnded(err)) return null;
      throw err;
    }
  }

  getSession(): SessionSnapshot | null {
    const state = this.#read();
    if (state === null) return null;
    return { sessionId: state.sessionId, expiresAt: state.expiresAt, claims: decodeClaims(state.accessToken) };
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
    // Only an expired token is cured by a refresh; `invalid_token` (a forged,
    // garbled or foreign token) would be refused again with the new one.
    if (code !== "token_expired") {
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
    try {
      return await this.#resume();
    } finally {
      this.#emit("statechange", { signedIn: this.isSignedIn(), sessionId: this.currentSessionId(), initial: true });
    }
  }

  async #resume(): Promise<boolean> {
    if (this.#cookieMode && this.#logoutPending()) {
      // A logout that did not reach the server left the cookie alive: end it
      // now rather than resume a session the user signed out of.
      if (await this.#revokeOnServer(null)) this.#setLogoutPending(false);
      return false;
    }
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
    const current = this.currentSessionId();
    const ending = id === current ? current : null;
    await this.#endingCall(ending, this.#url(`${SESSIONS_PATH}/${encodeURIComponent(id)}`), {
      method: "DELETE",
      headers: { Accept: "application/json" },
    });
    if (id === this.currentSessionId()) this.#signOut("logged_out", false);
  }

  async revokeAll(options: { keepCurrent?: boolean } = {}): Promise<number> {
    const keepCurrent = options.keepCurrent ?? false;
    const res = await this.#endingCall(keepCurrent ? null : this.currentSessionId(), this.#url(`${SESSIONS_PATH}/revoke-all`), {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ keep_current: keepCurrent }),
    });
    const body: unknown = await res.json().catch(() => null);
    if (!keepCurrent) this.#signOut("logged_out", false);
    return isRecord(body) && typeof body.revoked === "number" ? body.revoked : 0;
  }

  /**
   * A session API call that ends `ending` (this tab's session) when it
   * succeeds: the other tabs hear of it first, and again if it fails.
   * Resolves to the successful response; rejects with the server's error.
   */
  async #endingCall(ending: string | null, url: URL, init: RequestInit): Promise<Response> {
    const retract = this.#announceEnding(ending);
    try {
      const res = await this.fetch(url, init);
      if (!res.ok) throw await errorFromResponse(res);
      return res;
    } catch (err) {
      retract();
      throw err;
    }
  }

  /**
   * Tells the other tabs this one is ending `sessionId` on the server, so a
   * request of theirs that meets the end before this tab's "ended" message
   * reports a sign-out, not a revocation. Returns how to take it back.
   */
  #announceEnding(sessionId: string | null): () => void {
    if (sessionId === null) return () => undefined;
    this.#endingHere = sessionId;
    this.#post({ type: "ending", from: this.#tabId, sessionId, active: true });
    return () => {
      this.#endingHere = null;
      this.#post({ type: "ending", from: this.#tabId, sessionId, active: false });
    };
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
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
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

  /** Whether the token is good for `minMs` more (at least a clock-skew margin). */
  #usable(state: TokenState, minMs = 0): boolean {
    const skew = Math.min(1000, (state.expiresAt - state.obtainedAt) / 4);
    return state.expiresAt - Date.now() > Math.max(skew, minMs);
  }

  /** Stores tokens this tab obtained, records them in the ledger, tells the other tabs. */
  #adopt(state: TokenState): void {
    try {
      this.#storage.setItem(this.#key, JSON.stringify(state));
    } catch {
      // Storage full or blocked: the tokens still work for this call.
    }
    if (!this.#cookieMode && this.#shared !== null) {
      try {
        ledgerRecord(this.#shared, this.#key, state.sessionId, fingerprint(state.accessToken));
      } catch {
        // No shared storage after all: tabs keep their own tokens.
      }
    }
    this.#post({ type: "changed", from: this.#tabId, sessionId: state.sessionId, obtainedAt: state.obtainedAt });
    this.#schedule(state);
  }

  #stateFromBody(body: unknown): TokenState | null {
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
  #signOut(reason: SessionEndReason, notify: boolean, code: string = reason): void {
    const state = this.#read();
    const elsewhere = this.#endingElsewhere;
    if (reason === "session_revoked" && elsewhere !== null && elsewhere.sessionId === state?.sessionId && Date.now() < elsewhere.until) {
      // The revocation is the sign-out another tab of this browser is doing.
      reason = "logged_out";
      code = reason;
    }
    this.#endingHere = null;
    const had = this.#signedIn || state !== null;
    this.#forget(null);
    if (state !== null && this.#shared !== null) {
      try {
        ledgerForget(this.#shared, this.#key, state.sessionId);
      } catch {
        // ignore
      }
    }
    this.#post({ type: "ended", from: this.#tabId, reason, sessionId: state?.sessionId ?? null });
    if (had) this.#announceEnd(reason, notify, code);
  }

  /**
   * Forgets the tokens in this tab only: all of them, or (`only`) just that
   * copy, so tokens another tab wrote meanwhile to shared storage survive.
   */
  #forget(only: TokenState | null): void {
    this.#signedIn = false;
    this.#epoch++;
    this.#stopTimer();
    try {
      if (only === null || this.#read()?.accessToken === only.accessToken) this.#storage.removeItem(this.#key);
    } catch {
      // ignore
    }
  }

  #announceEnd(reason: SessionEndReason, notify: boolean, code: string): void {
    if (notify) this.#emit("sessionended", { reason, message: END_MESSAGES[reason], code });
    this.#emit("statechange", { signedIn: false, sessionId: null, initial: false });
  }

  /** A 401 on an API call that says the session is over ends it here too. */
  #endIfFinal(code: string, used: TokenState): void {
    const reason = endReasonFor(code);
    if (reason !== null && this.#read()?.sessionId === used.sessionId) this.#signOut(reason, true);
  }

  // ---- logout -------------------------------------------------------------

  async #logoutNow(locked: boolean): Promise<boolean> {
    let state = this.#read();
    // Shared storage may not show yet the tokens another tab just got.
    if (locked && state !== null && (await this.#rotatedElsewhere(state.accessToken))) {
      state = await this.#awaitTokensNewerThan(state.accessToken, FOLLOW_MS).catch(() => this.#read());
    }
    if (state !== null) this.#announceEnding(state.sessionId); // "ended" follows whatever the server says
    const ended = state === null && !this.#cookieMode ? true : await this.#revokeOnServer(state);
    this.#signOut("logged_out", false);
    if (this.#cookieMode) this.#setLogoutPending(!ended);
    return ended;
  }

  /**
   * POST /v1/auth/logout: with the access token while it is valid (a refresh
   * racing with it can't be mistaken for reuse), else with the refresh token
   * (body, or the cookie). Retries no answer, 5xx and 429 a few times.
   * Resolves to whether the session is over on the server.
   */
  async #revokeOnServer(state: TokenState | null): Promise<boolean> {
    let bearer = state !== null && this.#usable(state);
    const canFallBack = this.#cookieMode || state?.refreshToken != null;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = { Accept: "application/json" };
      const init: RequestInit = { method: "POST", headers, credentials: this.#cookieMode ? "include" : "same-origin", keepalive: true };
      if (bearer && state !== null) {
        headers.Authorization = `Bearer ${state.accessToken}`;
      } else if (!this.#cookieMode) {
        if (state?.refreshToken == null) return false; // Nothing the server would take.
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify({ refresh_token: state.refreshToken });
      }
      let error: SessionError;
      try {
        const { res, body } = await this.#call(LOGOUT_PATH, init, "sign out");
        if (res.ok) return true;
        error = errorFromBody(res, body);
      } catch (err) {
        error = err instanceof SessionError ? err : new SessionError("network_error", "Could not reach the server.");
      }
      // Our clock said the token was valid, the server's did not: use the refresh token.
      if (bearer && canFallBack && (error.code === "token_expired" || error.code === "invalid_token")) {
        bearer = false;
        continue;
      }
      if (endReasonFor(error.code) !== null) return true; // Already over on the server.
      if (!isTransient(error.status) || attempt >= LOGOUT_ATTEMPTS) return false;
      await sleep(Math.min(5000, error.retryAfter !== null ? error.retryAfter * 1000 : 250 * 4 ** (attempt - 1)));
    }
  }

  /** Cookie mode: a logout the server did not confirm, to finish on the next resume(). */
  #logoutPending(): boolean {
    try {
      return (this.#shared ?? this.#storage).getItem(`${this.#key}:logout-pending`) !== null;
    } catch {
      return false;
    }
  }

  #setLogoutPending(pending: boolean): void {
    const storage = this.#shared ?? this.#storage;
    const key = `${this.#key}:logout-pending`;
    try {
      if (pending) storage.setItem(key, "1");
      else storage.removeItem(key);
    } catch {
      // ignore
    }
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
      if (this.#notBeforeError !== null && Date.now() < this.#notBefore) return Promise.reject(this.#notBeforeError);
      const run = this.#locks !== null ? this.#withLock(stale) : this.#channel !== null ? this.#elect(stale) : this.#refreshIfStill(stale);
      this.#inflight = run.finally(() => {
        this.#inflight = null;
      });
    }
    return this.#inflight;
  }

  /**
   * Runs `fn` holding the Web Lock `name`, waiting at most `waitMs` for it:
   * a tab that hangs while holding it must not freeze the others.
   */
  async #lock<T>(name: string, waitMs: number, fn: () => Promise<T>): Promise<T> {
    const locks = this.#locks as LockManagerLike;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), waitMs);
    let granted = false;
    try {
      return await locks.request(name, { signal: controller.signal }, () => {
        granted = true;
        clearTimeout(timer);
        return fn();
      });
    } catch (err) {
      if (granted || !controller.signal.aborted) throw err;
      throw new SessionError("lock_timeout", "Another tab is still refreshing the session. Please try again.", { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  #withLock(stale: string | null): Promise<TokenState> {
    // The holder needs at most one refresh request plus the wait for another
    // tab's tokens; three refresh timeouts cover that with room to spare.
    return this.#lock(`${this.#key}:refresh`, this.#refreshTimeoutMs * 3, async () => {
      // Let a "changed" message from the tab that held the lock arrive first.
      await sleep(0);
      const before = this.#read();
      // Storage writes reach other tabs asynchronously (Chromium syncs
      // localStorage between renderer processes in the background), so the
      // tokens read here can be the ones another tab rotated a moment ago.
      // Refreshing with them would be a reuse and end the session; the marker
      // lock that tab still holds says so, consistently, so wait instead.
      const wouldRefresh = before !== null && (before.accessToken === stale || !this.#usable(before));
      if (wouldRefresh && this.#superseded(before)) return this.#onSuperseded(before);
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
        .request(this.#markerName(replaced), {}, () => {
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

  /** Waits for another tab's new tokens to reach this tab's storage. */
  async #awaitTokensNewerThan(replaced: string, waitMs = ROTATED_MARK_MS): Promise<TokenState> {
    const deadline = Date.now() + waitMs;
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
      if (outcome === "changed") {
        // Shared storage shows the winner's tokens (per-tab storage never does).
        const fresh = await this.#awaitTokensNewerThan(stale ?? "", FOLLOW_MS).catch(() => null);
        if (fresh !== null) return fresh;
      } else if (outcome !== null) {
        throw endedError(outcome);
      }
    }
    return this.#refreshIfStill(stale);
  }

  #waitForRemote(): Promise<RemoteOutcome> {
    return new Promise((resolve) => {
      const done = (outcome: RemoteOutcome): void => {
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
      if (this.#superseded(current)) return this.#onSuperseded(current);
      init.headers = { Accept: "application/json", "Content-Type": "application/json" };
      init.body = JSON.stringify({ refresh_token: current.refreshToken });
    }
    let res: Response;
    let body: unknown;
    try {
      ({ res, body } = await this.#call(REFRESH_PATH, init, "refresh the session"));
    } finally {
      this.#remoteClaims.clear();
    }
    if (epoch !== this.#epoch) throw notSignedIn(); // Signed out meanwhile: drop the answer.
    if (res.ok) {
      const state = this.#stateFromBody(body);
      if (state === null) throw new SessionError("bad_response", "Unexpected refresh response.", { status: res.status });
      this.#notBefore = 0;
      this.#notBeforeError = null;
      this.#adopt(state);
      this.#signedIn = true;
      this.#emit("refresh", { sessionId: state.sessionId, expiresAt: state.expiresAt, local: true });
      return state;
    }
    const error = errorFromBody(res, body);
    if (isTransient(res.status)) {
      if (error.retryAfter !== null) {
        this.#notBefore = Date.now() + error.retryAfter * 1000;
        this.#notBeforeError = error;
      }
      throw error;
    }
    // 400 in cookie mode means no cookie came along: the session can't go on.
    // Any other 4xx would be refused again: retrying forever helps no one.
    const reason = endReasonFor(error.code) ?? (res.status === 400 ? "invalid_refresh_token" : "refresh_rejected");
    this.#signOut(reason, true, error.code);
    throw endedError(reason, error.status);
  }

  /**
   * One request with a deadline covering the answer's body too: a server or
   * network that never answers must not hold the refresh (and with it every
   * tab waiting for the lock) forever.
   */
  async #call(path: string, init: RequestInit, what: string): Promise<{ res: Response; body: unknown }> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#refreshTimeoutMs);
    try {
      const res = await this.#fetchImpl(this.#url(path), { ...init, signal: controller.signal });
      const text = await res.text();
      let body: unknown = null;
      try {
        body = text === "" ? null : JSON.parse(text);
      } catch {
        // Not JSON: keep null.
      }
      return { res, body };
    } catch (cause) {
      if (controller.signal.aborted) {
        throw new SessionError("timeout", `The server did not answer in time to ${what}.`, { cause });
      }
      throw new SessionError("network_error", `Could not reach the server to ${what}.`, { cause });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Whether the ledger says another tab already refreshed this session past
   * `state`: its refresh token is spent, and presenting it would be a reuse
   * that revokes the session in every tab.
   */
  #superseded(state: TokenState): boolean {
    if (this.#cookieMode || this.#shared === null) return false;
    try {
      const latest = ledgerLatest(this.#shared, this.#key, state.sessionId);
      return latest !== null && latest !== fingerprint(state.accessToken);
    } catch {
      return false;
    }
  }

  /** This tab holds spent tokens: take the current ones if they show up, else sign this tab (only) out. */
  async #onSuperseded(stale: TokenState): Promise<TokenState> {
    // Shared storage can show the ledger entry before the tokens it names
    // (longer while the refreshing tab's marker says the rotation is recent).
    const wait = (await this.#rotatedElsewhere(stale.accessToken)) ? ROTATED_MARK_MS : FOLLOW_MS;
    const fresh = await this.#awaitTokensNewerThan(stale.accessToken, wait).catch(() => null);
    if (fresh !== null) return fresh;
    const had = this.#signedIn || this.#read() !== null;
    this.#forget(stale);
    if (had) this.#announceEnd("superseded", true, "superseded");
    throw endedError("superseded");
  }

  // ---- background timer and wake-ups ----------------------------------------

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
    this.#arm(state, Date.now() + delay);
  }

  #arm(state: TokenState, due: number): void {
    this.#timer = setTimeout(
      () => {
        if (due - Date.now() > 1000) this.#arm(state, due);
        else this.#onTimer(state);
      },
      Math.min(MAX_TIMER_MS, Math.max(0, due - Date.now())),
    );
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
        // Transient (network, timeout, lock wait, 429, 5xx): try again with backoff while signed in.
        const current = this.#read();
        if (current === null) return;
        const backoff = Math.min(30_000, 1000 * 2 ** this.#retryAttempt++);
        // A Retry-After (this one, or one still running) says how long exactly.
        const retryAfterMs = this.#notBefore - Date.now();
        this.#schedule(current, retryAfterMs > 0 ? retryAfterMs : backoff);
      },
    );
  }

  /** Refresh when the tab becomes visible or the browser comes back online. */
  #listenForWake(): void {
    const doc = typeof document !== "undefined" ? document : null;
    if (doc !== null && typeof doc.addEventListener === "function") {
      const onVisibility = (): void => {
        if (doc.visibilityState === "visible") this.#wake();
      };
      doc.addEventListener("visibilitychange", onVisibility);
      this.#cleanups.push(() => doc.removeEventListener("visibilitychange", onVisibility));
    }
    const win = typeof window !== "undefined" ? window : null;
    if (win !== null && typeof win.addEventListener === "function") {
      const onOnline = (): void => this.#wake();
      win.addEventListener("online", onOnline);
      this.#cleanups.push(() => win.removeEventListener("online", onOnline));
    }
  }

  /**
   * Timers are throttled or frozen in hidden tabs and fail while offline:
   * on a wake-up, refresh now if the token is due, else set the timer again.
   */
  #wake(): void {
    if (this.#closed) return;
    const state = this.#read();
    if (state === null) return;
    const margin = this.#marginMs(state.expiresAt - state.obtainedAt);
    if (state.expiresAt - Date.now() > margin) {
      this.#schedule(state, Math.max(0, state.expiresAt - margin - Date.now()));
    } else {
      this.#stopTimer();
      this.#onTimer(state);
    }
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
    if (data.type === "ending" && typeof data.sessionId === "string") {
      this.#endingElsewhere = data.active === true ? { sessionId: data.sessionId, until: Date.now() + ENDING_MS } : null;
      return;
    }
    this.#remoteClaims.clear();
    if (data.type === "changed" && typeof data.obtainedAt === "number") {
      for (const done of [...this.#remoteWaiters]) done("changed");
      void this.#follow(data.obtainedAt);
    } else if (data.type === "ended" && typeof data.reason === "string" && data.reason in END_MESSAGES) {
      const reason = data.reason as SessionEndReason;
      const current = this.#read();
      // Per-tab storage: another tab's session ending is not this tab's.
      if (current !== null && typeof data.sessionId === "string" && current.sessionId !== data.sessionId) return;
      for (const done of [...this.#remoteWaiters]) done(reason);
      const had = this.#signedIn || current !== null;
      // Shared storage is already cleared by the other tab; per-tab storage isn't.
      this.#forget(current);
      if (had) this.#announceEnd(reason, this.#endingHere !== data.sessionId, reason);
    }
  }

  /**
   * Another tab got tokens obtained at `obtainedAt`: once shared storage shows
   * them, follow them (timer, events). Tokens older than the ones this tab
   * holds are old news; with per-tab storage they never show up, which is fine.
   */
  async #follow(obtainedAt: number): Promise<void> {
    const deadline = Date.now() + FOLLOW_MS;
    for (;;) {
      if (this.#closed) return;
      const current = this.#read();
      if (current !== null && current.obtainedAt >= obtainedAt) {
        if (current.obtainedAt > obtainedAt) return; // This tab holds newer ones: old news.
        this.#schedule(current);
        const wasSignedIn = this.#signedIn;
        this.#signedIn = true;
        if (!wasSignedIn) this.#emit("statechange", { signedIn: true, sessionId: current.sessionId, initial: false });
        this.#emit("refresh", { sessionId: current.sessionId, expiresAt: current.expiresAt, local: false });
        return;
      }
      if (Date.now() >= deadline) return;
      await sleep(ROTATED_POLL_MS * 2);
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
  return locks != null && typeof locks.request === "function" ? locks : null;
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

/** The payload of a JWT, decoded without verifying anything; null if it is not one. */
function decodeClaims(token: string): Record<string, unknown> | null {
  const part = token.split(".")[1];
  if (part === undefined) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const json: unknown = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    return isRecord(json) ? json : null;
  } catch {
    return null;
  }
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
