/**
 * Dates and relative times for the sessions component, in the reader's
 * locale and time zone (`Intl`), never raw UTC strings.
 */
export interface TimeFormat {
  /** "Nov 19" (with the year when it is not this year's). */
  shortDate(iso: string, nowMs: number): string | null;
  /** "Nov 19, 2026, 3:04 PM": for details and `title`s. */
  full(iso: string): string | null;
  /** "5 minutes ago", "yesterday", "3 days ago"; null past a week or for a bad date. */
  relative(iso: string, nowMs: number): string | null;
}

const WEEK_S = 7 * 86_400;

/** `locale` and `timeZone` as `Intl` takes them; undefined means the browser's. */
export function timeFormat(locale: string | readonly string[] | undefined, timeZone: string | undefined): TimeFormat {
  const loc = locale === undefined ? undefined : typeof locale === "string" ? locale : [...locale];
  const zone = timeZone === undefined ? {} : { timeZone };
  const day = new Intl.DateTimeFormat(loc, { month: "short", day: "numeric", ...zone });
  const dayYear = new Intl.DateTimeFormat(loc, { month: "short", day: "numeric", year: "numeric", ...zone });
  const year = new Intl.DateTimeFormat(loc, { year: "numeric", ...zone });
  const full = new Intl.DateTimeFormat(loc, { dateStyle: "medium", timeStyle: "short", ...zone });
  const rel = new Intl.RelativeTimeFormat(loc, { numeric: "auto" });
  const parse = (iso: string): number | null => {
    const at = Date.parse(iso);
    return Number.isNaN(at) ? null : at;
  };
  return {
    shortDate(iso, nowMs) {
      const at = parse(iso);
      if (at === null) return null;
      return (year.format(at) === year.format(nowMs) ? day : dayYear).format(at);
    },
    full(iso) {
      const at = parse(iso);
      return at === null ? null : full.format(at);
    },
    relative(iso, nowMs) {
      const at = parse(iso);
      if (at === null) return null;
      const seconds = Math.max(0, Math.round((nowMs - at) / 1000));
      if (seconds >= WEEK_S) return null;
      if (seconds < 3600) return rel.format(-Math.max(1, Math.round(seconds / 60)), "minute");
      if (seconds < 86_400) return rel.format(-Math.round(seconds / 3600), "hour");
      return rel.format(-Math.round(seconds / 86_400), "day");
    },
  };
}

/** "just now", "5 minutes ago", "3 hours ago", "2 days ago" (English; the component itself uses `Intl`). */
export function timeAgo(iso: string, nowMs: number): string {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return "at an unknown time";
  const seconds = Math.max(0, Math.round((nowMs - at) / 1000));
  if (seconds < 45) return "just now";
  const [value, unit] =
    seconds < 3600 ? [Math.round(seconds / 60), "minute"] : seconds < 86400 ? [Math.round(seconds / 3600), "hour"] : [Math.round(seconds / 86400), "day"];
  return `${value} ${unit}${value === 1 ? "" : "s"} ago`;
}
