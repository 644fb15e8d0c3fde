import type { SecurityEvent } from "./client.js";

/**
 * A sentence for one security event, e.g. "Sign-in from a new IP address
 * 198.51.100.4". The IP comes from the server: render the result with
 * `textContent`, never as HTML.
 */
export function describeSecurityEvent(event: Pick<SecurityEvent, "type" | "ip" | "scope">): string {
  switch (event.type) {
    case "login":
      return "New sign-in";
    case "new_ip":
      return event.ip === "" ? "Sign-in from a new IP address" : `Sign-in from a new IP address ${event.ip}`;
    case "new_device":
      return "Sign-in from a new device";
    case "refresh_token_reuse":
      return "Someone reused an old refresh token — the session was ended";
    case "session_revoked":
      return "Signed out";
    case "revoke_all":
      return "Signed out everywhere";
    case "upstream_revoke":
      if (event.scope === "others") return "Other sessions signed out by the application";
      if (event.scope === "all") return "Signed out everywhere by the application";
      return "Signed out by the application";
    default:
      return "Other security event";
  }
}
