#!/usr/bin/env bash
# Installs what the benchmarks need on Debian (wrk, nginx, haproxy, valgrind,
# PyJWT, matplotlib for --plot), builds the release binary and the
# forward-only floor (examples/forward_only.rs), and runs the side-by-side
# proxy comparison. Extra arguments go to bench/compare.py (e.g. --rounds 8
# --seconds 10 --plot bench.png). `bench/run.sh --instructions [args]` runs
# bench/instructions.py (callgrind's instructions per request) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for t in wrk nginx haproxy valgrind; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  pkgs=("${missing[@]/nginx/nginx-light}")
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
python3 -c 'import jwt, cryptography, matplotlib' 2>/dev/null || python3 -m pip install -q 'PyJWT[crypto]' cryptography matplotlib
cargo build --release --bin sessiongate --example forward_only
if [[ "${1:-}" == --instructions ]]; then
  shift
  exec python3 bench/instructions.py "$@"
fi
exec python3 bench/compare.py "$@"
