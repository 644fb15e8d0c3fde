// The package as an app installs it: both entry points in both module
// formats, no runtime dependencies, and the bundler hints.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const pkg = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8"));

// Proves `import` and `require` of the package name resolve to working builds with the same API.
test("ESM and CommonJS entry points export the same API", async () => {
  const esm = await import("@sessiongate/client");
  const cjs = require("@sessiongate/client");
  for (const name of ["createSessionClient", "createMemoryStorage", "SessionError", "END_MESSAGES", "describeUserAgent", "describeSecurityEvent"]) {
    assert.equal(typeof esm[name], typeof cjs[name], name);
    assert.notEqual(typeof cjs[name], "undefined", name);
  }
  const client = cjs.createSessionClient({ baseUrl: "https://app.example.test", channelName: null });
  assert.equal(client.isSignedIn(), false);
  client.close();
  assert.equal(typeof (await import("@sessiongate/client/sessions-view")).mountSessionsView, "function");
  assert.equal(typeof require("@sessiongate/client/sessions-view").mountSessionsView, "function");
});

// Proves the core stays free of runtime dependencies (React only for the optional ./react entry) and tree-shakable.
test("no runtime dependencies, side effects only in the stylesheet, types for every entry point", () => {
  assert.equal(pkg.dependencies, undefined);
  assert.deepEqual(Object.keys(pkg.peerDependencies ?? {}), ["react"]);
  assert.equal(pkg.peerDependenciesMeta.react.optional, true);
  for (const file of fs.readdirSync(new URL("../dist/", import.meta.url))) {
    if (!file.endsWith(".js") || file === "react.js") continue;
    const code = fs.readFileSync(new URL(`../dist/${file}`, import.meta.url), "utf8");
    assert.ok(!/from\s+["'](?!\.)/.test(code), `dist/${file} imports a package`);
  }
  assert.deepEqual(pkg.sideEffects, ["*.css"], "JS modules are tree-shakable; the CSS import must survive bundling");
  for (const entry of Object.values(pkg.exports)) {
    if (typeof entry === "string") continue;
    for (const file of [entry.types, entry.import, entry.require]) {
      assert.ok(fs.existsSync(new URL(`../${file}`, import.meta.url)), `${file} missing`);
    }
  }
});
