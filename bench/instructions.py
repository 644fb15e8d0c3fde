#!/usr/bin/env python3
"""Instructions per proxied request, counted by valgrind's callgrind: a
measure of the request path that this 2-core VM's noise does not move
(end-to-end req/s and CPU per request drift 10-20 % between runs; this
count drifts by about 1 %, with how many requests each wake-up serves).

Each contender runs alone under callgrind behind the same nginx upstream
answering "ok", is warmed up, then its counters are zeroed, `wrk -t1 -c8`
drives it for --seconds, and the counters are dumped. Instructions / wrk's
request count is user-space work only: the system calls per request are the
same for sessiongate and the floor (strace -c: 2 recvfrom, 2 writev,
~0.25 epoll_wait), so user space is where the two differ.

Contenders: the hyper forwarder (examples/forward_only.rs) bare and with
--preserve-case (hyper's header case map both ways, as sessiongate keeps
header spelling), sessiongate with a cached EdDSA token and the access log
off, and --baseline (another sessiongate binary) if given. --top N also
prints the N functions whose own instructions per request differ most
between sessiongate and the case-preserving floor.

python3 bench/instructions.py --seconds 10 [--baseline OLD_BINARY] [--top 40]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt  # PyJWT (pip install 'PyJWT[crypto]')
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

sys.path.insert(0, str(Path(__file__).resolve().parent))
from callgrind import own_cost  # noqa: E402
from compare import ROOT, free_port, start_nginx, wait_port  # noqa: E402

FLOOR, FLOOR_CASE = "hyper forward-only (floor)", "floor, header case preserved"


def measure(name: str, cmd: list[str], port: int, token: str | None, seconds: int, work: Path,
            env: dict | None = None) -> dict:
    out = work / f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}.callgrind"
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_port(port, timeout=60)
        wrk = ["wrk", "-t1", "-c8"] + (["-H", f"Authorization: Bearer {token}"] if token else [])
        url = f"http://127.0.0.1:{port}/api/bench"
        subprocess.run(wrk + ["-d3s", url], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-z", str(p.pid)], capture_output=True, check=True)
        res = subprocess.run(wrk + [f"-d{seconds}s", url], capture_output=True, text=True, check=True).stdout
        subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True, check=True)
        if "Non-2xx" in res:
            raise RuntimeError(f"{name}: non-2xx answers:\n{res}")
        requests = int(re.search(r"(\d+) requests in", res).group(1))
    finally:
        p.terminate()
        p.wait(timeout=30)
    dumps = sorted(work.glob(out.name + ".*"), key=lambda f: f.stat().st_mtime)
    cost = own_cost(dumps[-1])  # the dump made after zeroing
    return {"requests": requests, "per_request": sum(cost.values()) / requests,
            "functions": {k: v / requests for k, v in cost.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--bin", default=str(ROOT / "target/release/sessiongate"))
    ap.add_argument("--baseline", help="another sessiongate binary, measured the same way")
    ap.add_argument("--floor", default=str(ROOT / "target/release/examples/forward_only"))
    ap.add_argument("--top", type=int, default=0, help="print the N functions that differ most")
    ap.add_argument("--json", help="also write the totals here")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk", "nginx"):
        if not shutil.which(tool):
            print(f"{tool} is missing (Debian: valgrind, wrk, nginx)", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="sg-instr-"))
    up = free_port()
    upstream = start_nginx(work, "upstream", f"""
  server {{ listen 127.0.0.1:{up}; access_log off;
    location / {{ return 200 "ok"; }} }}""")
    try:
        wait_port(up)
        results: dict[str, dict] = {}
        for name, extra in ((FLOOR, []), (FLOOR_CASE, ["--preserve-case"])):
            port = free_port()
            results[name] = measure(name, [args.floor, f"127.0.0.1:{port}", f"127.0.0.1:{up}", *extra],
                                    port, None, args.seconds, work)
        key = ed25519.Ed25519PrivateKey.generate()
        (work / "ed.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        now = int(time.time())
        token = jwt.encode({"iss": "sessiongate", "aud": "upstream", "sub": "user-bench",
                            "sid": "YmVuY2gtc2Vzc2lvbi0xMg", "iat": now, "exp": now + 7200, "jti": "bench",
                            "ext": {"role": "user"}}, key, algorithm="EdDSA", headers={"kid": "k1"})
        binaries = [("sessiongate EdDSA", args.bin)]
        if args.baseline:
            binaries.append(("sessiongate EdDSA (baseline)", args.baseline))
        for n, (name, binary) in enumerate(binaries):
            port = free_port()
            cfg = work / f"sg-{n}.yaml"
            cfg.write_text(json.dumps({
                "server": {"listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{free_port()}",
                           "threads": 1},
                "upstream": {"url": f"http://127.0.0.1:{up}"},
                "tokens": {"keys": [{"kid": "k1", "alg": "EdDSA", "private_key_file": str(work / "ed.pem")}],
                           "access_ttl": "2h"},
                "store": {"sqlite": {"path": str(work / f"sg-{n}.db")}},
                "routes": [{"prefix": "/", "auth": "required"}],
            }))  # JSON is YAML
            env = dict(os.environ, RUST_LOG="info,access=off")
            results[name] = measure(name, [binary, "run", "--config", str(cfg)], port, token,
                                    args.seconds, work, env)
    finally:
        upstream.terminate()
        upstream.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    floor = results[FLOOR]["per_request"]
    print(f"\ninstructions per request (callgrind, wrk -t1 -c8 -d{args.seconds}s, one worker)\n")
    print(f"| contender | requests | instructions / request | x floor |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['requests']} | {r['per_request']:,.0f} | {r['per_request'] / floor:.2f} |")
    if args.top:
        ours, base = results["sessiongate EdDSA"]["functions"], results[FLOOR_CASE]["functions"]
        print(f"\nown instructions per request, sessiongate vs the case-preserving floor "
              f"(the floor uses glibc malloc, sessiongate mimalloc)\n")
        print("| sessiongate | floor | difference | function |\n|---|---|---|---|")
        names = sorted(set(ours) | set(base), key=lambda k: -abs(ours.get(k, 0) - base.get(k, 0)))
        for k in names[:args.top]:
            a, b = ours.get(k, 0), base.get(k, 0)
            print(f"| {a:,.0f} | {b:,.0f} | {a - b:+,.0f} | `{k[:110]}` |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: {"requests": v["requests"], "per_request": v["per_request"]} for k, v in results.items()},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
