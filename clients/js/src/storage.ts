import { isRecord } from "./errors.js";

/**
 * Where the client keeps its tokens. `window.localStorage` and
 * `window.sessionStorage` fit as they are; {@link createMemoryStorage} keeps
 * them in memory only.
 */
export interface TokenStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** A storage that lives as long as the page (nothing survives a reload). */
export function createMemoryStorage(): TokenStorage {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key),
  };
}

/** What the client stores (one JSON item, so tabs never see half an update). */
export interface TokenState {
  accessToken: string;
  /** Epoch milliseconds, by this machine's clock. */
  expiresAt: number;
  /** Epoch milliseconds when the tokens were received. */
  obtainedAt: number;
  sessionId: string;
  /** Null in refresh-cookie mode. */
  refreshToken: string | null;
}

export function parseState(raw: unknown): TokenState | null {
  if (!isRecord(raw)) return null;
  const { accessToken, expiresAt, obtainedAt, sessionId, refreshToken } = raw;
  if (
    typeof accessToken !== "string" ||
    typeof expiresAt !== "number" ||
    typeof obtainedAt !== "number" ||
    typeof sessionId !== "string" ||
    (refreshToken !== null && typeof refreshToken !== "string")
  ) {
    return null;
  }
  return { accessToken, expiresAt, obtainedAt, sessionId, refreshToken };
}

export function readState(storage: TokenStorage, key: string): TokenState | null {
  let raw: string | null;
  try {
    raw = storage.getItem(key);
  } catch {
    return null;
  }
  if (raw === null) return null;
  try {
    return parseState(JSON.parse(raw));
  } catch {
    return null;
  }
}
