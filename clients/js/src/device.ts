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
