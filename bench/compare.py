#!/usr/bin/env python3
"""Side-by-side proxy benchmark: sessiongate vs nginx (no auth) vs HAProxy
verifying JWTs, each with one worker, against one nginx upstream answering
"ok", driven by `wrk -t1 -c32` on loopback. Contenders run interleaved for
several rounds; medians are printed with ratios to nginx and HAProxy ES256.

Run `bench/run.sh` (installs wrk, nginx, haproxy, builds the release binary),
or directly: python3 bench/compare.py --rounds 5 --seconds 10.

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


@dataclass
class Contender:
    name: str
    port: int
    proc: subprocess.Popen
    token: str | None = None
    results: list[dict] = field(default_factory=list)


def start_nginx(work: Path, name: str, conf_body: str) -> subprocess.Popen:
    d = work / name
    (d / "logs").mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(
        "worker_processes 1;\ndaemon off;\nmaster_process on;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
        "events { worker_connections 4096; }\nhttp {\n  access_log %s/access.log;\n%s\n}\n"
        % (d, d, d, conf_body))
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
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "haproxy"):
        if not shutil.which(tool):
            print(f"{tool} is missing: run bench/run.sh (it installs Debian's packages)", file=sys.stderr)
            return 2
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
        port = free_port()
        p = start_nginx(work, "nginx-proxy", f"""
  upstream u {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
        procs.append(p)
        contenders.append(Contender("nginx proxy (no auth)", port, p))

        now = int(time.time())
        claims = {"iss": "sessiongate", "aud": "upstream", "sub": "user-bench", "sid": "YmVuY2gtc2Vzc2lvbi0xMjM0",
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

        runs = [(args.bin, "", "EdDSA", "ed.pem", ed_key, 100000), (args.bin, "", "ES256", "es.pem", es_key, 100000),
                (args.bin, "", "ES256", "es.pem", es_key, 0)]
        if args.baseline:
            runs.insert(1, (args.baseline, " (baseline)", "EdDSA", "ed.pem", ed_key, 100000))
        for n, (binary, suffix, alg, key_file, key, cache) in enumerate(runs):
            port, admin = free_port(), free_port()
            label = f"sessiongate {alg}" + (" uncached" if cache == 0 else "") + suffix
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
            t0 = time.monotonic()
            p = subprocess.Popen([binary, "run", "--config", str(cfg)], stdout=log, stderr=log)
            procs.append(p)
            for _ in range(400):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.01)
            startup_ms = (time.monotonic() - t0) * 1000
            tok = jwt.encode(claims, key, algorithm=alg, headers={"kid": "k1"})
            c = Contender(label, port, p, tok)
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

        base, hap = "nginx proxy (no auth)", "HAProxy jwt_verify ES256"
        print(f"\nmedian of {args.rounds} interleaved rounds, wrk -t1 -c32 -d{args.seconds}s, one worker each\n")
        print("| contender | requests/s | p50 ms | p99 ms | CPU s / 100k req | RSS MiB (idle → loaded) | × nginx | × HAProxy ES256 |")
        print("|---|---|---|---|---|---|---|---|")
        for c in contenders:
            m = med[c.name]
            print(f"| {c.name} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['cpu_per_100k']:.2f} | "
                  f"{idle_rss[c.name]:.1f} → {m['rss']:.1f} | {ratio(c.name, base):.2f} | {ratio(c.name, hap):.2f} |")
        for c in contenders:
            if hasattr(c, "startup_ms"):
                print(f"start to ready, {c.name}: {c.startup_ms:.0f} ms")  # type: ignore[attr-defined]
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


if __name__ == "__main__":
    sys.exit(main())
