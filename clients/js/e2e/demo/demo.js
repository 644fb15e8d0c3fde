// Demo app for the sessiongate browser client (served at /app/ by the e2e upstream).
import { createSessionClient } from "./dist/index.js";
import { mountSessionsView } from "./dist/sessions-view.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const client = createSessionClient({
  baseUrl: location.origin,
  // ?cookie: the refresh token is an HttpOnly cookie (sessions.refresh_cookie).
  refreshCookie: params.has("cookie"),
  // Default storage: localStorage. ?storage=session keeps the tokens per tab.
  ...(params.get("storage") === "session" ? { storage: sessionStorage } : {}),
});
const log = { refresh: 0, localRefresh: 0, ended: [] };
const demo = { client, log, view: null, ready: false };
window.demo = demo;

client.on("refresh", (e) => {
  log.refresh++;
  if (e.local) log.localRefresh++;
});
client.on("sessionended", (e) => {
  log.ended.push(e.reason);
  showBanner(e.message);
});
client.on("statechange", render);

function showBanner(text) {
  $("banner").textContent = text;
  $("banner").hidden = false;
}

function render() {
  const signedIn = client.isSignedIn();
  $("login").hidden = signedIn;
  $("app").hidden = !signedIn;
  if (signedIn) {
    $("status").textContent = `Signed in (session ${client.currentSessionId()}).`;
    if (demo.view === null) demo.view = mountSessionsView($("sessions"), client);
  } else if (demo.view !== null) {
    demo.view.destroy();
    demo.view = null;
  }
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("banner").hidden = true;
  try {
    await client.login({ username: $("username").value, password: $("password").value });
  } catch (err) {
    showBanner(err.message);
  }
});

$("call").addEventListener("click", async () => {
  try {
    const res = await client.fetch("/api/whoami");
    $("result").textContent = `${res.status} ${await res.text()}`;
  } catch (err) {
    $("result").textContent = `error: ${err.message}`;
  }
});

$("logout").addEventListener("click", async () => {
  if (!(await client.logout())) showBanner("You are signed out here, but the server could not be reached to end the session.");
});

try {
  await client.resume();
} catch (err) {
  showBanner(err.message);
}
render();
demo.ready = true;
