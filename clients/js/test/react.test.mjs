// useSession() in a real React tree (react-dom in happy-dom's DOM).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Window } from "happy-dom";
import { setup, fakeStorage, fakeLocks } from "./helpers/server.mjs";

const win = new Window({ url: "https://app.example.test/" });
globalThis.window = win;
globalThis.document = win.document;
globalThis.navigator = win.navigator;
globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { createElement, act } = await import("react");
const { createRoot } = await import("react-dom/client");
const { renderToString } = await import("react-dom/server");
const { useSession } = await import("@sessiongate/client/react");

let renders = 0;
function Status({ client }) {
  renders++;
  const { signedIn, session } = useSession(client);
  return createElement("p", null, signedIn ? `in ${session.sessionId} until ${session.expiresAt}` : "out");
}

// Proves the hook re-renders on login, refresh (also another tab's) and logout, and not otherwise.
test("useSession follows login, refreshes and logout", async (t) => {
  const { make } = await setup(t);
  const storage = fakeStorage();
  const locks = fakeLocks();
  const { client } = make({ storage, locks });
  const other = make({ storage, locks }).client; // another tab
  const container = document.createElement("div");
  document.body.append(container);
  const root = createRoot(container);
  t.after(() => act(() => root.unmount()));
  await act(() => root.render(createElement(Status, { client })));
  assert.equal(container.textContent, "out");

  const { sessionId } = await act(() => client.login({ username: "alice", password: "pw" }));
  assert.match(container.textContent, new RegExp(`^in ${sessionId} until \\d+$`));
  const before = container.textContent;

  await act(() => client.refresh());
  assert.notEqual(container.textContent, before, "a refresh here was not rendered");
  const afterOwn = container.textContent;
  await act(async () => {
    await other.refresh();
    await new Promise((r) => setTimeout(r, 100)); // the "changed" signal reaches this tab
  });
  assert.notEqual(container.textContent, afterOwn, "another tab's refresh was not rendered");

  const settled = renders;
  await act(() => root.render(createElement(Status, { client })));
  await act(() => root.render(createElement(Status, { client })));
  assert.ok(renders - settled <= 2, "unchanged state made extra renders");

  await act(() => client.logout());
  assert.equal(container.textContent, "out");
});

// Proves server rendering sees a signed-out user (no tokens on the server).
test("useSession renders signed out on the server", async (t) => {
  const { make } = await setup(t);
  const storage = fakeStorage();
  const { client } = make({ storage });
  await client.login({ username: "alice", password: "pw" });
  assert.equal(renderToString(createElement(Status, { client })), "<p>out</p>");
});
