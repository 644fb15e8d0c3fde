/**
 * The "Your sessions" component: the user's sessions (this device first),
 * a named sign-out per session with an inline confirmation, "Sign out other
 * devices" / "Sign out everywhere", friendly error and loading states, and the
 * "Recent security activity" list. Plain DOM, no framework; optional styles
 * in `sessions-view.css`.
 */
import type { SessionClient, SessionInfo } from "./client.js";
import { activityList, type ActivityList } from "./activity-view.js";
import { describeUserAgent } from "./device.js";
import { button, el, uniqueId } from "./dom.js";
import { confirmBox } from "./confirm.js";
import { timeFormat } from "./format.js";
import { sessionRow, type RowContext, type SessionRow } from "./session-row.js";
import type { SessionsView, SessionsViewOptions } from "./sessions-options.js";
import { DEFAULT_STRINGS, errorSentence, type SessionsViewStrings } from "./sessions-strings.js";

export { describeSecurityEvent } from "./activity.js";
export { abbreviateIp, describeUserAgent, deviceType, type DeviceType } from "./device.js";
export { DEFAULT_STRINGS, type SessionsViewStrings } from "./sessions-strings.js";
export { timeAgo } from "./format.js";
export type { SessionsView, SessionsViewOptions } from "./sessions-options.js";

type HeadingTag = "h2" | "h3" | "h4" | "h5" | "h6";

interface OpenConfirm {
  box: HTMLElement;
  origin: HTMLButtonElement;
  /** The row it belongs to, or null for the panel's own buttons. */
  sessionId: string | null;
}

/**
 * Renders a "Your sessions" panel into `root`.
 *
 * Every value from the server (user agents are attacker-controlled) is
 * written with `textContent` or `setAttribute`, never parsed as HTML.
 * Style it with the `sg-*` class names, or import `sessions-view.css`.
 */
