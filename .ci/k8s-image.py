"""The image runs as shipped: static checks of the Dockerfile and .dockerignore.

CI cannot run Docker, so this reads the build instead:

- the runtime stage's default command (ENTRYPOINT + CMD) names a config with
  --config; that config, and every file it names (token keys, TLS, CA), must
  be COPYed from the build context into the image and not be excluded by
  .dockerignore;
- the config is read with the image's ENV applied to its ${VAR:-default}s;
  every EXPOSEd port must be one a listener (server.listen,
  server.admin_listen) binds on a non-loopback address.

Usage: python3 .ci/k8s-image.py [ROOT]   (prints the problems, exits 1 on any)
       python3 .ci/k8s-image.py --run ROOT  (prints the runtime stage's ENV as
       NAME=VALUE lines, then the default command's arguments, one a line)
"""
import json
import os
import posixpath
import re
import shlex
import sys

import yaml


def instructions(path):
    """Dockerfile instructions as (KEYWORD, text), continuation lines joined."""
    out, cur = [], ""
    with open(path) as f:
        for line in f:
            s = line.rstrip("\n")
            if not cur and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if cur and s.lstrip().startswith("#"):
                continue
            if s.endswith("\\"):
                cur += s[:-1] + " "
                continue
            cur += s
            kw, _, rest = cur.strip().partition(" ")
            out.append((kw.upper(), rest.strip()))
            cur = ""
    return out


def runtime_stage(instrs):
    """The instructions of the last stage (the image `docker build` produces)."""
    last = max(i for i, (kw, _) in enumerate(instrs) if kw == "FROM")
    return instrs[last + 1:]


def exec_form(text):
    text = text.strip()
    return json.loads(text) if text.startswith("[") else ["/bin/sh", "-c", text]


def env_of(stage):
    env = {}
    for kw, rest in stage:
        if kw == "ENV":
            for tok in shlex.split(rest):
                k, eq, v = tok.partition("=")
                if eq:
                    env[k] = v
    return env


def copies(stage):
    """(sources, dest) of each COPY from the build context (not --from)."""
    out = []
    for kw, rest in stage:
        if kw not in ("COPY", "ADD"):
            continue
        parts = exec_form(rest) if rest.startswith("[") else shlex.split(rest)
        if any(p.startswith("--from") for p in parts):
            continue
        args = [p for p in parts if not p.startswith("--")]
        out.append((args[:-1], args[-1]))
    return out


def ignore_patterns(path):
    pats = []
    if not os.path.exists(path):
        return pats
    with open(path) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            neg = s.startswith("!")
            p = posixpath.normpath(s[1:] if neg else s).lstrip("/")
            pats.append((neg, re.compile("^" + glob_re(p) + "$")))
    return pats


def glob_re(p):
    """Docker's .dockerignore globs: ** any path, * and ? within one segment."""
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return out


