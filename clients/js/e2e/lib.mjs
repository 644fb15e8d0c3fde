// What the e2e scripts share: the prerequisite checks, a harness (temp dir,
// cleanups, watchdog, step/check, the closing summary), free ports, the tiny
// upstream app and starting a real sessiongate with its own key and store.
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn, execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const here = path.dirname(fileURLToPath(import.meta.url));
export const pkgDir = path.resolve(here, "..");
export const SG_BIN = process.env.SG_BIN ?? path.resolve(pkgDir, "../../target/release/sessiongate");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const PASSWORD = "correct horse";

/** Exits with a message, before anything runs, when the binary, the browser or `distFile` (under dist/) is missing. */
export function requirePrerequisites(prefix, distFile) {
  const fail = (message) => {
    console.error(`${prefix}: ${message}`);
    process.exit(1);
  };
  if (!fs.existsSync(SG_BIN)) {
    fail(`sessiongate binary not found at ${SG_BIN}. Build it (cargo build --release) or set SG_BIN. Nothing was tested.`);
  }
  if (!fs.existsSync(CHROMIUM)) {
    fail(`Chromium not found at ${CHROMIUM}. Install it (apt-get install -y chromium) or set CHROMIUM. Nothing was tested.`);
  }
  if (!fs.existsSync(path.join(pkgDir, "dist", distFile))) fail("dist/ is missing: run `npm run build` first.");
}

/**
 * One run of steps: a temp dir, cleanups run in reverse at the end, a watchdog,
 * and the "N passed, M failed" line (`prefix` starts every harness line;
 * `summarySuffix()` is appended to the last one).
 */
export function createHarness({ prefix, tmpPrefix, watchdogSeconds, summarySuffix = () => "" }) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
  const cleanups = [];
  const counts = { passed: 0, failed: 0 };

  const watchdog = setTimeout(() => {
    console.error(`${prefix}: timed out after ${watchdogSeconds} s`);
    void finish(1);
  }, watchdogSeconds * 1000);

  async function finish(code) {
    clearTimeout(watchdog);
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch {
        // keep cleaning
      }
    }
    fs.rmSync(tmp, { recursive: true, force: true });
    console.log(`${prefix}: ${counts.passed} passed, ${counts.failed} failed${summarySuffix()}`);
    process.exit(code || (counts.failed > 0 ? 1 : 0));
  }

  async function step(name, fn) {
    const started = Date.now();
    try {
      await fn();
      counts.passed++;
      console.log(`ok - ${name} (${Date.now() - started} ms)`);
    } catch (err) {
      counts.failed++;
      console.log(`not ok - ${name}\n  ${String(err?.stack ?? err).split("\n").join("\n  ")}`);
      throw err;
    }
  }

  /** Runs `main`, then the cleanups; an error outside any step counts as a failed "setup". */
  function run(main) {
    main().then(
      () => finish(0),
      (err) => {
        if (counts.failed === 0) {
          counts.failed++;
          console.log(`not ok - setup\n  ${String(err?.stack ?? err)}`);
        }
        return finish(1);
      },
    );
  }

  return { tmp, cleanups, step, run, failed: () => counts.failed > 0 };
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

export async function waitFor(what, fn, timeoutMs = 10_000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---- the upstream: POST /login, /api/whoami, the demo page and the built client under /app/ ----

const CONTENT_TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".map": "application/json" };

/**
 * The app behind sessiongate, closed by the harness's cleanups. `extraTypes`
 * adds content types by file extension (anything else is served as
 * application/octet-stream).
 */
