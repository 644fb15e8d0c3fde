"""Reading callgrind's output files (bench/instructions.py, bench/symbol_order.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

NAMED = re.compile(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$")


def own_cost(path: Path, only_object: str | None = None) -> dict[str, int]:
    """Instructions spent in each function's own code, in the order
    callgrind first lists the functions. Callgrind compresses names as
    `fn=(id) name`, then `fn=(id)`; objects the same way with `ob=`; either
    may be named first where it is called (`cfn=`, `cob=`). With
    `only_object`, functions of other objects (libc, ld.so) are left out."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
    cost: dict[str, int] = {}
    fn, counted, after_calls = "", only_object is None, False
    wanted = os.path.realpath(only_object) if only_object else None
    for line in path.read_text().splitlines():
        m = NAMED.match(line)
        if m:
            kind, ident, name = m.groups()
            table = names[kind.lstrip("c")]
            if name:
                table[ident] = name
            if kind == "fn":
                fn = table[ident]
            elif kind == "ob" and wanted:
                counted = os.path.realpath(table[ident]) == wanted
            continue
        if line.startswith("calls="):
            after_calls = True  # the next cost line is the callee's, inclusive
            continue
        if counted and (line[:1].isdigit() or line[:1] in "+-*"):
            parts = line.split()
            if after_calls:
                after_calls = False
            elif len(parts) >= 2:
                cost[fn] = cost.get(fn, 0) + int(parts[1])
    return cost
