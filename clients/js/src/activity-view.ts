/**
 * The "Recent security activity" list of the sessions component (SPEC 4.8):
 * one sentence per event, the device, IP and time, "Show more" pages.
 */
import type { SecurityEvent, SessionClient } from "./client.js";
import { describeSecurityEvent } from "./activity.js";
import { describeUserAgent } from "./device.js";
import { button, el, separator } from "./dom.js";
import type { TimeFormat } from "./format.js";
import { errorSentence, type SessionsViewStrings } from "./sessions-strings.js";

export interface ActivityList {
  section: HTMLElement;
  /** Loads the newest page again; never rejects (errors go to its status line). */
  load(): Promise<void>;
  clear(): void;
  /** Re-renders the relative times. */
  tick(): void;
}

export interface ActivityListOptions {
  limit: number;
  headingTag: "h2" | "h3" | "h4" | "h5" | "h6";
  strings: SessionsViewStrings;
  format: TimeFormat;
  now: () => number;
  online: () => boolean;
}

export function activityList(doc: Document, client: SessionClient, options: ActivityListOptions): ActivityList {
  const { limit, strings, format, now } = options;
  const section = el(doc, "section", "sg-activity");
  const heading = el(doc, options.headingTag, "sg-activity-title", strings.activityTitle);
  const status = el(doc, "p", "sg-activity-status");
  status.setAttribute("role", "status");
  const list = el(doc, "ul", "sg-activity-list");
  const more = button(doc, "sg-activity-more", strings.showMore);
  more.hidden = true;
  section.append(heading, status, list, more);

  let next: string | null = null;
  /** Bumped by every (re)load and clear, so a late "Show more" page is dropped. */
  let generation = 0;

  const when = (iso: string): string => {
    const at = Date.parse(iso);
    if (Number.isNaN(at)) return strings.unknownTime;
    if (now() - at < 60_000) return strings.justNow;
    return format.relative(iso, now()) ?? format.shortDate(iso, now()) ?? strings.unknownTime;
  };

  const row = (event: SecurityEvent): HTMLLIElement => {
    const item = el(doc, "li", event.currentSession ? "sg-event sg-current" : "sg-event");
    item.dataset.eventId = event.id;
    item.dataset.eventType = event.type;
    item.append(el(doc, "strong", "sg-event-text", describeSecurityEvent(event)));
    if (event.currentSession) item.append(" ", el(doc, "span", "sg-this-device", strings.thisDevice));
    const meta = el(doc, "div", "sg-meta");
    const device = el(doc, "span", "sg-device", describeUserAgent(event.userAgent));
    device.title = event.userAgent;
    const ip = el(doc, "span", "sg-ip", event.ip === "" ? strings.unknownIp : event.ip);
    const time = el(doc, "time", "sg-event-time", when(event.at));
    time.dateTime = event.at;
    time.title = format.full(event.at) ?? event.at;
    meta.append(device, separator(doc), ip, separator(doc), time);
    item.append(meta);
    return item;
  };

  const show = (events: SecurityEvent[], cursor: string | null, append: boolean): void => {
    const rows = events.map(row);
    if (append) list.append(...rows);
    else list.replaceChildren(...rows);
    next = cursor;
    more.hidden = next === null;
    status.textContent = list.childElementCount === 0 ? strings.activityEmpty : "";
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
      status.textContent = `${strings.activityFailed} ${errorSentence(err, strings, options.online())}`;
    }
  };

  more.addEventListener("click", () => {
    if (next === null || more.disabled) return;
    const mine = generation;
    more.disabled = true;
    status.textContent = strings.activityLoading;
    client
      .securityEvents({ limit, before: next })
      .then(
        (page) => {
          if (mine === generation) show(page.events, page.next, true);
        },
        (err: unknown) => {
          // The list so far stays; "Show more" can be tried again.
          if (mine === generation) status.textContent = errorSentence(err, strings, options.online());
        },
      )
      .finally(() => {
        more.disabled = false;
      });
  });

  const tick = (): void => {
    for (const time of list.querySelectorAll<HTMLTimeElement>(".sg-event-time")) time.textContent = when(time.dateTime);
  };

  return { section, load, clear, tick };
}
