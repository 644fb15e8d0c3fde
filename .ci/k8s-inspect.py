"""Structural and security checks of rendered manifests; config extraction."""
import base64
import json
import os
import re
import sys

import yaml

from k8s_inspect_ops import (check_helm_test, check_redis_tls, check_reload_mounts, check_routes, check_store,
                             compare_pods, local_test_script)

# sessiongate's durations: 500ms, 10s, 15m, 2h, 7d and sums such as 1h30m.
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d))+$")
UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def seconds(d):
    assert DURATION.match(d), f"bad duration {d!r}"
    return sum(int(n) * UNIT[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d)", d))


def config_of(objs):
    cms = [o for o in objs if o["kind"] == "ConfigMap" and "sessiongate.yaml" in o.get("data", {})]
    assert len(cms) == 1, f"expected one config ConfigMap, found {len(cms)}"
    return cms[0]["data"]["sessiongate.yaml"]


def check_security(objs):
    """The pod invariants the chart promises (restricted profile and friends)."""
    errors = []
    deps = [o for o in objs if o["kind"] == "Deployment"]
    assert len(deps) == 1, "expected one Deployment"
    pod = deps[0]["spec"]["template"]
    spec = pod["spec"]
    cfg = yaml.safe_load(config_of(objs))
    sg = [c for c in spec.get("containers", []) + spec.get("initContainers", []) if c["name"] == "sessiongate"]
    if len(sg) != 1:
        errors.append("exactly one sessiongate container expected")
    for c in sg:
        sc = c.get("securityContext", {})
        want = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                "privileged": False, "runAsUser": 65532}
        for k, v in want.items():
            if sc.get(k) != v:
                errors.append(f"securityContext.{k} should be {v}, is {sc.get(k)}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            errors.append("capabilities must drop ALL")
        seccomp = sc.get("seccompProfile") or spec.get("securityContext", {}).get("seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            errors.append("seccompProfile RuntimeDefault missing")
        live, ready = c.get("livenessProbe", {}), c.get("readinessProbe", {})
        if live.get("httpGet", {}).get("path") != "/healthz" or live["httpGet"].get("port") != "admin":
            errors.append("liveness must be /healthz on the admin port (never the store)")
        if ready.get("httpGet", {}).get("path") != "/readyz" or ready["httpGet"].get("port") != "admin":
            errors.append("readiness must be /readyz on the admin port")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        if cfg["store"]["backend"] == "sqlite":
            d = os.path.dirname(cfg["store"]["sqlite"]["path"])
            if d not in mounts or mounts[d].get("readOnly"):
                errors.append(f"SQLite folder {d} must be a writable mount")
        if "limits" not in c.get("resources", {}) or "requests" not in c.get("resources", {}):
            errors.append("resources requests and limits expected")
    if spec.get("automountServiceAccountToken") is not False:
        errors.append("automountServiceAccountToken must be false")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        errors.append("pod runAsNonRoot expected")
    grace = seconds(cfg["server"]["shutdown_grace"])
    sleep = sum(c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0) for c in sg)
    if not spec.get("terminationGracePeriodSeconds", 30) > grace + sleep:
        errors.append("terminationGracePeriodSeconds must exceed shutdown_grace + preStop sleep")
    apps = [c for c in spec.get("containers", []) if c["name"] != "sessiongate"]
    for c in apps:  # sidecar mode: the app must outlive what sessiongate still forwards
        app_sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if app_sleep < sleep:
            errors.append(f"app container {c['name']}: preStop sleep {app_sleep}s shorter than sessiongate's {sleep}s")
        if not spec.get("terminationGracePeriodSeconds", 30) > app_sleep + grace:
            errors.append("terminationGracePeriodSeconds must exceed the app's preStop sleep + shutdown_grace")
    errors += check_pdb(objs, deps[0]) + check_egress_dns(objs)
    errors += check_reload_mounts(pod, sg, cfg) + check_redis_tls(pod, sg, cfg)
    for o in objs:
        labels = o["metadata"].get("labels", {})
        for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                  "app.kubernetes.io/version", "helm.sh/chart"):
            if k not in labels:
                errors.append(f"{o['kind']}/{o['metadata']['name']}: label {k} missing")
        if o["kind"] == "Service" and o["metadata"]["name"].endswith("-metrics") is False:
            for p in o["spec"]["ports"]:
                if p.get("targetPort") != "http":
                    errors.append("the client Service must target the sessiongate http port only")
    return errors


