/**
 * The options and the handle of the sessions component (`mountSessionsView`).
 */
import type { SessionInfo } from "./client.js";
import type { SessionsViewStrings } from "./sessions-strings.js";

/** Options of {@link mountSessionsView}. */
export interface SessionsViewOptions {
  /** Heading text (same as `strings.title`). Default "Your sessions". */
  title?: string;
  /** Level of the heading, 2-6 (the activity list's is one below). Default 2. */
  headingLevel?: 2 | 3 | 4 | 5 | 6;
  /** Any of the component's words, e.g. a translation. See {@link SessionsViewStrings}. */
  strings?: Partial<SessionsViewStrings>;
  /** Locale(s) for dates and relative times (`Intl`). Default: the browser's. */
  locale?: string | readonly string[];
  /** IANA time zone for dates. Default: the browser's. */
  timeZone?: string;
  /**
   * Your own confirmation (a modal dialog, ...) instead of the inline one:
   * resolve to false to cancel. It gets the question, e.g. "Sign out Safari
   * on iPhone? ...". Default: the question and [Sign out] [Cancel] appear in
   * the panel, next to the button.
   */
  confirm?: (message: string) => boolean | Promise<boolean>;
  /** Clock (tests). Default `Date.now`. */
  now?: () => number;
  /** Name of a session's device. Default from its User-Agent, e.g. "Safari on iPhone". */
  describeSession?: (session: SessionInfo) => string | null;
  /** Where a session is, e.g. from your own IP lookup ("Berlin, Germany"); null for nothing. */
  formatLocation?: (session: SessionInfo) => string | null;
  /** Called with each row after it is built (add a badge, a link, ...). */
  renderRow?: (row: HTMLLIElement, session: SessionInfo) => void;
  /** Shows "Don't recognize a session? Sign it out and change your password." with this link. */
  changePasswordUrl?: string;
  /** Your own content for that note instead (replaces it). */
  help?: Node;
  /** Reload the list every this many seconds while the page is visible; 0 turns it off. Default 60. */
  refreshIntervalSeconds?: number;
  /**
   * Show the "Recent security activity" list (SPEC 4.8) under the sessions.
   * Default true; `false` renders no list and never calls `securityEvents()`.
   */
  activity?: boolean;
  /** Events per page of the activity list ("Show more" loads the next page). Default 10. */
  activityLimit?: number;
  /** Heading of the activity list (same as `strings.activityTitle`). */
  activityTitle?: string;
}

/** Handle of a mounted sessions view. */
export interface SessionsView {
  /** Fetches the list (and the first page of the activity list) again and re-renders. */
  reload(): Promise<void>;
  /** Removes the view, its timers and its listeners. */
  destroy(): void;
}
