// Mutation check for client.ts: applies one single-line change at a time to
// the built dist/client.js, runs the unit tests, and reports whether some
// test failed ("caught"). Every mutation below must be caught.
//
//   npm run test:mutations
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const target = path.join(pkgDir, "dist/client.js");

/** [what the tests must notice, text in dist/client.js, its replacement] */
const MUTATIONS = [
  ["timer retry after a transient failure", "this.#schedule(current, retryAfterMs > 0 ? retryAfterMs : backoff);", "void 0;"],
  ["Retry-After honoured by the timer", "this.#schedule(current, retryAfterMs > 0 ? retryAfterMs : backoff);", "this.#schedule(current, backoff);"],
  ["the caller's Authorization kept", '|| request.headers.has("Authorization")', ""],
  ["revoking the current session signs out", 'if (id === this.currentSessionId())\n            this.#signOut("logged_out", false);', ""],
  ["epoch guard", "if (epoch !== this.#epoch)\n            throw notSignedIn(); // Signed out meanwhile: drop the answer.", ""],
  ["logout prefers the Bearer token", "let bearer = state !== null && this.#usable(state);", "let bearer = false;"],
  ["older tokens from another tab ignored", "if (current.obtainedAt > obtainedAt)\n                    return; // This tab holds newer ones: old news.", ""],
  ["validity margin", "const skew = Math.min(1000, (state.expiresAt - state.obtainedAt) / 4);", "const skew = 0;"],
  ["setTimeout clamp", "Math.min(MAX_TIMER_MS, Math.max(0, due - Date.now()))", "Math.max(0, due - Date.now())"],
  ["only token_expired refreshes", 'if (code !== "token_expired") {', 'if (code !== "token_expired" && code !== "invalid_token") {'],
  ["other 4xx end the session", '(res.status === 400 ? "invalid_refresh_token" : "refresh_rejected");', '(res.status === 400 ? "invalid_refresh_token" : null); if (reason === null) throw error;'],
  ["rotation ledger", "return latest !== null && latest !== fingerprint(state.accessToken);", "return false;"],
  ["refresh request deadline", "const timer = setTimeout(() => controller.abort(), this.#refreshTimeoutMs);", "const timer = 0;"],
  ["refresh lock deadline", "const timer = setTimeout(() => controller.abort(), waitMs);", "const timer = 0;"],
  ["logout under the refresh lock", "if (this.#locks !== null) {\n            // Under the refresh lock", "if (false) {\n            // Under the refresh lock"],
  ["cookie mode: failed logout remembered", "this.#setLogoutPending(!ended);", "void 0;"],
  ["refresh when the tab becomes visible", 'if (doc.visibilityState === "visible")\n                    this.#wake();', ""],
  ["no token on the channel", 'this.#post({ type: "changed", from: this.#tabId, sessionId: state.sessionId, obtainedAt: state.obtainedAt });', 'this.#post({ type: "changed", from: this.#tabId, sessionId: state.sessionId, obtainedAt: state.obtainedAt, state });'],
  ["election window", "const CLAIM_WINDOW_MS = 150;", "const CLAIM_WINDOW_MS = 60;"],
  ["another tab's sign-out reported as such", "const elsewhere = this.#endingElsewhere;", "const elsewhere = null;"],
  ["the signing-out tab fires no sessionended", "this.#announceEnd(reason, this.#endingHere !== data.sessionId, reason);", "this.#announceEnd(reason, true, reason);"],
  ["a failed sign-out takes its \"ending\" back", "            retract();\n", ""],
];

execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: pkgDir, stdio: "inherit" });
const original = fs.readFileSync(target, "utf8");
const tests = fs.readdirSync(path.join(pkgDir, "test")).filter((f) => f.endsWith(".test.mjs")).map((f) => `test/${f}`);
let missed = 0;
try {
  for (const [what, from, to] of MUTATIONS) {
    const at = original.indexOf(from);
    if (at < 0 || original.indexOf(from, at + 1) >= 0) {
      console.log(`ERROR  ${what}: the text to mutate is not in dist/client.js exactly once`);
      missed++;
      continue;
    }
    fs.writeFileSync(target, original.replace(from, to));
    const run = spawnSync(process.execPath, ["--test", "--test-timeout=30000", ...tests], { cwd: pkgDir, encoding: "utf8" });
    const failing = run.stdout.split("\n").filter((l) => l.startsWith("not ok")).map((l) => l.replace(/^not ok \d+ - /, ""));
    if (failing.length === 0) missed++;
    console.log(`${failing.length ? "caught" : "MISSED"} ${what}${failing.length ? ` (${failing.slice(0, 2).join("; ")})` : ""}`);
  }
} finally {
  fs.writeFileSync(target, original);
}
console.log(`mutations: ${MUTATIONS.length - missed} caught, ${missed} missed`);
process.exit(missed ? 1 : 0);
