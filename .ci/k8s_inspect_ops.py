"""Operational checks of rendered manifests, used by .ci/k8s-inspect.py:
SQLite durability, Ingress/HTTPRoute backends, the `helm test` pod (and its
script, moved to local listeners to run against the real binary), hot
reload (what rolls the pods and what reaches them through their volumes),
the Redis TLS Secret's mount."""
import difflib
import json
import os
import re


def check_store(objs, cfg, ephemeral):
    """SQLite: strategy Recreate and the database on a kept PersistentVolumeClaim,
    an emptyDir only when the values say ephemeral (sessions and revocations lost).
    CFG: the rendered sessiongate.yaml, parsed."""
    errors = []
    if cfg["store"]["backend"] != "sqlite":
        return errors
    dep = [o for o in objs if o["kind"] == "Deployment"][0]
    if dep["spec"].get("strategy", {}).get("type") != "Recreate":
        errors.append(f"sqlite: strategy must be Recreate, is {dep['spec'].get('strategy')}")
    d = os.path.dirname(cfg["store"]["sqlite"]["path"])
    pod = dep["spec"]["template"]["spec"]
    sg = [c for c in pod.get("containers", []) + pod.get("initContainers", []) if c["name"] == "sessiongate"][0]
    mount = [m for m in sg.get("volumeMounts", []) if m["mountPath"] == d]
    vol = [v for v in pod.get("volumes", []) if mount and v["name"] == mount[0]["name"]]
    if not vol:
        return errors + [f"sqlite: no volume mounted at {d}"]
    vol = vol[0]
    if "emptyDir" in vol:
        if not ephemeral:
            errors.append("sqlite on an emptyDir without store.sqlite.ephemeral: a restart forgets sessions and revocations")
    elif "persistentVolumeClaim" in vol:
        claim = vol["persistentVolumeClaim"]["claimName"]
        pvcs = [o for o in objs if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == claim]
        for pvc in pvcs:
            if (pvc["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") != "keep":
                errors.append(f"PVC {claim} must be kept on uninstall (the keys are)")
            if not pvc["spec"].get("resources", {}).get("requests", {}).get("storage"):
                errors.append(f"PVC {claim} has no storage request")
        if ephemeral:
            errors.append("store.sqlite.ephemeral but the database is on a volume")
    else:
        errors.append(f"sqlite: volume {vol['name']} is neither a PVC nor an emptyDir")
    return errors


def services(objs):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}


