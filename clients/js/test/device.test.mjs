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
