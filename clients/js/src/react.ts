/**
 * React binding: `useSession(client)` re-renders a component when the user
 * signs in or out, the tokens are refreshed (here or in another tab), or the
 * session ends. A separate entry point (`@sessiongate/client/react`), so the
 * core never imports React.
 * @packageDocumentation
 */
import { useCallback, useSyncExternalStore } from "react";
import type { SessionClient, SessionSnapshot } from "./client.js";

/** What {@link useSession} returns; the same object until something changes. */
export interface SessionState {
  signedIn: boolean;
  /** Session id, expiry and (unverified) claims; null when signed out. */
  session: SessionSnapshot | null;
}

const SIGNED_OUT: SessionState = Object.freeze({ signedIn: false, session: null });
/** Last snapshot per client: useSyncExternalStore needs the same object for the same state. */
const cache = new WeakMap<SessionClient, { key: string; state: SessionState }>();

function snapshotOf(client: SessionClient): SessionState {
  const session = client.getSession();
  if (session === null) return SIGNED_OUT;
  const key = `${session.sessionId}|${session.expiresAt}`;
  const cached = cache.get(client);
  if (cached !== undefined && cached.key === key) return cached.state;
  const state: SessionState = { signedIn: true, session };
  cache.set(client, { key, state });
  return state;
}

/**
 * The client's session state, kept current. Server rendering sees "signed
 * out" (tokens live in the browser); call `client.resume()` once on load.
 */
export function useSession(client: SessionClient): SessionState {
  const subscribe = useCallback(
    (notify: () => void) => {
      const offs = [client.on("statechange", notify), client.on("refresh", notify), client.on("sessionended", notify)];
      return () => offs.forEach((off) => off());
    },
    [client],
  );
  return useSyncExternalStore(
    subscribe,
    () => snapshotOf(client),
    () => SIGNED_OUT,
  );
}
