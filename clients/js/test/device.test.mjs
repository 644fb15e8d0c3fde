import { test } from "node:test";
import assert from "node:assert/strict";
import { describeUserAgent } from "../dist/index.js";
import { timeAgo } from "../dist/sessions-view.js";

test("describeUserAgent names common browsers and systems", () => {
  const cases = [
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36", "Chrome on Windows"],
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0", "Edge on Windows"],
    ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"],
    ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iPhone"],
    ["Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari on macOS"],
    ["Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36", "Chrome on Android"],
    ["curl/8.5.0", "curl"],
    ["", "Unknown device"],
  ];
  for (const [ua, expected] of cases) assert.equal(describeUserAgent(ua), expected, ua);
});

test("describeUserAgent returns plain text for hostile input (rendered with textContent)", () => {
  const hostile = '<img src=x onerror="alert(1)">';
  const out = describeUserAgent(hostile);
  assert.equal(typeof out, "string");
  assert.ok(out.length <= 41);
});

test("timeAgo", () => {
  const now = Date.parse("2024-05-01T12:00:00Z");
  assert.equal(timeAgo("2024-05-01T11:59:50Z", now), "just now");
  assert.equal(timeAgo("2024-05-01T11:59:00Z", now), "1 minute ago");
  assert.equal(timeAgo("2024-05-01T11:15:00Z", now), "45 minutes ago");
  assert.equal(timeAgo("2024-05-01T09:00:00Z", now), "3 hours ago");
  assert.equal(timeAgo("2024-04-28T12:00:00Z", now), "3 days ago");
  assert.equal(timeAgo("garbage", now), "at an unknown time");
});

// Proves: each kind of User-Agent gets the right icon type (phone, tablet, desktop, or unknown for tools).
test("deviceType", async () => {
  const { deviceType } = await import("../dist/sessions-view.js");
  const cases = [
    ["Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "phone"],
    ["Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36", "phone"],
    ["Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36", "tablet"],
    ["Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "tablet"],
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", "desktop"],
    ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "desktop"],
    ["curl/8.5.0", "unknown"],
    ["", "unknown"],
  ];
  for (const [ua, expected] of cases) assert.equal(deviceType(ua), expected, ua);
});

// Proves: long IPv6 addresses shrink to their /64 with "…", short ones and IPv4 stay whole, mapped IPv4 shows as IPv4, junk is left alone.
test("abbreviateIp", async () => {
  const { abbreviateIp } = await import("../dist/sessions-view.js");
  const cases = [
    ["203.0.113.7", "203.0.113.7"],
    ["2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8:85a3:0:…"],
    ["2a02:8109:b6c0:1a00:5d2c:a1f3:9e4b:1c07", "2a02:8109:b6c0:1a00:…"],
    ["2001:db8::8a2e:370:7334", "2001:db8:0:0:…"],
    ["2001:db8::1", "2001:db8::1"],
    ["::1", "::1"],
    ["::ffff:198.51.100.4", "198.51.100.4"],
    ["<b>1:2:3:4:5:6:7:8:9</b>", "<b>1:2:3:4:5:6:7:8:9</b>"],
    ["", ""],
  ];
  for (const [ip, expected] of cases) assert.equal(abbreviateIp(ip), expected, ip);
});
