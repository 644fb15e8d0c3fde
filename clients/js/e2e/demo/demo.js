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
/** The name the user signed in with (not secret; shared by the tabs like the session). */
const USER_KEY = "sessiongate-demo.user";

/** What to tell the user when the session ended without them signing out here. */
const ENDED = {
  session_revoked: "You were signed out from another device (or by an administrator). Please sign in again.",
  refresh_token_reused:
    "For your security, your session was signed out: an old sign-in token was used again. If this wasn't you, change your password.",
  logged_out: "You signed out in another tab.",
};

client.on("refresh", (e) => {
  log.refresh++;
  if (e.local) log.localRefresh++;
});
client.on("sessionended", (e) => {
  log.ended.push(e.reason);
  showBanner(ENDED[e.reason] ?? e.message);
});
client.on("statechange", render);

function showBanner(text) {
  $("banner").textContent = text;
  $("banner").hidden = false;
}

function render() {
  const signedIn = client.isSignedIn();
  const wasSignedIn = !$("app").hidden;
  $("login").hidden = signedIn;
  $("app").hidden = !signedIn;
  if (signedIn) {
    const user = localStorage.getItem(USER_KEY);
    $("status").textContent = user ? `Signed in as ${user}.` : "Signed in.";
    if (demo.view === null) {
      demo.view = mountSessionsView($("sessions"), client, { changePasswordUrl: "#change-password" });
    }
  } else {
    if (demo.view !== null) {
      demo.view.destroy();
      demo.view = null;
    }
    $("result").textContent = "";
    // Focus the form rather than dropping it to <body> when the app goes away.
    if (wasSignedIn) $("username").focus();
  }
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("banner").hidden = true;
  const username = $("username").value;
  try {
    localStorage.setItem(USER_KEY, username);
    await client.login({ username, password: $("password").value });
  } catch (err) {
    showBanner(err.message);
  } finally {
    $("password").value = "";
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
