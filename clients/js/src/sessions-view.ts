import type { SecurityEvent, SessionClient, SessionInfo } from "./client.js";
import { describeSecurityEvent } from "./activity.js";
import { describeUserAgent } from "./device.js";

export { describeSecurityEvent } from "./activity.js";
export { describeUserAgent } from "./device.js";

/** Options of {@link mountSessionsView}. */
export interface SessionsViewOptions {
  /** Heading text. Default "Your sessions". */
  title?: string;
  /** Asked before a sign-out; resolve to false to cancel. Default: no confirmation. */
  confirm?: (message: string) => boolean | Promise<boolean>;
  /** Clock for "last active" (tests). Default `Date.now`. */
  now?: () => number;
  /**
   * Show the "Recent security activity" list (SPEC 4.8) under the sessions.
   * Default true; `false` renders no list and never calls `securityEvents()`.
   */
  activity?: boolean;
  /** Events per page of the activity list ("Show more" loads the next page). Default 10. */
  activityLimit?: number;
  /** Heading of the activity list. Default "Recent security activity". */
  activityTitle?: string;
}

/** Handle of a mounted sessions view. */
export interface SessionsView {
  /** Fetches the list (and the first page of the activity list) again and re-renders. */
  reload(): Promise<void>;
  /** Removes the view and its listeners. */
  destroy(): void;
}

/**
 * Renders a "Your sessions" panel into `root`: one row per session (device
 * from its User-Agent, IP, last active, "This device"), a "Sign out" button per
 * row, and "Sign out other devices" / "Sign out everywhere"; below them a
 * "Recent security activity" list (one sentence per event, device, IP, time,
 * "This device") with a "Show more" button, unless `activity: false`.
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
  const activity = options.activity === false ? null : activityList(doc, client, options, now);
  if (activity !== null) section.append(activity.section);
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
      activity?.clear();
      status.textContent = "Not signed in.";
      return;
    }
    // The activity list reports its own errors; a failure there never hides the sessions.
    const [sessions] = await Promise.all([client.listSessions(), activity?.load()]);
    render(sessions);
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
    if (!event.signedIn) {
      render([]);
      activity?.clear();
    }
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

interface ActivityList {
  section: HTMLElement;
  /** Loads the newest page again; never rejects (errors go to its status line). */
  load(): Promise<void>;
  clear(): void;
}

function activityList(
  doc: Document,
  client: SessionClient,
  options: SessionsViewOptions,
  now: () => number,
): ActivityList {
  const limit = options.activityLimit ?? 10;
  const section = el(doc, "section", "sg-activity");
  const heading = el(doc, "h3", "sg-activity-title", options.activityTitle ?? "Recent security activity");
  const status = el(doc, "p", "sg-activity-status");
  status.setAttribute("role", "status");
  const list = el(doc, "ul", "sg-activity-list");
  const more = button(doc, "sg-activity-more", "Show more");
  more.hidden = true;
  section.append(heading, status, list, more);

  let next: string | null = null;
  /** Bumped by every (re)load and clear, so a late "Show more" page is dropped. */
  let generation = 0;

  const row = (event: SecurityEvent): HTMLLIElement => {
    const item = el(doc, "li", event.currentSession ? "sg-event sg-current" : "sg-event");
    item.dataset.eventId = event.id;
    item.dataset.eventType = event.type;
    item.append(el(doc, "strong", "sg-event-text", describeSecurityEvent(event)));
    if (event.currentSession) item.append(" ", el(doc, "span", "sg-this-device", "This device"));
    const meta = el(doc, "div", "sg-meta");
    const device = el(doc, "span", "sg-device", describeUserAgent(event.userAgent));
    device.title = event.userAgent;
    const ip = el(doc, "span", "sg-ip", event.ip === "" ? "unknown IP" : event.ip);
    const time = el(doc, "time", "sg-event-time", timeAgo(event.at, now()));
    time.dateTime = event.at;
    time.title = event.at;
    meta.append(device, " · ", ip, " · ", time);
    item.append(meta);
    return item;
  };

  const show = (events: SecurityEvent[], cursor: string | null, append: boolean): void => {
    const rows = events.map(row);
    if (append) list.append(...rows);
    else list.replaceChildren(...rows);
    next = cursor;
    more.hidden = next === null;
    status.textContent = list.childElementCount === 0 ? "No recent activity." : "";
  };

  const clear = (): void => {
    generation++;
    list.replaceChildren();
    next = null;
    more.hidden = true;
    status.textContent = "";
  };

  const load = async (): Promise<void> => {
    const mine = ++generation;
    try {
      const page = await client.securityEvents({ limit });
      if (mine === generation) show(page.events, page.next, false);
    } catch (err) {
      if (mine !== generation) return;
      list.replaceChildren();
      next = null;
      more.hidden = true;
      status.textContent = err instanceof Error ? err.message : "Could not load recent activity.";
    }
  };

  more.addEventListener("click", () => {
    if (next === null || more.disabled) return;
    const mine = generation;
    more.disabled = true;
    status.textContent = "Loading…";
    client
      .securityEvents({ limit, before: next })
      .then(
        (page) => {
          if (mine === generation) show(page.events, page.next, true);
        },
        (err: unknown) => {
          // The list so far stays; "Show more" can be tried again.
          if (mine === generation) status.textContent = err instanceof Error ? err.message : "Could not load more activity.";
        },
      )
      .finally(() => {
        more.disabled = false;
      });
  });

  return { section, load, clear };
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