def excluded(rel, pats):
    """Last matching pattern wins; a pattern matching a parent folder counts."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ex = False
    for neg, rx in pats:
        if any(rx.match(p) for p in prefixes):
            ex = not neg
    return ex


def context_path(image_path, stage, workdir_root="/"):
    """The build-context file COPYed to IMAGE_PATH, or None."""
    for srcs, dest in copies(stage):
        for src in srcs:
            src = posixpath.normpath(src)
            if dest.endswith("/") and os.path.isdir(src):
                if image_path.startswith(dest):
                    return posixpath.join(src, image_path[len(dest):])
            elif dest.endswith("/"):
                if image_path == posixpath.join(dest, posixpath.basename(src)):
                    return src
            elif image_path == dest:
                return src
    return None


def expand(text, env):
    def sub(m):
        name, default = m.group(1), m.group(3)
        if name in env:
            return env[name]
        if default is None:
            raise KeyError(name)
        return default
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", sub, text)


def expand_all(node, env):
    """${VAR} in string values only, as sessiongate does (not in comments)."""
    if isinstance(node, dict):
        return {k: expand_all(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_all(v, env) for v in node]
    return expand(node, env) if isinstance(node, str) else node


def files_named(cfg):
    """(key path, file) of every file the config names."""
    out = []
    for i, k in enumerate(cfg.get("tokens", {}).get("keys", [])):
        if k.get("private_key_file"):
            out.append((f"tokens.keys[{i}].private_key_file", k["private_key_file"]))
    tls = (cfg.get("server") or {}).get("tls") or {}
    for k in ("cert_file", "key_file"):
        if tls.get(k):
            out.append((f"server.tls.{k}", tls[k]))
    up = cfg.get("upstream") or {}
    if up.get("ca_file"):
        out.append(("upstream.ca_file", up["ca_file"]))
    admin = cfg.get("admin") or {}
    if admin.get("token_file"):
        out.append(("admin.token_file", admin["token_file"]))
    return out


def loopback(host):
    return host in ("localhost", "::1") or host.startswith("127.")


def main(root):
    errors = []
    os.chdir(root)
    stage = runtime_stage(instructions("Dockerfile"))
    pats = ignore_patterns(".dockerignore")
    entry, cmd = [], []
    for kw, rest in stage:
        if kw == "ENTRYPOINT":
            entry = exec_form(rest)
        elif kw == "CMD":
            cmd = exec_form(rest)
    argv = entry + cmd
    if "--config" not in argv or argv.index("--config") + 1 >= len(argv):
        return [f"default command {argv} names no --config"]
    config = argv[argv.index("--config") + 1]
    env = env_of(stage)

    def shipped(image_path, what):
        src = context_path(image_path, stage)
        if src is None:
            errors.append(f"{what} {image_path} is not COPYed from the build context")
        elif not os.path.isfile(src):
            errors.append(f"{what} {image_path}: {src} does not exist in the repository")
        elif excluded(src, pats):
            errors.append(f"{what} {image_path}: {src} is excluded by .dockerignore")
        else:
            return src
        return None

    src = shipped(config, "the default command's config")
    if src is None:
        return errors
    with open(src) as f:
        try:
            cfg = expand_all(yaml.safe_load(f), env)
        except KeyError as e:
            return errors + [f"{config}: ${{{e.args[0]}}} has no value in the image (ENV) and no default"]
    base = posixpath.dirname(config)
    for key, p in files_named(cfg):
        shipped(posixpath.normpath(posixpath.join(base, p)), f"{key} of {config}:")
    server = cfg.get("server") or {}
    listening = {}
    for key, default in (("listen", "0.0.0.0:8080"), ("admin_listen", "127.0.0.1:9090")):
        host, _, port = str(server.get(key, default)).rpartition(":")
        listening.setdefault(int(port), []).append((key, host.strip("[]")))
    for kw, rest in stage:
        if kw != "EXPOSE":
            continue
        for tok in rest.split():
            port = int(tok.split("/")[0])
            binds = listening.get(port, [])
            if not binds:
                errors.append(f"EXPOSE {port}: the default config listens on no such port")
            for key, host in binds:
                if loopback(host):
                    errors.append(f"EXPOSE {port}: server.{key} binds {host}, unreachable from outside the container")
    return errors


def default_run(root):
    stage = runtime_stage(instructions(os.path.join(root, "Dockerfile")))
    entry, cmd = [], []
    for kw, rest in stage:
        if kw == "ENTRYPOINT":
            entry = exec_form(rest)
        elif kw == "CMD":
            cmd = exec_form(rest)
    for k, v in env_of(stage).items():
        print(f"{k}={v}")
    print("\n".join((entry + cmd)[1:]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:
        default_run(sys.argv[2])
        sys.exit(0)
    errs = main(sys.argv[1] if len(sys.argv) > 1 else ".")
    for e in errs:
        print(e)
    sys.exit(1 if errs else 0)
