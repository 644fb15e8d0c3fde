/**
 * One row of the "Your sessions" list: icon, device name, "This device",
 * location / IP / last active / signed in, a "Details" disclosure (full
 * User-Agent and IP, local dates) and the row's named sign-out button.
 */
import type { SessionInfo } from "./client.js";
import { abbreviateIp, deviceType } from "./device.js";
import { button, deviceIcon, el, separator, uniqueId } from "./dom.js";
import type { TimeFormat } from "./format.js";
import type { SessionsViewStrings } from "./sessions-strings.js";

export interface RowContext {
  doc: Document;
  strings: SessionsViewStrings;
  format: TimeFormat;
  now: () => number;
  formatLocation: ((session: SessionInfo) => string | null) | undefined;
  renderRow: ((row: HTMLLIElement, session: SessionInfo) => void) | undefined;
}

export interface SessionRow {
  readonly session: SessionInfo;
  readonly item: HTMLLIElement;
  readonly revoke: HTMLButtonElement;
  /** The device name said in sentences ("Safari on iPhone"). */
  readonly device: string;
  /** The name its button uses (unique in the list). */
  readonly name: string;
  /** Re-renders the relative time. */
  tick(): void;
}

/** "Last active 5 minutes ago", or "Last active Nov 19" past a week. */
export function lastActiveText(ctx: RowContext, iso: string): string {
  const { strings, format } = ctx;
  const nowMs = ctx.now();
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return strings.lastActive(strings.unknownTime);
  if (nowMs - at < 60_000) return strings.lastActiveJustNow;
  const relative = format.relative(iso, nowMs);
  if (relative !== null) return strings.lastActive(relative);
  return strings.lastActiveOn(format.shortDate(iso, nowMs) ?? strings.unknownTime);
}

/**
 * @param device the device name ("Safari on iPhone")
 * @param name the name the row's buttons use: `device`, made unique by the caller when two rows share it
 */
export function sessionRow(ctx: RowContext, session: SessionInfo, device: string, name: string): SessionRow {
  const { doc, strings, format } = ctx;
  const item = el(doc, "li", session.current ? "sg-session sg-current" : "sg-session");
  item.dataset.sessionId = session.id;

  const main = el(doc, "div", "sg-session-main");
  const head = el(doc, "div", "sg-session-head");
  const deviceName = el(doc, "strong", "sg-device", device);
  deviceName.id = uniqueId("sg-device");
  deviceName.title = session.userAgent;
  head.append(deviceName);
  if (session.current) head.append(" ", el(doc, "span", "sg-this-device", strings.thisDevice));
  item.setAttribute("aria-labelledby", deviceName.id);

  const meta = el(doc, "div", "sg-meta");
  const location = ctx.formatLocation?.(session) ?? null;
  if (location !== null && location !== "") meta.append(el(doc, "span", "sg-location", location), separator(doc));
  meta.append(el(doc, "span", "sg-ip", session.ip === "" ? strings.unknownIp : abbreviateIp(session.ip)), separator(doc));
  const active = el(doc, "time", "sg-last-active", lastActiveText(ctx, session.lastActiveAt));
  active.dateTime = session.lastActiveAt;
  active.title = format.full(session.lastActiveAt) ?? "";
  const created = el(doc, "time", "sg-created", strings.signedIn(format.shortDate(session.createdAt, ctx.now()) ?? strings.unknownTime));
  created.dateTime = session.createdAt;
  created.title = format.full(session.createdAt) ?? "";
  meta.append(active, separator(doc), created);

  const details = el(doc, "details", "sg-details");
  const summary = el(doc, "summary", "sg-details-toggle", strings.details);
  summary.setAttribute("aria-label", strings.detailsFor(name));
  const facts = el(doc, "dl", "sg-details-list");
  const fact = (term: string, value: string, className: string): void => {
    facts.append(el(doc, "dt", "", term), el(doc, "dd", className, value));
  };
  fact(strings.detailBrowser, session.userAgent === "" ? "—" : session.userAgent, "sg-detail-user-agent");
  if (location !== null && location !== "") fact(strings.detailLocation, location, "sg-detail-location");
  fact(strings.detailIp, session.ip === "" ? strings.unknownIp : session.ip, "sg-detail-ip");
  fact(strings.detailSignedIn, format.full(session.createdAt) ?? strings.unknownTime, "sg-detail-created");
  fact(strings.detailLastActive, format.full(session.lastActiveAt) ?? strings.unknownTime, "sg-detail-last-active");
  fact(strings.detailExpires, format.full(session.expiresAt) ?? strings.unknownTime, "sg-detail-expires");
  details.append(summary, facts);

  main.append(head, meta, details);

  const revoke = button(doc, "sg-revoke", strings.signOut);
  revoke.setAttribute("aria-label", session.current ? strings.signOutThisDevice : strings.signOutDevice(name));
  const actions = el(doc, "div", "sg-session-actions");
  actions.append(revoke);

  item.append(deviceIcon(doc, deviceType(session.userAgent)), main, actions);
  ctx.renderRow?.(item, session);

  return {
    session,
    item,
    revoke,
    device,
    name,
    tick() {
      active.textContent = lastActiveText(ctx, session.lastActiveAt);
    },
  };
}
