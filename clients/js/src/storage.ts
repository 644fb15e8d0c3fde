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

/**
 * `window.localStorage` when this page may use it (it survives reloads and is
 * shared by the origin's tabs), else null (storage disabled, sandboxed frame,
 * outside a browser).
 */
export function browserLocalStorage(): TokenStorage | null {
  try {
    const storage = (globalThis as { localStorage?: TokenStorage }).localStorage;
    if (storage === undefined || storage === null) return null;
    const probe = "sessiongate.probe";
    storage.setItem(probe, "1");
    storage.removeItem(probe);
    return storage;
  } catch {
    return null;
  }
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

/** How many sessions the ledger remembers (a browser rarely holds more than one or two). */
const LEDGER_SIZE = 16;

/**
 * The rotation ledger: for each session, a fingerprint of the newest access
 * token any tab of this browser obtained, kept in storage every tab shares.
 * It holds no token, only a 32-bit hash (the same one the lock names show),
 * yet it lets a tab whose own (per-tab) copy of the tokens is older prove it
 * must not spend that refresh token: the server already rotated it.
 */
export function ledgerLatest(storage: TokenStorage, key: string, sessionId: string): string | null {
  const entry = readLedger(storage, key)[sessionId];
  return entry === undefined ? null : entry.fp;
}

/** Records `fp` as the newest access token of `sessionId`. */
export function ledgerRecord(storage: TokenStorage, key: string, sessionId: string, fp: string): void {
  const ledger = readLedger(storage, key);
  ledger[sessionId] = { fp, at: Date.now() };
  const newest = Object.entries(ledger)
    .sort(([, a], [, b]) => b.at - a.at)
    .slice(0, LEDGER_SIZE);
  try {
    storage.setItem(ledgerKey(key), JSON.stringify(Object.fromEntries(newest)));
  } catch {
    // A stale entry would sign a current tab out: better no ledger at all.
    try {
      storage.removeItem(ledgerKey(key));
    } catch {
      // ignore
    }
  }
}

/** Drops the entry of a session that ended. */
export function ledgerForget(storage: TokenStorage, key: string, sessionId: string): void {
  const ledger = readLedger(storage, key);
  if (!(sessionId in ledger)) return;
  delete ledger[sessionId];
  try {
    if (Object.keys(ledger).length === 0) storage.removeItem(ledgerKey(key));
    else storage.setItem(ledgerKey(key), JSON.stringify(ledger));
  } catch {
    // ignore
  }
}

function ledgerKey(key: string): string {
  return `${key}:latest`;
}

function readLedger(storage: TokenStorage, key: string): Record<string, { fp: string; at: number }> {
  const out: Record<string, { fp: string; at: number }> = {};
  try {
    const raw: unknown = JSON.parse(storage.getItem(ledgerKey(key)) ?? "{}");
    if (!isRecord(raw)) return out;
    for (const [sid, entry] of Object.entries(raw)) {
      if (isRecord(entry) && typeof entry.fp === "string" && typeof entry.at === "number") {
        out[sid] = { fp: entry.fp, at: entry.at };
      }
    }
  } catch {
    // Unreadable: as if empty.
  }
  return out;
}