def check_pdb(objs, dep):
    """A PDB only over more than one pod, never blocking drains on unready pods."""
    errors = []
    hpas = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
    replicas = hpas[0]["spec"].get("minReplicas", 1) if hpas else dep["spec"].get("replicas", 1)
    for o in objs:
        if o["kind"] != "PodDisruptionBudget":
            continue
        if replicas <= 1:
            errors.append(f"PodDisruptionBudget rendered for {replicas} replica(s): blocks node drains")
        if o["spec"].get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
            errors.append("PodDisruptionBudget needs unhealthyPodEvictionPolicy: AlwaysAllow (Kubernetes >= 1.27)")
    return errors


def check_egress_dns(objs):
    """With egress locked down, DNS must reach kube-dns and NodeLocal DNSCache on 53 UDP+TCP."""
    errors = []
    for o in objs:
        if o["kind"] != "NetworkPolicy" or "Egress" not in o["spec"].get("policyTypes", []):
            continue
        dns = [r for r in o["spec"].get("egress", [])
               if {(p.get("port"), p.get("protocol")) for p in r.get("ports", [])} >= {(53, "UDP"), (53, "TCP")}]
        peers = [t for r in dns for t in r.get("to", [])]
        if not any(t.get("podSelector", {}).get("matchLabels", {}).get("k8s-app") == "kube-dns" for t in peers):
            errors.append("egress: no DNS rule to the kube-dns pods on 53 UDP+TCP")
        if not any(t.get("ipBlock", {}).get("cidr") == "169.254.20.10/32" for t in peers):
            errors.append("egress: no DNS rule to NodeLocal DNSCache 169.254.20.10/32 on 53 UDP+TCP")
    return errors


def relisten(config, listen, admin_listen):
    with open(config) as f:
        cfg = yaml.safe_load(f)
    cfg["server"]["listen"], cfg["server"]["admin_listen"] = listen, admin_listen
    with open(config, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)


def expect(objs, kind, path, want):
    """The value at PATH (dotted; [n] indexes) of the first KIND (or KIND/NAME)
    object, KIND sessiongate.yaml: of the rendered config; "<absent>" when
    there is none or PATH is missing."""
    if kind == "sessiongate.yaml":
        objs = [dict(yaml.safe_load(config_of(objs)), kind=kind, metadata={"name": ""})]
    kind, _, name = kind.partition("/")
    found = [o for o in objs if o["kind"] == kind and name in ("", o["metadata"]["name"])]
    got = "<absent>"
    if found:
        node = found[0]
        for part in re.findall(r"[^.\[\]]+|\[[0-9]+\]", path):
            if isinstance(node, list) and part.startswith("["):
                idx = int(part[1:-1])
                node = node[idx] if idx < len(node) else None
            elif isinstance(node, dict) and not part.startswith("["):
                node = node.get(part)
            else:
                node = None
            if node is None:
                break
        if node is not None:
            got = json.dumps(node) if isinstance(node, (dict, list)) else str(node)
    return [] if got == want else [f"{kind} {path}: expected {want}, got {got}"]


def check_schema(path):
    """values.schema.json: every duration field accepts the README's forms
    (sums included) and rejects malformed ones; SPEC 2 keys the chart lacked."""
    errors = []
    with open(path) as f:
        schema = json.load(f)
    good = ["500ms", "10s", "15m", "2h", "7d", "1h30m", "1m30s", "0s"]
    bad = ["", "10", "1.5h", "10 s", "s", "-1s", "10S", "1h 30m"]
    durations = []

    def walk(node, where):
        if isinstance(node, dict):
            if str(node.get("description", "")).startswith("Duration"):
                durations.append((where, node))
            for k, v in node.items():
                walk(v, f"{where}.{k}" if k != "properties" else where)

    walk(schema, "")
    if len(durations) < 10:
        errors.append(f"only {len(durations)} duration fields found")
    for where, node in durations:
        rx = re.compile(node.get("pattern", ""))
        errors += [f"{where}: rejects {d!r}" for d in good if not rx.search(d)]
        errors += [f"{where}: accepts {d!r}" for d in bad if rx.search(d)]
    names = {w for w, _ in durations}
    for want in (".config.revocation.max_staleness", ".server.shutdownGrace", ".config.tokens.access_ttl"):
        if want not in names:
            errors.append(f"{want}: not a duration in the schema")
    return errors


