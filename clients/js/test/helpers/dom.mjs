// A real DOM for the sessions component in Node: happy-dom parses HTML like a
// browser does, so a value written with innerHTML would become elements here
// too (the hostile-input tests rely on that).
import { Window } from "happy-dom";

/** A fresh document with an empty `<div id="root">`; closed after the test. */
export function domRoot(t) {
  const window = new Window({ url: "https://app.example.test/" });
  const root = window.document.createElement("div");
  root.id = "root";
  window.document.body.append(root);
  t.after(() => window.happyDOM.close());
  return { window, document: window.document, root };
}

/** Polls `fn` until it returns a truthy value (or fails after `timeoutMs`). */
export async function until(what, fn, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
