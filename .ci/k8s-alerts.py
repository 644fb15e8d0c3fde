"""The PrometheusRule against its unit tests, RUNBOOK.md and the binary's /metrics.

  k8s-alerts.py rules MANIFESTS OUT          the rule groups of the one PrometheusRule -> OUT
  k8s-alerts.py coverage MANIFESTS RUNBOOK TESTDIR
        every alert: runbook_url = <url>#<alert in lower case>, a "## <Alert>"
        section in RUNBOOK, and a promtool test in TESTDIR where it fires
  k8s-alerts.py metrics MANIFESTS METRICS_TEXT
        every sessiongate_* name in the rules and the dashboard is a sample
        name (or family) of the /metrics text
"""
import glob
import json
import os
import re
import sys

import yaml

NAME = re.compile(r"\bsessiongate_[a-zA-Z0-9_]+")


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def rule_groups(objs):
    rules = [o for o in objs if o["kind"] == "PrometheusRule"]
    assert len(rules) == 1, f"expected one PrometheusRule, found {len(rules)}"
    return rules[0]["spec"]["groups"]


def alerts(objs):
    return [r for g in rule_groups(objs) for r in g["rules"] if "alert" in r]


def coverage(objs, runbook, testdir):
    errors = []
    with open(runbook) as f:
        sections = set(re.findall(r"^## (\S+)\s*$", f.read(), re.M))
    firing = set()
    for path in glob.glob(os.path.join(testdir, "*.yaml")):
        with open(path) as f:
            for t in yaml.safe_load(f).get("tests", []):
                for a in t.get("alert_rule_test", []):
                    if a.get("exp_alerts"):
                        firing.add(a["alertname"])
    for r in alerts(objs):
        name = r["alert"]
        url = r.get("annotations", {}).get("runbook_url", "")
        if not url.endswith("RUNBOOK.md#" + name.lower()):
            errors.append(f"{name}: runbook_url {url!r} is not <...>/RUNBOOK.md#{name.lower()}")
        if name not in sections:
            errors.append(f"{name}: no '## {name}' section in {runbook}")
        if name not in firing:
            errors.append(f"{name}: no promtool test in {testdir} where it fires")
    return errors


def used_names(objs):
    """sessiongate_* metric names in rule expressions and dashboard targets."""
    used = {}
    for r in (r for g in rule_groups(objs) for r in g["rules"]):
        for n in NAME.findall(r["expr"]):
            used.setdefault(n, f"rule {r.get('alert') or r.get('record')}")
    for o in objs:
        if o["kind"] == "ConfigMap" and "sessiongate.json" in o.get("data", {}):
            text = json.dumps(json.loads(o["data"]["sessiongate.json"]))
            for n in NAME.findall(text):
                used.setdefault(n, "dashboard")
    return used


def metrics(objs, metrics_text):
    with open(metrics_text) as f:
        text = f.read()
    exposed = set(re.findall(r"^(sessiongate_[a-zA-Z0-9_]+)[{ ]", text, re.M))
    exposed |= set(re.findall(r"^# TYPE (sessiongate_[a-zA-Z0-9_]+) ", text, re.M))
    used = used_names(objs)
    if not used:
        return ["no sessiongate_* metric found in rules or dashboard (nothing rendered?)"]
    return [f"{n} ({where}) is not in the binary's /metrics" for n, where in sorted(used.items())
            if n not in exposed]


if __name__ == "__main__":
    cmd, objs = sys.argv[1], docs(sys.argv[2])
    if cmd == "rules":
        with open(sys.argv[3], "w") as f:
            yaml.safe_dump({"groups": rule_groups(objs)}, f, sort_keys=False)
        sys.exit(0)
    errs = {
        "coverage": lambda: coverage(objs, sys.argv[3], sys.argv[4]),
        "metrics": lambda: metrics(objs, sys.argv[3]),
    }[cmd]()
    print("\n".join(errs))
    sys.exit(1 if errs else 0)