def check_routes(objs):
    """Ingress and HTTPRoute (no bundled schema for the latter) must send
    traffic to the client Service's port only."""
    errors = []
    svcs = services(objs)
    client = [n for n, o in svcs.items() if not n.endswith("-metrics")]

    def backend(kind, name, svc, port):
        if svc not in client or all(p["port"] != port for p in svcs[svc]["spec"]["ports"]):
            errors.append(f"{kind}/{name}: backend {svc}:{port} is not the client Service's port")

    for o in objs:
        kind, name, spec = o["kind"], o["metadata"].get("name", "?"), o.get("spec") or {}
        if kind == "Ingress":
            for r in spec.get("rules", []):
                for p in r.get("http", {}).get("paths", []):
                    b = p["backend"]["service"]
                    backend(kind, name, b["name"], b["port"].get("number"))
        elif kind == "HTTPRoute":
            if o.get("apiVersion") != "gateway.networking.k8s.io/v1":
                errors.append(f"{kind}/{name}: apiVersion {o.get('apiVersion')}")
            refs = spec.get("parentRefs") or []
            if not refs or not all(isinstance(r, dict) and r.get("name") for r in refs):
                errors.append(f"{kind}/{name}: parentRefs with a name required")
            for h in spec.get("hostnames", []):
                if not re.match(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", h):
                    errors.append(f"{kind}/{name}: bad hostname {h!r}")
            rules = spec.get("rules") or []
            if not rules:
                errors.append(f"{kind}/{name}: no rules")
            for r in rules:
                for m in r.get("matches", []):
                    p = m.get("path", {})
                    if p.get("type") not in ("PathPrefix", "Exact", "RegularExpression") or not str(p.get("value", "")).startswith("/"):
                        errors.append(f"{kind}/{name}: bad path match {p}")
                if not r.get("backendRefs"):
                    errors.append(f"{kind}/{name}: rule without backendRefs")
                for b in r.get("backendRefs", []):
                    if b.get("kind", "Service") != "Service" or b.get("group", "") != "":
                        errors.append(f"{kind}/{name}: backendRef to a {b.get('kind')}")
                    backend(kind, name, b.get("name"), b.get("port"))
    return errors


def check_helm_test(objs):
    """The `helm test` pod: /readyz on the admin port expecting 200, a protected
    path on the client Service expecting 401; restricted; admitted by the
    NetworkPolicy; never selected by a Service."""
    errors = []
    tests = [o for o in objs if o["kind"] == "Pod" and o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    if len(tests) != 1:
        return [f"expected one helm test pod, found {len(tests)}"]
    pod = tests[0]
    labels = pod["metadata"]["labels"]
    svcs = services(objs)
    for n, svc in svcs.items():
        sel = svc["spec"].get("selector", {})
        if sel and all(labels.get(k) == v for k, v in sel.items()):
            errors.append(f"the test pod is selected by Service {n}")
    c = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
    script = " ".join(c.get("command", []) + c.get("args", []))

    def target(url, path_end):
        m = re.match(r"^https?://([^:/]+):([0-9]+)(/.*)$", url or "")
        if not m or not m.group(3).endswith(path_end):
            return None
        svc = svcs.get(m.group(1))
        ports = [p for p in (svc or {}).get("spec", {}).get("ports", []) if p["port"] == int(m.group(2))]
        return ports[0]["targetPort"] if ports else None

    if target(env.get("READYZ_URL"), "/readyz") != "admin":
        errors.append(f"READYZ_URL {env.get('READYZ_URL')} is not /readyz on a Service port targeting admin")
    if target(env.get("PROTECTED_URL"), "") != "http":
        errors.append(f"PROTECTED_URL {env.get('PROTECTED_URL')} is not on the client Service")
    if '= 200 ]' not in script or '= 401 ]' not in script:
        errors.append("the test script must expect 200 from /readyz and 401 without a token")
    sc = c.get("securityContext", {})
    if sc.get("allowPrivilegeEscalation") is not False or sc.get("capabilities", {}).get("drop") != ["ALL"] \
            or not sc.get("readOnlyRootFilesystem") or not pod["spec"].get("securityContext", {}).get("runAsNonRoot"):
        errors.append("the test pod must be restricted (non-root, read-only, no escalation, drop ALL)")
    dep = [o for o in objs if o["kind"] == "Deployment"][0]["spec"]["template"]["spec"]
    sg = [c for c in dep.get("containers", []) + dep.get("initContainers", []) if c["name"] == "sessiongate"][0]
    ports = {p["name"]: p["containerPort"] for p in sg["ports"]}

    def admits(rule, port):
        if rule.get("ports") and not any(p.get("port") in (port, name) for p in rule["ports"] for name in ports
                                         if ports[name] == port):
            return False
        frm = rule.get("from")
        if not frm:
            return frm is None  # no `from`: any source
        return any("namespaceSelector" not in f and "ipBlock" not in f and
                   all(labels.get(k) == v for k, v in f.get("podSelector", {}).get("matchLabels", {}).items())
                   for f in frm)

    for o in objs:
        if o["kind"] != "NetworkPolicy":
            continue
        for name in ("http", "admin"):
            if not any(admits(r, ports[name]) for r in o["spec"].get("ingress", [])):
                errors.append(f"NetworkPolicy {o['metadata']['name']} does not admit the test pod to port {name}")
    return errors


def local_test_script(objs, http, admin):
    """The `helm test` pod's script, its URLs moved to the local listeners
    (Service -> targetPort -> 127.0.0.1:HTTP or :ADMIN), as a sh script."""
    pod = [o for o in objs if o["kind"] == "Pod" and o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"][0]
    c = pod["spec"]["containers"][0]
    svcs = services(objs)
    local = {"http": http, "admin": admin}
    lines = []
    for e in c.get("env", []):
        m = re.match(r"^(https?)://([^:/]+):([0-9]+)(/.*)$", e["value"])
        port = [p for p in svcs[m.group(2)]["spec"]["ports"] if p["port"] == int(m.group(3))][0]
        url = f"{m.group(1)}://127.0.0.1:{local[port['targetPort']]}{m.group(4)}"
        lines.append(f"export {e['name']}='{url}'")
    assert c["command"] == ["/bin/sh", "-c"], c["command"]
    return "\n".join(lines + c["args"])


def check_reload_mounts(pod, sg, cfg):
    """Hot reload (SPEC 1) reaches the pod only through volumes the kubelet
    updates in place: the config, keys and TLS mounts without subPath, the
    keys Secret without an items list (a new key must not change the pod
    template), the TLS Secret's tls.crt/tls.key where the config reads them;
    and the pods roll on checksum/restart, not on any config change."""
    errors = []
    ann = pod["metadata"].get("annotations", {})
    if not re.match(r"^[0-9a-f]{64}$", str(ann.get("checksum/restart", ""))):
        errors.append("checksum/restart pod annotation (sha256) missing")
    if "checksum/config" in ann:
        errors.append("checksum/config rolls the pods on every config change: sessiongate reloads it")
    vols = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    for c in sg:
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        for name in ("config", "keys", "tls"):
            m = mounts.get(name)
            if m is None:
                if name != "tls":
                    errors.append(f"volume {name} not mounted")
                continue
            if "subPath" in m or "subPathExpr" in m:
                errors.append(f"volume {name} mounted with subPath: the kubelet never updates it, no reload")
            if not m.get("readOnly"):
                errors.append(f"volume {name} must be mounted read-only")
        keys = vols.get("keys", {}).get("secret")
        if keys is None:
            errors.append("keys volume is not a Secret volume")
        elif "items" in keys:
            errors.append("keys Secret volume lists items: adding a key changes the pod template (a rollout)")
        tls = cfg["server"].get("tls")
        if tls:
            items = {i["key"]: i["path"] for i in vols.get("tls", {}).get("secret", {}).get("items", [])}
            d = mounts.get("tls", {}).get("mountPath", "?")
            for key, file in (("tls.crt", tls.get("cert_file")), ("tls.key", tls.get("key_file"))):
                if items and items.get(key) != os.path.basename(file or ""):
                    errors.append(f"TLS Secret item {key} is not mounted as {file}")
                if os.path.dirname(file or "") != d:
                    errors.append(f"server.tls {file} is not in the TLS mount {d}")
    return errors


def compare_pods(a, b, want):
    """Two renders (A, then A with one change). WANT kept: a reloadable change,
    so the config ConfigMap differs and the Deployment's pod template is
    identical (no rollout); same: the pod template is identical; restart:
    checksum/restart differs (a rollout)."""
    def pod(objs):
        return [o for o in objs if o["kind"] == "Deployment"][0]["spec"]["template"]

    def config(objs):
        return [o for o in objs if o["kind"] == "ConfigMap" and "sessiongate.yaml" in o.get("data", {})][0]["data"]

    pa, pb = pod(a), pod(b)
    if want == "restart":
        ca, cb = (p["metadata"].get("annotations", {}).get("checksum/restart") for p in (pa, pb))
        return [] if ca and ca != cb else [f"checksum/restart unchanged ({ca}): the pods would keep the old value"]
    errors = []
    if config(a) == config(b) and want == "kept":
        errors.append("the change did not reach the config at all (test vacuous)")
    if pa != pb:
        ta, tb = (json.dumps(p, indent=1, sort_keys=True).splitlines() for p in (pa, pb))
        diff = list(difflib.unified_diff(ta, tb, "before", "after", lineterm="", n=1))
        errors.append("the pod template changed (a rollout), but sessiongate reloads this:")
        errors += diff[:40]
    return errors


def check_redis_tls(pod, sg, cfg):
    """store.redis.tls: the Redis TLS Secret is mounted read-only, without
    subPath, not group/world-writable nor world-readable, in a folder of its
    own; every file the config names is an item of that Secret volume in that
    folder; the urls are rediss:// (sessiongate refuses a tls section with
    redis://). No such volume without store.redis.tls in the config."""
    errors = []
    store = cfg["store"]
    redis = store.get("redis") or {} if store["backend"] == "redis" else {}
    tls = redis.get("tls")
    vols = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    for c in sg:
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        m = mounts.get("redis-tls")
        if not tls:
            if m or "redis-tls" in vols:
                errors.append("redis-tls volume present but the config has no store.redis.tls")
            continue
        files = {k: tls[k] for k in ("ca_file", "cert_file", "key_file") if tls.get(k)}
        if not files:
            errors.append("store.redis.tls names no file")
        if ("cert_file" in files) != ("key_file" in files):
            errors.append("store.redis.tls: cert_file and key_file go together")
        urls = redis.get("sentinel", {}).get("urls") if "sentinel" in redis else redis.get("url")
        urls = urls if isinstance(urls, list) else [urls]
        for u in urls:
            if u != "${SG_REDIS_URL}" and not str(u).startswith("rediss://"):
                errors.append("store.redis.tls with a redis:// url: sessiongate refuses it")
        if m is None:
            errors.append("store.redis.tls rendered but the redis-tls volume is not mounted")
            continue
        d = m["mountPath"]
        if not m.get("readOnly"):
            errors.append(f"the Redis TLS Secret must be mounted read-only ({d})")
        if "subPath" in m or "subPathExpr" in m:
            errors.append("the Redis TLS Secret is mounted with subPath")
        for o in c.get("volumeMounts", []):
            p = o["mountPath"].rstrip("/")
            if o is not m and (p == d or p.startswith(d + "/") or d.startswith(p + "/")):
                errors.append(f"mount {o['name']} at {o['mountPath']} overlaps the Redis TLS mount {d}")
        secret = vols.get("redis-tls", {}).get("secret")
        if secret is None:
            errors.append("the redis-tls volume is not a Secret volume")
            continue
        mode = secret.get("defaultMode", 0o644)
        if mode & 0o027:
            errors.append(f"the Redis TLS Secret's files are mode {oct(mode)}: group-writable or world-readable")
        paths = {i["path"] for i in secret.get("items", [])} if "items" in secret else None
        for k, f in files.items():
            if os.path.dirname(f) != d:
                errors.append(f"store.redis.tls.{k} {f} is not in the Redis TLS mount {d}")
            elif paths is not None and os.path.basename(f) not in paths:
                errors.append(f"store.redis.tls.{k} {f} is no item of the Redis TLS Secret volume")
    return errors
