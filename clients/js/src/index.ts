/**
 * Browser client for sessiongate (see clients/js/README.md).
 * @packageDocumentation
 */
export {
  createSessionClient,
  type FetchLike,
  type GetAccessTokenOptions,
  type LockManagerLike,
  type LoginResult,
  type RefreshEvent,
  type SecurityEvent,
  type SecurityEventsOptions,
  type SecurityEventsPage,
  type SecurityEventType,
  type SessionClient,
  type SessionClientEvents,
  type SessionClientOptions,
  type SessionEndedEvent,
  type SessionInfo,
  type SessionSnapshot,
  type StateChangeEvent,
  type UpstreamRevokeScope,
} from "./client.js";
export { END_MESSAGES, SessionError, type SessionEndReason } from "./errors.js";
export { createMemoryStorage, type TokenState, type TokenStorage } from "./storage.js";
export { describeUserAgent } from "./device.js";
export { describeSecurityEvent } from "./activity.js";
