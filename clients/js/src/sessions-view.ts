import type { SessionClient, SessionInfo } from "./client.js";
import { describeUserAgent } from "./device.js";

export { describeUserAgent } from "./device.js";

/** Options of {@link mountSessionsView}. */
export interface SessionsViewOptions {
  /** Heading text. Default "Your sessions". */
  title?: string;
  /** Asked before a sign-out; resolve to false to cancel. Default: no confirmation. */
  confirm?: (message: string) => boolean | Promise<boolean>;
  /** Clock for "last active" (tests). Default `Date.now`. */
  now?: () => number;
}

/** Handle of a mounted sessions view. */
export interface SessionsView {
  /** Fetches the list again and re-renders. */
  reload(): Promise<void>;
  /** Removes the view and its listeners. */
  destroy(): void;
}

/**
 * Renders a "Your sessions" panel into `root`: one row per session (device
 * from its User-Agent, IP, last active, "This device"), a "Sign out" button per
 * row, and "Sign out other devices" / "Sign out everywhere".
 *
 * Every value from the server (user agents are attacker-controlled) is
 * written with `textContent` or `setAttribute`, never parsed as HTML.
 * Style it with the `sg-*` class names.
 */
export function mountSessionsView(
  root: HTMLElement,
  client: SessionClient,
  options: SessionsViewOptions = {},
): SessionsView {
  const doc = root.ownerDocument;
  const now = options.now ?? Date.now;
  const confirmAction = options.confirm ?? (() => true);

  const section = el(doc, "section", "sg-sessions");
  const heading = el(doc, "h2", "sg-title", options.title ?? "Your sessions");
  const status = el(doc, "p", "sg-status");
  status.setAttribute("role", "status");
  const list = el(doc, "ul", "sg-session-list");
  const actions = el(doc, "div", "sg-actions");
  const others = button(doc, "sg-revoke-others", "Sign out other devices");
  const everywhere = button(doc, "sg-revoke-all", "Sign out everywhere");
  actions.append(others, everywhere);
  section.append(heading, status, list, actions);
  root.append(section);

  let busy = false;
  const setBusy = (value: boolean): void => {
    busy = value;
    for (const b of section.querySelectorAll("button")) b.disabled = value;
  };

  /** Runs a user action: confirm, disable buttons, report errors, re-render. */
  const act = async (question: string, work: () => Promise<string | void>): Promise<void> => {
    if (busy || !(await confirmAction(question))) return;
    setBusy(true);
    status.textContent = "Working…";
    try {
      const message = await work();
      if (client.isSignedIn()) await load();
      status.textContent = message ?? "";
    } catch (err) {
      status.textContent = err instanceof Error ? err.message : "Something went wrong.";
    } finally {
      setBusy(false);
    }
  };

  const render = (sessions: SessionInfo[]): void => {
    list.replaceChildren(...sessions.map(row));
    others.hidden = !sessions.some((s) => !s.current);
  };

  const row = (session: SessionInfo): HTMLLIElement => {
    const item = el(doc, "li", session.current ? "sg-session sg-current" : "sg-session");
    item.dataset.sessionId = session.id;
    const device = el(doc, "strong", "sg-device", describeUserAgent(session.userAgent));
    device.title = session.userAgent;
    item.append(device);
    if (session.current) item.append(" ", el(doc, "span", "sg-this-device", "This device"));
    const meta = el(doc, "div", "sg-meta");
    const ip = el(doc, "span", "sg-ip", session.ip === "" ? "unknown IP" : session.ip);
    const active = el(doc, "span", "sg-last-active", `active ${timeAgo(session.lastActiveAt, now())}`);
    active.title = session.lastActiveAt;
    meta.append(ip, " · ", active);
    item.append(meta);
    const revoke = button(doc, "sg-revoke", "Sign out");
    revoke.addEventListener("click", () => {
      const label = describeUserAgent(session.userAgent);
      void act(`Sign out ${session.current ? "this device" : label}?`, async () => {
        if (session.current) await client.logout();
        else await client.revokeSession(session.id);
        return session.current ? "Signed out." : `Signed out ${label}.`;
      });
    });
    item.append(revoke);
    return item;
  };

  const load = async (): Promise<void> => {
    if (!client.isSignedIn()) {
      render([]);
      status.textContent = "Not signed in.";
      return;
    }
    render(await client.listSessions());
  };

  others.addEventListener("click", () => {
    void act("Sign out all other devices?", async () => {
      const n = await client.revokeAll({ keepCurrent: true });
      return `Signed out ${n} other ${n === 1 ? "session" : "sessions"}.`;
    });
  });
  everywhere.addEventListener("click", () => {
    void act("Sign out everywhere, this device included?", async () => {
      await client.revokeAll({ keepCurrent: false });
      return "Signed out everywhere.";
    });
  });

  const unsubscribe = client.on("statechange", (event) => {
    if (!event.signedIn) render([]);
  });

  const reload = async (): Promise<void> => {
    status.textContent = "Loading…";
    try {
      await load();
      if (client.isSignedIn()) status.textContent = "";
    } catch (err) {
      status.textContent = err instanceof Error ? err.message : "Could not load sessions.";
    }
  };
  void reload();

  return {
    reload,
    destroy() {
      unsubscribe();
      section.remove();
    },
  };
}

function el<K extends keyof HTMLElementTagNameMap>(
  doc: Document,
  tag: K,
  className: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = doc.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(doc: Document, className: string, text: string): HTMLButtonElement {
  const b = el(doc, "button", className, text);
  b.type = "button";
  return b;
}

/** "just now", "5 minutes ago", "3 hours ago", "2 days ago". */
export function timeAgo(iso: string, nowMs: number): string {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return "at an unknown time";
  const seconds = Math.max(0, Math.round((nowMs - at) / 1000));
  if (seconds < 45) return "just now";
  const [value, unit] =
    seconds < 3600 ? [Math.round(seconds / 60), "minute"] : seconds < 86400 ? [Math.round(seconds / 3600), "hour"] : [Math.round(seconds / 86400), "day"];
  return `${value} ${unit}${value === 1 ? "" : "s"} ago`;
}
