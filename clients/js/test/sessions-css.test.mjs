// The optional stylesheet of the sessions component (issue 20 item 5): it
// styles only the component, can be overridden without !important, and ships.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";

const css = fs.readFileSync(new URL("../src/sessions-view.css", import.meta.url), "utf8");

/** Selector lists of the style rules (comments, @keyframes bodies and at-rule heads dropped). */
function selectors(text) {
  const plain = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/@keyframes[^{]+\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}/g, "");
  const out = [];
  for (const m of plain.matchAll(/([^{}]+)\{[^{}]*\}/g)) {
    const head = m[1].trim().replace(/^@media[^{]*\{/, "").trim();
    if (head.startsWith("@")) continue;
    for (const sel of head.split(/,(?![^(]*\))/)) out.push(sel.trim());
  }
  return out;
}

// Proves: every rule is scoped inside .sg-sessions through :where() (no global styles, zero specificity), except the [hidden] guard.
test("sessions-view.css: only :where(.sg-sessions) rules", () => {
  const all = selectors(css);
  assert.ok(all.length > 30, `parsed ${all.length} selectors`);
  for (const sel of all) {
    assert.match(sel, /^:where\(\.sg-sessions\)(\s+(:where\([^)]*\)(:focus-visible)?|\[hidden\]))?$/, sel);
  }
  assert.equal(all.filter((s) => s.includes("[hidden]")).length, 1);
});

// Proves: the theme is custom properties, and touch targets are 44 px.
test("sessions-view.css: --sg-* properties and 44px targets", () => {
  assert.match(css, /--sg-target:\s*44px/);
  assert.match(css, /min-height:\s*var\(--sg-target\)/);
  assert.match(css, /min-width:\s*var\(--sg-target\)/);
  const rules = css.replace(/\/\*[\s\S]*?\*\//g, "");
  assert.doesNotMatch(rules, /!important/);
  assert.doesNotMatch(rules, /position:\s*absolute/);
});

// Proves: the build ships the stylesheet and the package exports it.
test("sessions-view.css is built and exported", () => {
  const pkg = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal(pkg.exports["./sessions-view.css"], "./dist/sessions-view.css");
  assert.equal(fs.readFileSync(new URL("../dist/sessions-view.css", import.meta.url), "utf8"), css);
});
