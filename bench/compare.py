#!/usr/bin/env python3
"""Side-by-side proxy benchmark: sessiongate vs nginx (no auth) vs HAProxy
verifying JWTs vs a hyper proxy that only forwards (the floor,
examples/forward_only.rs; also with `--preserve-case`, hyper's header case
map both ways as sessiongate keeps header spelling), each with one worker, against one nginx upstream
answering "ok", driven by `wrk -t1 -c32` on loopback. Contenders run
interleaved for several rounds; medians are printed with ratios to nginx,
HAProxy ES256 and the floor, then the targets of issue 14.

Request logs are off everywhere except in one pair, both with the access log
on as users run it: nginx writing its access log to a file, and sessiongate
EdDSA writing its access log to stdout (redirected to a file); that pair's
"x nginx" compares the two.

Run `bench/run.sh` (installs wrk, nginx, haproxy, PyJWT, matplotlib, builds
the release binary and the floor), or directly:
python3 bench/compare.py --rounds 5 --seconds 10 --plot bench.png

Measures per contender: requests/s, p50/p99 latency (wrk --latency), CPU
seconds per 100k requests (utime+stime of the proxy's processes from /proc),
and RSS after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import jwt  # PyJWT (pip install 'PyJWT[crypto]')
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def proc_tree(pid: int) -> list[int]:
    """pid and its descendants (nginx runs a master and a worker)."""
    out = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for k in kids:
        out += proc_tree(int(k))
    return out


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def rss_mib(pid: int) -> float:
    total = 0
    for p in proc_tree(pid):
        try:
            m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
            total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total / 1024


NGINX, NGINX_LOG = "nginx proxy (no auth)", "nginx proxy, access log to file"
FLOOR, HAP_ES = "hyper forward-only (floor)", "HAProxy jwt_verify ES256"
FLOOR_CASE = "floor, header case preserved"
SG_ED, SG_ED_LOG = "sessiongate EdDSA", "sessiongate EdDSA, access log on"
SG_ES_UNCACHED = "sessiongate ES256 uncached"


@dataclass
class Contender:
    name: str
    port: int
    proc: subprocess.Popen
    token: str | None = None
    results: list[dict] = field(default_factory=list)
    # Whom "x nginx" compares with: the nginx that logs as this contender does.
    nginx: str = NGINX


def start_nginx(work: Path, name: str, conf_body: str, access_log: bool = False) -> subprocess.Popen:
    d = work / name
    (d / "logs").mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    log = f"{d}/access.log" if access_log else "off"
    conf.write_text(
        "worker_processes 1;\ndaemon off;\nmaster_process on;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
        "events { worker_connections 4096; }\nhttp {\n  access_log %s;\n%s\n}\n"
        % (d, d, log, conf_body))
    return subprocess.Popen(["nginx", "-p", str(d), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_wrk(port: int, seconds: int, token: str | None) -> dict:
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    cmd.append(f"http://127.0.0.1:{port}/api/bench")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} non-2xx answers on port {port}:\n{out}")

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return {"rps": rps, "requests": reqs, "p50": pct("50"), "p99": pct("99")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--bin", default=str(ROOT / "target/release/sessiongate"))
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--baseline", help="another sessiongate binary (e.g. the previous commit's) run as "
                    "an extra EdDSA contender, so a change is measured before/after within one run")
    ap.add_argument("--floor", default=str(ROOT / "target/release/examples/forward_only"),
                    help="the forward-only hyper proxy (cargo build --release --example forward_only)")
    ap.add_argument("--plot", metavar="FILE.png", help="also draw req/s and CPU per 100k requests of every "
                    "contender into this PNG (needs matplotlib)")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "haproxy"):
        if not shutil.which(tool):
            print(f"{tool} is missing: run bench/run.sh (it installs Debian's packages)", file=sys.stderr)
            return 2
    if not os.access(args.floor, os.X_OK):
        print(f"{args.floor} is missing: cargo build --release --example forward_only", file=sys.stderr)
        return 2
    if args.plot:
        import matplotlib  # noqa: F401  (fail now, not after the run)
    work = Path(tempfile.mkdtemp(prefix="sg-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        # The upstream: nginx answering "ok".
        up = free_port()
        procs.append(start_nginx(work, "upstream", f"""
  server {{ listen 127.0.0.1:{up}; access_log off;
    location / {{ return 200 "ok"; }} }}"""))
        wait_port(up)

        contenders: list[Contender] = []
        for name, access_log in ((NGINX, False), (NGINX_LOG, True)):
            port = free_port()
            p = start_nginx(work, f"nginx-proxy-{'log' if access_log else 'nolog'}", f"""
  upstream u {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""",
                            access_log)
            procs.append(p)
            contenders.append(Contender(name, port, p, nginx=name))

        # The floor bare, and keeping header spelling both ways as
        # sessiongate does (hyper's case map): the floor for that promise.
        for name, extra in ((FLOOR, []), (FLOOR_CASE, ["--preserve-case"])):
            port = free_port()
            p = subprocess.Popen([args.floor, f"127.0.0.1:{port}", f"127.0.0.1:{up}", *extra],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            contenders.append(Contender(name, port, p))

        now = int(time.time())
        # The sid has the shape of the ones sessiongate issues (base64url of
        # 16 bytes); before session 8 it had 24 characters, which the
        # revocation lookup treats as a foreign id and hashes.
        claims = {"iss": "sessiongate", "aud": "upstream", "sub": "user-bench", "sid": "YmVuY2gtc2Vzc2lvbi0xMg",
                  "iat": now, "exp": now + 7200, "jti": "bench", "ext": {"role": "user"}}
        hs_secret = "bench-secret-0123456789abcdef0123456789abcdef"
        es_key = ec.generate_private_key(ec.SECP256R1())
        ed_key = ed25519.Ed25519PrivateKey.generate()
        pem = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # noqa: E731
                                        serialization.NoEncryption())
        (work / "es.pub.pem").write_bytes(es_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        (work / "es.pem").write_bytes(pem(es_key))
        (work / "ed.pem").write_bytes(pem(ed_key))

        for alg, key_arg, key in (("HS256", f'"{hs_secret}"', hs_secret),
                                  ("ES256", f'"{work / "es.pub.pem"}"', es_key)):
            port = free_port()
            cfg = work / f"haproxy-{alg}.cfg"
            cfg.write_text(f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{port}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request deny unless {{ var(txn.alg) -m str {alg} }}
  http-request deny unless {{ var(txn.bearer),jwt_verify(txn.alg,{key_arg}) -m int 1 }}
  default_backend be
backend be
  http-reuse always
  server u 127.0.0.1:{up}
""")
            p = subprocess.Popen(["haproxy", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            tok = jwt.encode(claims, key, algorithm=alg, headers={"kid": "k1"})
            contenders.append(Contender(f"HAProxy jwt_verify {alg}", port, p, tok))

        runs = [(args.bin, "", "EdDSA", "ed.pem", ed_key, 100000, False),
                (args.bin, "", "EdDSA", "ed.pem", ed_key, 100000, True),
                (args.bin, "", "ES256", "es.pem", es_key, 100000, False),
                (args.bin, "", "ES256", "es.pem", es_key, 0, False)]
        if args.baseline:
            runs.insert(1, (args.baseline, " (baseline)", "EdDSA", "ed.pem", ed_key, 100000, False))
        for n, (binary, suffix, alg, key_file, key, cache, access_log) in enumerate(runs):
            port, admin = free_port(), free_port()
            label = (f"sessiongate {alg}" + (" uncached" if cache == 0 else "") + suffix
                     + (", access log on" if access_log else ""))
            cfg = work / f"sg-{n}-{alg}-{cache}.yaml"
            cfg.write_text(json.dumps({
                "server": {"listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{admin}", "threads": 1},
                "upstream": {"url": f"http://127.0.0.1:{up}"},
                "tokens": {"keys": [{"kid": "k1", "alg": alg, "private_key_file": key_file}],
                           "verified_cache_entries": cache, "access_ttl": "2h"},
                "store": {"sqlite": {"path": f"sg-{n}-{alg}-{cache}.db"}},
                "routes": [{"prefix": "/", "auth": "required"}],
            }))  # JSON is YAML
            log = open(work / f"sg-{n}-{alg}-{cache}.log", "wb")
            # The default filter logs every request; `access=off` is the documented switch (README).
            env = dict(os.environ, RUST_LOG="info" if access_log else "info,access=off")
            t0 = time.monotonic()
            p = subprocess.Popen([binary, "run", "--config", str(cfg)], stdout=log, stderr=log, env=env)
            procs.append(p)
            for _ in range(400):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.01)
            startup_ms = (time.monotonic() - t0) * 1000
            tok = jwt.encode(claims, key, algorithm=alg, headers={"kid": "k1"})
            c = Contender(label, port, p, tok, nginx=NGINX_LOG if access_log else NGINX)
            c.startup_ms = startup_ms  # type: ignore[attr-defined]
            contenders.append(c)

        idle_rss = {c.name: rss_mib(c.proc.pid) for c in contenders}
        for c in contenders:  # warm-up (connections, caches)
            run_wrk(c.port, 1, c.token)
        for r in range(args.rounds):
            for c in contenders:
                before = cpu_seconds(c.proc.pid)
                res = run_wrk(c.port, args.seconds, c.token)
                res["cpu_per_100k"] = (cpu_seconds(c.proc.pid) - before) / res["requests"] * 100_000
                res["rss"] = rss_mib(c.proc.pid)
                c.results.append(res)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{c.name} {c.results[-1]['rps']:.0f}/s" for c in contenders), flush=True)

        med = {c.name: {k: statistics.median(x[k] for x in c.results) for k in c.results[0]} for c in contenders}
        # Ratios per round, then the median: absolute numbers drift between rounds.
        def ratio(a: str, b: str, key: str = "rps") -> float:
            ca = next(c for c in contenders if c.name == a)
            cb = next(c for c in contenders if c.name == b)
            return statistics.median(x[key] / y[key] for x, y in zip(ca.results, cb.results))

        print(f"\nmedian of {args.rounds} interleaved rounds, wrk -t1 -c32 -d{args.seconds}s, one worker each\n")
        print("| contender | requests/s | p50 ms | p99 ms | CPU s / 100k req | RSS MiB (idle → loaded) "
              "| × nginx (same logging) | × HAProxy ES256 | CPU × floor |")
        print("|---|---|---|---|---|---|---|---|---|")
        for c in contenders:
            m = med[c.name]
            print(f"| {c.name} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['cpu_per_100k']:.2f} | "
                  f"{idle_rss[c.name]:.1f} → {m['rss']:.1f} | {ratio(c.name, c.nginx):.2f} | "
                  f"{ratio(c.name, HAP_ES):.2f} | {ratio(c.name, FLOOR, 'cpu_per_100k'):.2f} |")
        startup = {c.name: c.startup_ms for c in contenders if hasattr(c, "startup_ms")}  # type: ignore[attr-defined]
        for name, ms in startup.items():
            print(f"start to ready, {name}: {ms:.0f} ms")

        # Issue 14's targets, from the same ratios.
        print("\n| target (issue 14) | measured | met |\n|---|---|---|")
        targets = [
            ("EdDSA requests/s ≥ 0.9× nginx", ratio(SG_ED, NGINX), lambda v: v >= 0.9),
            ("EdDSA CPU / 100k ≤ 1.15× nginx", ratio(SG_ED, NGINX, "cpu_per_100k"), lambda v: v <= 1.15),
            ("EdDSA p99 ≤ 1.25× nginx", ratio(SG_ED, NGINX, "p99"), lambda v: v <= 1.25),
            ("EdDSA requests/s ≥ 6× HAProxy ES256", ratio(SG_ED, HAP_ES), lambda v: v >= 6),
            ("access log on: requests/s ≥ 0.8× nginx logging to a file", ratio(SG_ED_LOG, NGINX_LOG),
             lambda v: v >= 0.8),
            ("uncached ES256 requests/s ≥ 1.0× HAProxy ES256", ratio(SG_ES_UNCACHED, HAP_ES), lambda v: v >= 1.0),
        ]
        for what, v, ok in targets:
            print(f"| {what} | {v:.2f}× | {'yes' if ok(v) else '**no**'} |")
        print(f"| idle RSS ≤ 10 MiB | {idle_rss[SG_ED]:.1f} MiB | {'yes' if idle_rss[SG_ED] <= 10 else '**no**'} |")
        # The baseline is another binary: its start-up is not this one's.
        slowest = max(ms for name, ms in startup.items() if "(baseline)" not in name)
        print(f"| start to ready ≤ 50 ms (SQLite) | {slowest:.0f} ms (slowest) | {'yes' if slowest <= 50 else '**no**'} |")
        if args.plot:
            plot(args.plot, contenders, args)
            print(f"\nchart: {args.plot}")
        if args.json:
            Path(args.json).write_text(json.dumps({c.name: c.results for c in contenders}, indent=1))
        return 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


def plot(path: str, contenders: list[Contender], args: argparse.Namespace) -> None:
    """Two panels, one bar per contender: requests/s and CPU per 100k requests
    (median; with several rounds, whiskers from the lowest to the highest)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import StrMethodFormatter

    def colour(name: str) -> str:
        return ("tab:blue" if name.startswith("sessiongate") else "tab:green" if name in (FLOOR, FLOOR_CASE)
                else "tab:orange" if name.startswith("HAProxy") else "tab:gray")

    names = [c.name for c in contenders][::-1]  # first contender on top
    by_name = {c.name: c for c in contenders}
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 1.8), sharey=True)
    for ax, key, title, fmt in ((axes[0], "rps", "requests/s (higher is better)", "{:,.0f}"),
                                (axes[1], "cpu_per_100k", "CPU seconds per 100k requests (lower is better)",
                                 "{:.2f}")):
        runs = [[r[key] for r in by_name[n].results] for n in names]
        med = [statistics.median(v) for v in runs]
        err = [[m - min(v) for m, v in zip(med, runs)], [max(v) - m for m, v in zip(med, runs)]]
        ax.barh(names, med, xerr=err if args.rounds > 1 else None, color=[colour(n) for n in names], capsize=3)
        ax.axvline(statistics.median(r[key] for r in by_name[NGINX].results), color="black", linestyle="--",
                   linewidth=0.8)
        for y, (m, v) in enumerate(zip(med, runs)):  # the value right of its whisker
            ax.text(max(v), y, "  " + fmt.format(m), va="center", fontsize=9)
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}" if key == "rps" else "{x:g}"))
        ax.set_xlim(0, max(map(max, runs)) * 1.22)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    rounds = f"{args.rounds} round{'s' if args.rounds > 1 else ''}"
    fig.suptitle(f"One worker each, wrk -t1 -c32 on loopback, median of {rounds} × {args.seconds} s "
                 "(dashed line: nginx proxy, logs off)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