export async function startUpstream(harness, { extraTypes = {} } = {}) {
  const port = await freePort();
  const types = { ...CONTENT_TYPES, ...extraTypes };
  const files = (urlPath) => {
    if (urlPath === "/app/" || urlPath === "/app/index.html") return path.join(here, "demo/index.html");
    if (urlPath === "/app/demo.js") return path.join(here, "demo/demo.js");
    if (urlPath.startsWith("/app/dist/")) {
      const file = path.resolve(pkgDir, "dist", urlPath.slice("/app/dist/".length));
      return file.startsWith(path.join(pkgDir, "dist") + path.sep) ? file : null;
    }
    return null;
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url, "http://upstream");
      if (req.method === "POST" && url.pathname === "/login") {
        let body = null;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          // fall through to 400
        }
        if (!body || typeof body.username !== "string" || !/^[a-z]+$/.test(body.username)) {
          res.writeHead(400, { "Content-Type": "application/json" }).end('{"error":"bad_request","message":"Bad login request."}');
        } else if (body.password !== PASSWORD) {
          res.writeHead(401, { "Content-Type": "application/json" }).end('{"error":"invalid_credentials","message":"Wrong username or password."}');
        } else {
          res.writeHead(200, {
            "Content-Type": "application/json",
            "X-Session-Subject": `user-${body.username}`,
            "X-Session-Claims": '{"role":"user"}',
          }).end("{}");
        }
        return;
      }
      if (req.method === "GET" && url.pathname === "/api/whoami") {
        res.writeHead(200, { "Content-Type": "application/json" }).end(
          JSON.stringify({
            user: req.headers["x-auth-user-id"] ?? null,
            session: req.headers["x-auth-session-id"] ?? null,
            claims: req.headers["x-auth-claims"] ?? null,
          }),
        );
        return;
      }
      const file = req.method === "GET" ? files(url.pathname) : null;
      if (file && fs.existsSync(file)) {
        res.writeHead(200, {
          "Content-Type": types[path.extname(file)] ?? "application/octet-stream",
          "Cache-Control": "no-store",
        }).end(fs.readFileSync(file));
        return;
      }
      res.writeHead(404, { "Content-Type": "application/json" }).end('{"error":"not_found","message":"Not found."}');
    });
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  harness.cleanups.push(() => new Promise((r) => (server.closeAllConnections(), server.close(r))));
  return { port, server };
}

// ---- a real sessiongate ----

/**
 * Starts the binary with its own key, store, log and ports in `dir`, proxying
 * to `upPort`; stopped (and its log shown when a step failed) by the cleanups.
 * `server` and `sessions` are extra YAML lines for those blocks, `leeway` is
 * left to the default when not given. Returns the URLs and `ready()`, which
 * waits for GET /readyz to answer 200.
 */
export async function startSessiongate(harness, { dir, name, upPort, accessTtl, leeway, server = [], sessions = [] }) {
  const [gwPort, adminPort] = [await freePort(), await freePort()];
  const label = name ? `sessiongate (${name})` : "sessiongate";
  const key = execFileSync(SG_BIN, ["keygen", "--alg", "EdDSA", "--kid", "k1"], { encoding: "utf8" });
  fs.writeFileSync(path.join(dir, "k1.pem"), key, { mode: 0o600 });
  const indent = (lines) => lines.map((l) => `  ${l}\n`).join("");
  const configPath = path.join(dir, "sessiongate.yaml");
  fs.writeFileSync(
    configPath,
    `server:
  listen: 127.0.0.1:${gwPort}
  admin_listen: 127.0.0.1:${adminPort}
${indent(server)}upstream:
  url: http://127.0.0.1:${upPort}
tokens:
  access_ttl: ${accessTtl}
${leeway === undefined ? "" : `  leeway: ${leeway}\n`}  keys:
    - kid: k1
      alg: EdDSA
      private_key_file: k1.pem
${sessions.length ? `sessions:\n${indent(sessions)}` : ""}store:
  backend: sqlite
  sqlite:
    path: ${path.join(dir, "sessiongate.db")}
login: {}
routes:
  - { prefix: /app/, auth: none }
  - { prefix: /, auth: required }
`,
  );

  const logPath = path.join(dir, "sessiongate.log");
  const logFd = fs.openSync(logPath, "w");
  const proc = spawn(SG_BIN, ["run", "--config", configPath], { stdio: ["ignore", logFd, logFd] });
  let exited = null;
  proc.on("exit", (code, signal) => (exited = { code, signal }));
  harness.cleanups.push(async () => {
    if (exited === null) {
      proc.kill("SIGTERM");
      await waitFor(`${label} to stop`, () => exited !== null, 12_000).catch(() => proc.kill("SIGKILL"));
    }
    if (harness.failed()) {
      const log = fs.readFileSync(logPath, "utf8").split("\n").slice(-30).join("\n");
      console.log(`--- last lines of the ${label} log ---\n${log}`);
    }
  });

  const admin = `http://127.0.0.1:${adminPort}`;
  const ready = async () => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited !== null) throw new Error(`${label} exited early: ${JSON.stringify(exited)} (see its log below)`);
      if (await fetch(`${admin}/readyz`).then((r) => r.status === 200, () => false)) return;
      if (Date.now() > deadline) throw new Error(`GET /readyz of ${label} did not answer 200 within 30 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  return { gw: `http://127.0.0.1:${gwPort}`, admin, ready };
}
