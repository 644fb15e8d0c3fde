// Failure injection for the client's own requests: a fetch that passes
// everything to a real server (test/helpers/server.mjs) except the requests a
// test makes fail (no answer, an error status, a network error, a late answer).

/**
 * @param {typeof fetch} [inner] where requests really go (e.g. cookieJarFetch().fetch)
 */
export function faultyFetch(inner = fetch) {
  const rules = [];
  /** Every request the client made: {method, path, at, authorization, body}. */
  const attempts = [];
  const fn = async (input, init) => {
    const req = new Request(input instanceof Request ? input.clone() : input, init);
    const path = new URL(req.url).pathname;
    attempts.push({
      method: req.method, path, at: Date.now(),
      authorization: req.headers.get("authorization"),
      body: typeof init?.body === "string" ? init.body : null,
    });
    const rule = rules.find((r) => r.path === path && r.times > 0);
    if (rule) {
      rule.times--;
      return rule.action({ req, signal: init?.signal ?? req.signal, next: () => inner(input, init) });
    }
    return inner(input, init);
  };
  return {
    fetch: fn,
    attempts,
    /** The next `times` requests for `path` get `action` instead of (or around) the server. */
    on(path, action, times = 1) {
      rules.push({ path, action, times });
    },
    count(path) {
      return attempts.filter((a) => a.path === path).length;
    },
  };
}

/** Never answers; rejects only when the client aborts. */
export const hang = ({ signal }) =>
  new Promise((_, reject) => {
    if (!signal) return;
    signal.addEventListener("abort", () => reject(signal.reason ?? new Error("aborted")), { once: true });
  });

/** An error response as sessiongate shapes it. */
export const answer = (status, error, headers = {}) => () =>
  new Response(JSON.stringify({ error, message: `Injected ${error}.` }), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });

/** The network is down. */
export const offline = () => Promise.reject(new TypeError("fetch failed"));

/** The server handles the request, but the answer arrives `ms` later. */
export const late = (ms) => async ({ next }) => {
  const res = await next();
  await new Promise((r) => setTimeout(r, ms));
  return res;
};

/** Rejects if `promise` has not settled within `ms` (a frozen client fails the test instead of hanging it). */
export function within(ms, promise, what = "the call") {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
