/**
 * A short, human description of a User-Agent string, e.g. "Chrome on Windows".
 * The input is attacker-controlled: the result is plain text and must still be
 * rendered with `textContent`, never as HTML.
 */
export function describeUserAgent(userAgent: string): string {
  const ua = userAgent.trim();
  if (ua === "") return "Unknown device";
  const browser = pick(ua, BROWSERS);
  const os = pick(ua, SYSTEMS);
  if (browser !== null && os !== null) return `${browser} on ${os}`;
  if (browser !== null) return browser;
  if (os !== null) return os;
  // Unknown client (curl, an app...): show the start of the string itself.
  const first = ua.split(/[\s(]/, 1)[0] ?? ua;
  return first.length > 40 ? `${first.slice(0, 40)}…` : first;
}

type Rule = readonly [RegExp, string];

// Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
const BROWSERS: readonly Rule[] = [
  [/\bEdg(e|A|iOS)?\//, "Edge"],
  [/\b(OPR|Opera)\//, "Opera"],
  [/\bSamsungBrowser\//, "Samsung Internet"],
  [/\b(Firefox|FxiOS)\//, "Firefox"],
  [/\bHeadlessChrome\//, "Headless Chrome"],
  [/\b(Chrome|CriOS|Chromium)\//, "Chrome"],
  [/\bVersion\/[\d.]+.*\bSafari\//, "Safari"],
  [/\bcurl\//, "curl"],
];

const SYSTEMS: readonly Rule[] = [
  [/\biPhone\b/, "iPhone"],
  [/\biPad\b/, "iPad"],
  [/\bAndroid\b/, "Android"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\bWindows\b/, "Windows"],
  [/\bMac OS X\b|\bMacintosh\b/, "macOS"],
  [/\bLinux\b/, "Linux"],
];

function pick(ua: string, rules: readonly Rule[]): string | null {
  for (const [pattern, name] of rules) if (pattern.test(ua)) return name;
  return null;
}

/** The kind of device a User-Agent comes from, for an icon. */
export type DeviceType = "phone" | "tablet" | "desktop" | "unknown";

/** "phone", "tablet", "desktop" or "unknown" (a tool such as curl, or an empty User-Agent). */
export function deviceType(userAgent: string): DeviceType {
  const ua = userAgent.trim();
  if (/\biPad\b|\bTablet\b/.test(ua) || (/\bAndroid\b/.test(ua) && !/\bMobile\b/.test(ua))) return "tablet";
  if (/\biPhone\b|\biPod\b|\bAndroid\b|\bMobile\b/.test(ua)) return "phone";
  if (pick(ua, SYSTEMS) !== null) return "desktop";
  return "unknown";
}

/**
 * A short form of an IP address for a list row: IPv4 as is, an IPv4-mapped
 * IPv6 address as its IPv4 part, a long IPv6 address as its first four groups
 * (the network, /64) followed by "…". Show the full address elsewhere
 * (the sessions component puts it in "Details").
 */
export function abbreviateIp(ip: string): string {
  const value = ip.trim();
  if (!value.includes(":")) return value;
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(value);
  if (mapped !== null) return mapped[1] as string;
  const groups = expandIpv6(value);
  if (groups === null || value.length <= 19) return value;
  return `${groups.slice(0, 4).join(":")}:…`;
}

/** The eight groups of an IPv6 address (leading zeros dropped, lower case), or null if it is not one. */
function expandIpv6(ip: string): string[] | null {
  if (!/^[0-9a-f:]+$/i.test(ip)) return null;
  const halves = ip.split("::");
  if (halves.length > 2) return null;
  const split = (part: string | undefined): string[] => (part === undefined || part === "" ? [] : part.split(":"));
  const head = split(halves[0]);
  const tail = split(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array<string>(halves.length === 1 ? 0 : missing).fill("0"), ...tail];
  if (groups.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) return null;
  return groups.map((g) => g.toLowerCase().replace(/^0+(?=.)/, ""));
}
