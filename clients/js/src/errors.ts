/**
 * Why a session ended without the user asking for it on this tab.
 *
 * - `session_expired`: idle or absolute timeout on the server.
 * - `session_revoked`: signed out from another device, or by an admin.
 * - `refresh_token_reused`: the server saw an old refresh token again (possible
 *   theft) and revoked the whole session.
 * - `invalid_refresh_token`: the server does not know the refresh token (or, in
 *   cookie mode, no refresh cookie was sent).
 * - `refresh_rejected`: the server refused the refresh for another reason that
 *   trying again will not fix (any other 4xx, e.g. a 403 `invalid_request` for
 *   a cookie refresh sent from another origin); the event's `code` names it.
 * - `superseded`: this tab held a copy of the tokens that another tab had
 *   already refreshed (a duplicated or restored tab with per-tab storage);
 *   spending it would have been a reuse that ends the session everywhere, so
 *   only this tab was signed out.
 * - `logged_out`: the user signed out in another tab.
 */
export type SessionEndReason =
  | "session_expired"
  | "session_revoked"
  | "refresh_token_reused"
  | "invalid_refresh_token"
  | "refresh_rejected"
  | "superseded"
  | "logged_out";

/** Messages an app can show as they are. */
export const END_MESSAGES: Readonly<Record<SessionEndReason, string>> = {
  session_expired: "Your session has expired. Please sign in again.",
  session_revoked: "Your session was signed out. Please sign in again.",
  refresh_token_reused: "For your security, your session was signed out. Please sign in again.",
  invalid_refresh_token: "Your session has expired. Please sign in again.",
  refresh_rejected: "Your session could not be continued. Please sign in again.",
  superseded: "Your session continued in another tab. Please sign in again here.",
  logged_out: "You have been signed out.",
};

/** Server error codes that end the session (SPEC 4.2). */
export function endReasonFor(code: string): SessionEndReason | null {
  switch (code) {
    case "session_expired":
    case "session_revoked":
    case "refresh_token_reused":
    case "invalid_refresh_token":
      return code;
    default:
      return null;
  }
}

/**
 * Error thrown by the client.
 *
 * `code` is the server's error code (`session_expired`, `rate_limited`, ...) or
 * one of the client's own: `network_error`, `not_signed_in`, `login_failed`,
 * `bad_response`, `http_<status>`.
 */
export class SessionError extends Error {
  /** Machine-readable code. */
  readonly code: string;
  /** HTTP status of the response that caused it, 0 when there was none. */
  readonly status: number;
  /** Seconds to wait before trying again (from `Retry-After`), when known. */
  readonly retryAfter: number | null;
  /** Set when the error ended the session. */
  readonly endReason: SessionEndReason | null;

  constructor(
    code: string,
    message: string,
    init: { status?: number; retryAfter?: number | null; endReason?: SessionEndReason | null; cause?: unknown } = {},
  ) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "SessionError";
    this.code = code;
    this.status = init.status ?? 0;
    this.retryAfter = init.retryAfter ?? null;
    this.endReason = init.endReason ?? null;
  }
}

/** Reads `{error, message}` from an error response without consuming it. */
export async function readServerError(res: Response): Promise<{ code: string; message: string }> {
  let code = `http_${res.status}`;
  let message = `Request failed with status ${res.status}.`;
  try {
    const body: unknown = await res.clone().json();
    if (isRecord(body)) {
      if (typeof body.error === "string" && body.error !== "") code = body.error;
      if (typeof body.message === "string" && body.message !== "") message = body.message;
    }
  } catch {
    // Not JSON: keep the generic code.
  }
  return { code, message };
}

/** Builds a SessionError from a failed response. */
export async function errorFromResponse(res: Response, fallbackCode?: string): Promise<SessionError> {
  const { code, message } = await readServerError(res);
  const finalCode = fallbackCode !== undefined && code.startsWith("http_") ? fallbackCode : code;
  return new SessionError(finalCode, message, { status: res.status, retryAfter: parseRetryAfter(res.headers) });
}

/** Builds a SessionError from a failed response whose body was already read. */
export function errorFromBody(res: Response, body: unknown): SessionError {
  let code = `http_${res.status}`;
  let message = `Request failed with status ${res.status}.`;
  if (isRecord(body)) {
    if (typeof body.error === "string" && body.error !== "") code = body.error;
    if (typeof body.message === "string" && body.message !== "") message = body.message;
  }
  return new SessionError(code, message, { status: res.status, retryAfter: parseRetryAfter(res.headers) });
}

/**
 * Whether a failed refresh may succeed later as it is: no answer, a timeout,
 * 408, 425, 429 or a 5xx. Any other 4xx will be refused again.
 */
export function isTransient(status: number): boolean {
  return status === 0 || status === 408 || status === 425 || status === 429 || status >= 500;
}

function parseRetryAfter(headers: Headers): number | null {
  const value = headers.get("Retry-After");
  if (value === null) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
