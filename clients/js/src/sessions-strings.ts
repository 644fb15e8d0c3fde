/**
 * The words of the sessions component, in one place so an app can translate
 * them (`strings` option of `mountSessionsView`). Functions take the parts
 * that vary (a device name, a date already formatted for the locale, a count).
 */
export interface SessionsViewStrings {
  /** Heading of the panel. */
  title: string;
  /** Badge on the row of the session this browser uses. */
  thisDevice: string;
  /** Read by screen readers while the list loads (a skeleton is shown). */
  loading: string;
  /** When nobody is signed in. */
  notSignedIn: string;
  /** Instead of the sign-out-all buttons when this is the only session. */
  onlyThisDevice: string;
  /** Visible text of each row's button. */
  signOut: string;
  /** Full name of a row's button, e.g. "Sign out Safari on iPhone". */
  signOutDevice: (device: string) => string;
  /** A device name made unique when two rows have the same one: "Chrome on Linux, signed in Nov 19". */
  deviceSignedIn: (device: string, date: string) => string;
  /** Full name of the current device's button. */
  signOutThisDevice: string;
  signOutOthers: string;
  signOutEverywhere: string;
  /** Inline confirmation questions. */
  confirmDevice: (device: string) => string;
  confirmThisDevice: string;
  confirmOthers: (count: number) => string;
  confirmEverywhere: string;
  /** The confirming button of the inline question. */
  confirmSignOut: string;
  confirmSignOutEverywhere: string;
  cancel: string;
  /** On the clicked row's button while it works. */
  signingOut: string;
  /** Results, announced in the status line. */
  signedOutDevice: (device: string) => string;
  signedOutThisDevice: string;
  signedOutOthers: (count: number) => string;
  signedOutEverywhere: string;
  /** "Signed in Nov 19" (`date` is formatted for the locale). */
  signedIn: (date: string) => string;
  /** "Last active 5 minutes ago" (`relative` from `Intl.RelativeTimeFormat`). */
  lastActive: (relative: string) => string;
  /** "Last active Nov 19", for activity more than a week ago. */
  lastActiveOn: (date: string) => string;
  lastActiveJustNow: string;
  /** For an activity event less than a minute old. */
  justNow: string;
  /** Disclosure with the full User-Agent, IP address and times. */
  details: string;
  /** Accessible name of a row's disclosure. */
  detailsFor: (device: string) => string;
  detailBrowser: string;
  detailIp: string;
  detailLocation: string;
  detailSignedIn: string;
  detailLastActive: string;
  detailExpires: string;
  unknownIp: string;
  unknownTime: string;
  /** Why the list could not be loaded: prefixes the reason. */
  loadFailed: string;
  tryAgain: string;
  errorOffline: string;
  /** `seconds` from Retry-After, or null when the server did not say. */
  errorRateLimited: (seconds: number | null) => string;
  errorUnavailable: string;
  errorSessionGone: string;
  errorGeneric: string;
  /** "Don't recognize a session?" note; shown with `changePasswordUrl`. */
  unrecognized: string;
  changePassword: string;
  /** The activity list under the sessions. */
  activityTitle: string;
  activityEmpty: string;
  activityLoading: string;
  activityFailed: string;
  showMore: string;
}

/** The English defaults. */
export const DEFAULT_STRINGS: Readonly<SessionsViewStrings> = {
  title: "Your sessions",
  thisDevice: "This device",
  loading: "Loading your sessions…",
  notSignedIn: "You're not signed in.",
  onlyThisDevice: "You're only signed in on this device.",
  signOut: "Sign out",
  signOutDevice: (device) => `Sign out ${device}`,
  deviceSignedIn: (device, date) => `${device}, signed in ${date}`,
  signOutThisDevice: "Sign out of this device",
  signOutOthers: "Sign out other devices",
  signOutEverywhere: "Sign out everywhere",
  confirmDevice: (device) => `Sign out ${device}? Whoever uses it will have to sign in again.`,
  confirmThisDevice: "Sign out of this device? You will have to sign in again here.",
  confirmOthers: (count) =>
    count === 1
      ? "Sign out 1 other device? It will have to sign in again."
      : `Sign out ${count} other devices? They will have to sign in again.`,
  confirmEverywhere: "Sign out everywhere? Every device, this one included, will have to sign in again.",
  confirmSignOut: "Sign out",
  confirmSignOutEverywhere: "Sign out everywhere",
  cancel: "Cancel",
  signingOut: "Signing out…",
  signedOutDevice: (device) => `Signed out ${device}.`,
  signedOutThisDevice: "Signed out.",
  signedOutOthers: (count) => `Signed out ${count} other ${count === 1 ? "session" : "sessions"}.`,
  signedOutEverywhere: "Signed out everywhere.",
  signedIn: (date) => `Signed in ${date}`,
  lastActive: (relative) => `Last active ${relative}`,
  lastActiveOn: (date) => `Last active ${date}`,
  lastActiveJustNow: "Last active just now",
  justNow: "just now",
  details: "Details",
  detailsFor: (device) => `Details: ${device}`,
  detailBrowser: "Browser",
  detailIp: "IP address",
  detailLocation: "Location",
  detailSignedIn: "Signed in",
  detailLastActive: "Last active",
  detailExpires: "Expires",
  unknownIp: "Unknown IP address",
  unknownTime: "unknown",
  loadFailed: "Your sessions couldn't be loaded.",
  tryAgain: "Try again",
  errorOffline: "You seem to be offline. Check your connection and try again.",
  errorRateLimited: (seconds) =>
    seconds === null || seconds <= 0
      ? "Too many requests. Wait a moment and try again."
      : `Too many requests. Try again in ${Math.ceil(seconds)} ${Math.ceil(seconds) === 1 ? "second" : "seconds"}.`,
  errorUnavailable: "The sign-in service is having trouble. Try again in a moment.",
  errorSessionGone: "That session had already ended.",
  errorGeneric: "Something went wrong. Try again.",
  unrecognized: "Don't recognize a session? Sign it out and",
  changePassword: "change your password",
  activityTitle: "Recent security activity",
  activityEmpty: "No recent activity.",
  activityLoading: "Loading…",
  activityFailed: "Recent activity couldn't be loaded.",
  showMore: "Show more",
};

/**
 * A sentence for a failed call, by the error's `code` (a `SessionError` of
 * the client, or the browser's `TypeError` for a failed `fetch`), never the
 * raw "Failed to fetch".
 */
export function errorSentence(err: unknown, strings: SessionsViewStrings, online: boolean): string {
  const code = typeof err === "object" && err !== null && "code" in err ? String((err as { code: unknown }).code) : "";
  if (!online || code === "network_error" || err instanceof TypeError) return strings.errorOffline;
  if (code === "rate_limited") {
    const wait = (err as { retryAfter?: unknown }).retryAfter;
    return strings.errorRateLimited(typeof wait === "number" && Number.isFinite(wait) ? wait : null);
  }
  if (code === "store_unavailable" || code === "upstream_unavailable" || code === "upstream_timeout" || code === "internal") {
    return strings.errorUnavailable;
  }
  if (code === "not_found") return strings.errorSessionGone;
  if (/^http_5\d\d$/.test(code)) return strings.errorUnavailable;
  return strings.errorGeneric;
}