export function mountSessionsView(root: HTMLElement, client: SessionClient, options: SessionsViewOptions = {}): SessionsView {
  const doc = root.ownerDocument;
  const win = doc.defaultView;
  const now = options.now ?? Date.now;
  const strings: SessionsViewStrings = { ...DEFAULT_STRINGS, ...options.strings };
  if (options.title !== undefined) strings.title = options.title;
  if (options.activityTitle !== undefined) strings.activityTitle = options.activityTitle;
  const level = Math.min(6, Math.max(2, Math.trunc(options.headingLevel ?? 2)));
  const format = timeFormat(options.locale, options.timeZone);
  const online = (): boolean => win?.navigator?.onLine !== false;
  const ctx: RowContext = { doc, strings, format, now, formatLocation: options.formatLocation, renderRow: options.renderRow };

  const section = el(doc, "section", "sg-sessions");
  const heading = el(doc, `h${level}` as HeadingTag, "sg-title", strings.title);
  heading.id = uniqueId("sg-sessions-title");
  heading.tabIndex = -1;
  section.setAttribute("aria-labelledby", heading.id);
  const status = el(doc, "p", "sg-status");
  status.setAttribute("role", "status");
  status.tabIndex = -1;
  const error = el(doc, "div", "sg-error");
  error.setAttribute("role", "alert");
  const errorText = el(doc, "p", "sg-error-text");
  const retry = button(doc, "sg-retry", strings.tryAgain);
  retry.hidden = true;
  error.append(errorText, retry);
  error.hidden = true;
  const list = el(doc, "ul", "sg-session-list");
  const only = el(doc, "p", "sg-only-device", strings.onlyThisDevice);
  only.hidden = true;
  const actions = el(doc, "div", "sg-actions");
  const others = button(doc, "sg-revoke-others", strings.signOutOthers);
  const everywhere = button(doc, "sg-revoke-all", strings.signOutEverywhere);
  const actionButtons = el(doc, "div", "sg-actions-buttons");
  actionButtons.append(others, everywhere);
  actions.append(actionButtons);
  actions.hidden = true;
  section.append(heading, status, error, list, only, actions);
  const help = helpNote(doc, strings, options);
  if (help !== null) section.append(help);
  const activity: ActivityList | null =
    options.activity === false
      ? null
      : activityList(doc, client, {
          limit: options.activityLimit ?? 10,
          headingTag: `h${Math.min(6, level + 1)}` as HeadingTag,
          strings,
          format,
          now,
          online,
        });
  if (activity !== null) section.append(activity.section);
  root.append(section);

  /** Rows by session id, and their order on screen. */
  let rows = new Map<string, SessionRow>();
  let order: SessionRow[] = [];
  /** True from the moment a sign-out is confirmed (or asked with `options.confirm`) until it is done. */
  let busy = false;
  let confirmOpen: OpenConfirm | null = null;
  /** Bumped by every load, so an older answer never overwrites a newer one. */
  let loadSeq = 0;
  let destroyed = false;

  // ---- rendering ------------------------------------------------------------

  const showSkeleton = (): void => {
    const bone = (): HTMLLIElement => {
      const item = el(doc, "li", "sg-skeleton");
      item.setAttribute("aria-hidden", "true");
      item.append(el(doc, "span", "sg-skeleton-line"), el(doc, "span", "sg-skeleton-line sg-skeleton-short"));
      return item;
    };
    list.replaceChildren(bone(), bone());
  };

  const showError = (message: string, canRetry: boolean): void => {
    errorText.textContent = message;
    retry.hidden = !canRetry;
    error.hidden = false;
  };
  const hideError = (): void => {
    error.hidden = true;
    errorText.textContent = "";
    retry.hidden = true;
  };

  const clearRows = (): void => {
    closeConfirm(false);
    rows = new Map();
    order = [];
    list.replaceChildren();
    actions.hidden = true;
    only.hidden = true;
  };

  const showSignedOut = (): void => {
    loadSeq++;
    clearRows();
    activity?.clear();
    hideError();
    section.setAttribute("aria-busy", "false");
    status.textContent = strings.notSignedIn;
  };

  /** Current device first, then the most recently active. */
  const sorted = (sessions: SessionInfo[]): SessionInfo[] =>
    [...sessions].sort((a, b) => Number(b.current) - Number(a.current) || time(b.lastActiveAt) - time(a.lastActiveAt));

  /** Updates the list in place (keeping focus and open "Details") from a fresh server list. */
  const render = (sessions: SessionInfo[]): void => {
    const list_ = sorted(sessions);
    const devices = list_.map((s) => options.describeSession?.(s) ?? describeUserAgent(s.userAgent));
    const counts = new Map<string, number>();
    for (const d of devices) counts.set(d, (counts.get(d) ?? 0) + 1);
    const focused = doc.activeElement;
    const next = new Map<string, SessionRow>();
    const nextOrder: SessionRow[] = [];
    list_.forEach((session, i) => {
      const device = devices[i] as string;
      const name = (counts.get(device) ?? 0) > 1 ? strings.deviceSignedIn(device, format.shortDate(session.createdAt, now()) ?? "") : device;
      const old = rows.get(session.id);
      let row: SessionRow;
      if (old !== undefined && old.name === name && sameSession(old.session, session)) {
        row = old;
        row.tick();
      } else {
        row = sessionRow(ctx, session, device, name);
        row.revoke.addEventListener("click", () => askRow(row));
        if (old !== undefined) {
          const wasOpen = old.item.querySelector("details")?.open === true;
          const details = row.item.querySelector("details");
          if (details !== null) details.open = wasOpen;
          if (confirmOpen?.sessionId === session.id) closeConfirm(false);
          list.replaceChild(row.item, old.item);
          if (focused !== null && old.item.contains(focused)) {
            (focused.tagName === "SUMMARY" ? row.item.querySelector("summary") : row.revoke)?.focus();
          }
        }
      }
      next.set(session.id, row);
      nextOrder.push(row);
    });
    // Rows that are gone (signed out here or elsewhere): keep focus in the list.
    for (const [id, row] of rows) {
      if (next.has(id)) continue;
      if (confirmOpen?.sessionId === id) closeConfirm(false);
      const hadFocus = focused !== null && row.item.contains(focused);
      const index = order.indexOf(row);
      row.item.remove();
      if (hadFocus) focusAfterRemoval(nextOrder, index);
    }
    // Skeleton rows and anything else that is not a row.
    for (const child of [...list.children]) if (![...next.values()].some((r) => r.item === child)) child.remove();
    nextOrder.forEach((row, i) => {
      if (list.children[i] !== row.item) list.insertBefore(row.item, list.children[i] ?? null);
    });
    rows = next;
    order = nextOrder;
    const hasOthers = order.some((r) => !r.session.current);
    const onlyThis = order.length === 1 && order[0]?.session.current === true;
    others.hidden = !hasOthers;
    everywhere.hidden = order.length === 0 || onlyThis;
    actions.hidden = others.hidden && everywhere.hidden;
    only.hidden = !onlyThis;
    if (actions.hidden && confirmOpen?.sessionId === null) closeConfirm(false);
  };

  const focusAfterRemoval = (remaining: SessionRow[], index: number): void => {
    // The row that took its place, else the one above; never this device's own sign-out.
    const target = remaining[index] ?? remaining[index - 1] ?? null;
    if (target !== null && !target.session.current) target.revoke.focus();
    else status.focus();
  };

  // ---- loading --------------------------------------------------------------

  /**
   * `full`: skeleton when empty, activity list too, errors shown with "Try again".
   * `after`: after a sign-out (no skeleton), activity list too.
   * `quiet`: the timer or a tab coming back; errors are ignored (the list stays).
   */
  const load = async (mode: "full" | "after" | "quiet"): Promise<void> => {
    if (!client.isSignedIn()) {
      showSignedOut();
      return;
    }
    const mine = ++loadSeq;
    if (mode !== "quiet") {
      section.setAttribute("aria-busy", "true");
      hideError();
    }
    if (mode === "full") {
      if (rows.size === 0) showSkeleton();
      status.textContent = strings.loading;
    }
    try {
      const [sessions] = await Promise.all([client.listSessions(), mode === "quiet" ? undefined : activity?.load()]);
      if (mine !== loadSeq || destroyed) return;
      render(sessions);
      if (mode === "full") status.textContent = "";
    } catch (err) {
      if (mine !== loadSeq || destroyed) return;
      if (!client.isSignedIn()) {
        showSignedOut();
        return;
      }
      if (mode === "quiet") return;
      // Never an error above a stale list: the list goes, the reason and "Try again" stay.
      clearRows();
      if (mode === "full") status.textContent = "";
      showError(`${strings.loadFailed} ${errorSentence(err, strings, online())}`, true);
    } finally {
      if (mine === loadSeq) section.setAttribute("aria-busy", "false");
    }
  };

  retry.addEventListener("click", () => {
    void load("full").then(() => {
      if (destroyed) return;
      if (!error.hidden) retry.focus();
      else heading.focus();
    });
  });

  // ---- confirmation and sign-out ---------------------------------------------

  function closeConfirm(restoreFocus: boolean): void {
    if (confirmOpen === null) return;
    const { box, origin } = confirmOpen;
    confirmOpen = null;
    box.remove();
    origin.setAttribute("aria-expanded", "false");
    if (restoreFocus && origin.isConnected) origin.focus();
  }

  interface Action {
    origin: HTMLButtonElement;
    row: SessionRow | null;
    question: string;
    yes: string;
    /** For "everywhere" and this device: a stronger warning style. */
    danger: boolean;
    /** Does the work; resolves to the sentence for the status line. */
    work: () => Promise<string>;
  }

  /** Asks (inline, or with `options.confirm`), then signs out. A second ask while one is pending is ignored. */
  const ask = (action: Action): void => {
    if (busy || destroyed) return;
    // The last result or error is about something else now.
    status.textContent = "";
    hideError();
    if (options.confirm !== undefined) {
      const confirmFn = options.confirm;
      busy = true; // claimed now, so a second click cannot start a second confirmation
      closeConfirm(false);
      void Promise.resolve()
        .then(() => confirmFn(action.question))
        .catch(() => false)
        .then((ok) => {
          if (ok === true && !destroyed) return perform(action);
          busy = false;
          return undefined;
        });
      return;
    }
    if (confirmOpen?.origin === action.origin) {
      confirmOpen.box.querySelector<HTMLButtonElement>(".sg-confirm-yes")?.focus();
      return;
    }
    closeConfirm(false);
    const { box, yes } = confirmBox(doc, {
      question: action.question,
      yes: action.yes,
      cancel: strings.cancel,
      danger: action.danger,
      onYes: () => {
        if (busy || confirmOpen?.box !== box) return;
        busy = true;
        closeConfirm(false);
        void perform(action);
      },
      onCancel: () => closeConfirm(true),
    });
    (action.row?.item ?? actions).append(box);
    action.origin.setAttribute("aria-expanded", "true");
    action.origin.setAttribute("aria-controls", box.id);
    confirmOpen = { box, origin: action.origin, sessionId: action.row?.session.id ?? null };
    yes.focus();
  };

  const setWorking = (origin: HTMLButtonElement, on: boolean, label: string): void => {
    for (const b of section.querySelectorAll<HTMLButtonElement>(".sg-revoke, .sg-revoke-others, .sg-revoke-all")) {
      if (on) b.setAttribute("aria-disabled", "true");
      else b.removeAttribute("aria-disabled");
    }
    origin.textContent = on ? strings.signingOut : label;
    // The accessible name must contain the visible text (WCAG 2.5.3): "Signing out…" while it works.
    if (on) {
      const name = origin.getAttribute("aria-label");
      if (name !== null) origin.dataset.sgLabel = name;
      origin.removeAttribute("aria-label");
    } else if (origin.dataset.sgLabel !== undefined) {
      origin.setAttribute("aria-label", origin.dataset.sgLabel);
      delete origin.dataset.sgLabel;
    }
    const item = origin.closest(".sg-session");
    if (on) item?.setAttribute("aria-busy", "true");
    else item?.removeAttribute("aria-busy");
  };

  /** Runs a confirmed sign-out; `busy` is already true. */
  const perform = async (action: Action): Promise<void> => {
    const { origin, row } = action;
    const label = origin.textContent ?? "";
    hideError();
    status.textContent = "";
    setWorking(origin, true, label);
    // Keep focus on the button that now says "Signing out…" (it stays focusable: aria-disabled).
    if (origin.isConnected) origin.focus();
    const index = row === null ? -1 : order.indexOf(row);
    try {
      const message = await action.work();
      if (client.isSignedIn()) await load("after");
      if (destroyed) return;
      status.textContent = message;
      const rowGone = row !== null && !rows.has(row.session.id);
      if (rowGone && client.isSignedIn() && error.hidden) focusAfterRemoval(order, index);
      else if (!(origin.isConnected && row !== null)) status.focus();
    } catch (err) {
      if (destroyed) return;
      // Already gone (signed out elsewhere): show the list as it is now, then say so.
      if (isCode(err, "not_found") && client.isSignedIn()) await load("after");
      if (destroyed) return;
      showError(errorSentence(err, strings, online()), false);
      if (origin.isConnected) origin.focus();
    } finally {
      busy = false;
      if (origin.isConnected) setWorking(origin, false, label);
      else for (const b of section.querySelectorAll("[aria-disabled]")) b.removeAttribute("aria-disabled");
    }
  };

  const askRow = (row: SessionRow): void => {
    const { session, device } = row;
    if (session.current) {
      ask({
        origin: row.revoke,
        row,
        question: strings.confirmThisDevice,
        yes: strings.confirmSignOut,
        danger: true,
        work: async () => {
          await client.logout();
          return strings.signedOutThisDevice;
        },
      });
      return;
    }
    ask({
      origin: row.revoke,
      row,
      question: strings.confirmDevice(device),
      yes: strings.confirmSignOut,
      danger: false,
      work: async () => {
        await client.revokeSession(session.id);
        return strings.signedOutDevice(device);
      },
    });
  };

  others.addEventListener("click", () => {
    ask({
      origin: others,
      row: null,
      question: strings.confirmOthers(order.filter((r) => !r.session.current).length),
      yes: strings.confirmSignOut,
      danger: false,
      work: async () => strings.signedOutOthers(await client.revokeAll({ keepCurrent: true })),
    });
  });
  everywhere.addEventListener("click", () => {
    ask({
      origin: everywhere,
      row: null,
      question: strings.confirmEverywhere,
      yes: strings.confirmSignOutEverywhere,
      danger: true,
      work: async () => {
        await client.revokeAll({ keepCurrent: false });
        return strings.signedOutEverywhere;
      },
    });
  });

  // ---- staying current ------------------------------------------------------

  const unsubscribe = client.on("statechange", (event) => {
    if (!event.signedIn) showSignedOut();
    else if (rows.size === 0 && !busy) void load("full");
  });

  /** Reload without disturbing someone who is in the middle of something. */
  const quietReload = (): void => {
    if (busy || confirmOpen !== null || destroyed || doc.visibilityState === "hidden") return;
    if (!error.hidden) void load("full");
    else void load("quiet");
  };
  const onVisibility = (): void => {
    if (doc.visibilityState === "visible") quietReload();
  };
  doc.addEventListener("visibilitychange", onVisibility);
  win?.addEventListener("online", quietReload);
  const ticker = setInterval(() => {
    for (const row of order) row.tick();
    activity?.tick();
  }, 60_000);
  const every = options.refreshIntervalSeconds ?? 60;
  const poller = every > 0 ? setInterval(quietReload, every * 1000) : null;

  const reload = (): Promise<void> => load("full");
  void reload();

  return {
    reload,
    destroy() {
      destroyed = true;
      unsubscribe();
      doc.removeEventListener("visibilitychange", onVisibility);
      win?.removeEventListener("online", quietReload);
      clearInterval(ticker);
      if (poller !== null) clearInterval(poller);
      section.remove();
    },
  };
}

function helpNote(doc: Document, strings: SessionsViewStrings, options: SessionsViewOptions): HTMLElement | null {
  if (options.help !== undefined) {
    const wrap = el(doc, "div", "sg-unrecognized");
    wrap.append(options.help);
    return wrap;
  }
  if (options.changePasswordUrl === undefined) return null;
  const note = el(doc, "p", "sg-unrecognized", `${strings.unrecognized} `);
  const link = el(doc, "a", "sg-change-password", strings.changePassword);
  link.href = options.changePasswordUrl;
  note.append(link, ".");
  return note;
}

function sameSession(a: SessionInfo, b: SessionInfo): boolean {
  return (
    a.userAgent === b.userAgent &&
    a.ip === b.ip &&
    a.current === b.current &&
    a.createdAt === b.createdAt &&
    a.lastActiveAt === b.lastActiveAt &&
    a.expiresAt === b.expiresAt
  );
}

function time(iso: string): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && "code" in err && (err as { code: unknown }).code === code;
}