def balanced(expr):
    pairs, stack = {")": "(", "}": "{", "]": "["}, []
    for ch in expr:
        if ch in "({[":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def check_crds(objs):
    """Minimal checks for the Prometheus Operator kinds and the dashboard."""
    errors = []
    for o in objs:
        kind, name = o["kind"], o["metadata"].get("name", "?")
        if o.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            if o["apiVersion"] != "monitoring.coreos.com/v1":
                errors.append(f"{kind}/{name}: apiVersion {o['apiVersion']}")
            spec = o.get("spec") or {}
            if kind in ("ServiceMonitor", "PodMonitor"):
                eps = spec.get("endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints") or []
                if not spec.get("selector", {}).get("matchLabels") or not eps:
                    errors.append(f"{kind}/{name}: selector and endpoints required")
                for ep in eps:
                    if ep.get("port") != "admin" or ep.get("path") != "/metrics":
                        errors.append(f"{kind}/{name}: must scrape admin:/metrics")
            elif kind == "PrometheusRule":
                for g in spec.get("groups", []):
                    for r in g.get("rules", []):
                        if not r.get("alert") or not r.get("expr") or not balanced(r["expr"]):
                            errors.append(f"{kind}/{name}: rule {r.get('alert')} malformed")
                        if "for" in r and not DURATION.match(r["for"]):
                            errors.append(f"{kind}/{name}: rule {r['alert']} bad for: {r['for']}")
                        if "{{" in r["expr"]:
                            errors.append(f"{kind}/{name}: unrendered template in expr")
            else:
                errors.append(f"unexpected kind {kind}")
        if kind == "ConfigMap" and "sessiongate.json" in o.get("data", {}):
            dash = json.loads(o["data"]["sessiongate.json"])
            if o["metadata"]["labels"].get("grafana_dashboard") != "1" or not dash.get("panels"):
                errors.append("dashboard ConfigMap needs grafana_dashboard: \"1\" and panels")
    return errors


def extract(objs, root):
    """Write the rendered config under ROOT with its pod paths moved under ROOT.

    Prints one line per key file to generate (`key PATH ALG KID`), the server
    TLS pair (`tls CERT KEY`), the Redis TLS files (`redis-tls CA CERT KEY`,
    "-" for one not configured) and per ${VAR} the config expects (`env NAME`)."""
    text = config_of(objs)
    cfg = yaml.safe_load(text)

    def move(p):
        return root + p if isinstance(p, str) and p.startswith("/") else p

    for k in cfg["tokens"]["keys"]:
        if "private_key_file" in k:
            k["private_key_file"] = move(k["private_key_file"])
            print("key", k["private_key_file"], k["alg"], k["kid"])
    tls = cfg.get("server", {}).get("tls")
    if tls:
        tls["cert_file"], tls["key_file"] = move(tls["cert_file"]), move(tls["key_file"])
        print("tls", tls["cert_file"], tls["key_file"])
    rtls = cfg["store"].get("redis", {}).get("tls") if cfg["store"]["backend"] == "redis" else None
    if rtls:
        for k in ("ca_file", "cert_file", "key_file"):
            if k in rtls:
                rtls[k] = move(rtls[k])
        print("redis-tls", rtls.get("ca_file", "-"), rtls.get("cert_file", "-"), rtls.get("key_file", "-"))
    if cfg["store"]["backend"] == "sqlite":
        cfg["store"]["sqlite"]["path"] = move(cfg["store"]["sqlite"]["path"])
        print("dir", os.path.dirname(cfg["store"]["sqlite"]["path"]))
    for var in sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}", text))):
        print("env", var)
    path = root + "/etc/sessiongate/config/sessiongate.yaml"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    print("config", path)


if __name__ == "__main__":
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "relisten":
        relisten(path, sys.argv[3], sys.argv[4])
        sys.exit(0)
    if cmd == "test-script":
        print(local_test_script(docs(path), sys.argv[3], sys.argv[4]))
        sys.exit(0)
    if cmd == "fake-secrets":  # fake-secrets DIR '{"name": {"item": "value"}}': lookup results for the CI chart copy
        os.makedirs(path, exist_ok=True)
        for name, items in json.loads(sys.argv[3]).items():
            data = {k: base64.b64encode(v.encode()).decode() for k, v in items.items()}
            with open(os.path.join(path, name + ".json"), "w") as f:
                json.dump({"kind": "Secret", "metadata": {"name": name, "uid": "uid-" + name}, "data": data}, f)
        sys.exit(0)
    if cmd == "compare":  # compare A B kept|same|restart
        errs = compare_pods(docs(path), docs(sys.argv[3]), sys.argv[4])
        print("\n".join(errs))
        sys.exit(1 if errs else 0)
    if cmd == "schema":
        errs = check_schema(path)
        print("\n".join(errs))
        sys.exit(1 if errs else 0)
    objs = docs(path)
    if cmd == "extract":
        extract(objs, sys.argv[3])
        sys.exit(0)
    checks = {
        "security": lambda: check_security(objs),
        "crds": lambda: check_crds(objs) + check_routes(objs),
        "store": lambda: check_store(objs, yaml.safe_load(config_of(objs)), sys.argv[3] == "ephemeral"),
        "helm-test": lambda: check_helm_test(objs),
        "expect": lambda: expect(objs, *sys.argv[3:6]),
    }
    errs = checks[cmd]()
    for e in errs:
        print(e)
    sys.exit(1 if errs else 0)
