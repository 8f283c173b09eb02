#!/usr/bin/env python3
"""Checks the deployment files that no test here can run (`make lint-deploy`).

    check_manifests.py [--self-test]

There is no Kubernetes cluster where ztask is developed and kubeconform is
not in Debian, so this reads deploy/kubernetes/*.yaml with python3-yaml and
checks what a cluster would refuse, or what would only fail once running:

- every document has apiVersion, kind, metadata.name; namespaced kinds
  are in namespace ztask; kinds are ones these files are meant to use;
- a workload's selector matches its pod template's labels; each container
  has a name, an image and a command of strings; every volumeMount names a
  volume (or a volumeClaimTemplate); Secrets and ConfigMaps mounted are
  the ones docs/deploy.md tells you to create (`kubectl create secret
  generic NAME --from-file=KEY=...`), with the keys a mount's items name;
- every file a ztask flag names (--curve-secret, --master-key, --clients,
  --workers, --db, the env ZTASK_CURVE_SECRET/ZTASK_MASTER_KEY) is under a
  mount, and when that mount is a Secret or ConfigMap its file name is one
  of the keys the docs create;
- the master is a StatefulSet of exactly one replica whose serviceName is a
  headless Service selecting it; each Service's selector matches a
  workload and its targetPorts are named container ports; the workers'
  --master names that Service; prometheus.io/port is a number;
and in deploy/swarm/docker-stack.yml: every secret and config a service
uses is defined, and every /run/secrets/ path or config target a command
or the environment names is mounted in that service.

Prints one line per problem and exits 1, or one summary line and exit 0.
--self-test breaks good manifests in each way above and exits 1 unless
every break is caught.
"""
import copy
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
K8S_DIR = os.path.join(ROOT, "deploy", "kubernetes")
STACK = os.path.join(ROOT, "deploy", "swarm", "docker-stack.yml")
DOCS = os.path.join(ROOT, "docs", "deploy.md")

NAMESPACE = "ztask"
KNOWN_KINDS = {"Namespace", "Service", "StatefulSet", "Deployment"}
PATH_FLAGS = ("--curve-secret", "--master-key", "--clients", "--workers", "--db", "--http-token")
PATH_ENV = ("ZTASK_CURVE_SECRET", "ZTASK_MASTER_KEY")


def created_objects(docs_text):
    """{("Secret"|"ConfigMap", name): set(keys)} from the kubectl commands."""
    made = {}
    text = docs_text.replace("\\\n", " ")
    for m in re.finditer(r"kubectl\b[^\n]*?\bcreate\s+(secret\s+generic|configmap)\s+([\w.-]+)([^\n]*)",
                         text):
        kind = "Secret" if m.group(1).startswith("secret") else "ConfigMap"
        keys = set(re.findall(r"--from-file=([\w.-]+)=", m.group(3)))
        made.setdefault((kind, m.group(2)), set()).update(keys)
    return made


def pod_spec(doc):
    return (((doc.get("spec") or {}).get("template") or {}).get("spec")) or {}


def check_k8s(docs, made):
    problems = []
    services, workloads = [], []
    for doc in docs:
        where = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
        for field in ("apiVersion", "kind", "metadata"):
            if field not in doc:
                problems.append(f"{where}: no {field}")
        meta = doc.get("metadata") or {}
        if not meta.get("name"):
            problems.append(f"{where}: no metadata.name")
        kind = doc.get("kind")
        if kind not in KNOWN_KINDS:
            problems.append(f"{where}: kind {kind!r} is not one of {sorted(KNOWN_KINDS)}")
            continue
        if kind != "Namespace" and meta.get("namespace") != NAMESPACE:
            problems.append(f"{where}: namespace {meta.get('namespace')!r}, want {NAMESPACE!r}")
        if kind == "Service":
            services.append(doc)
        elif kind in ("StatefulSet", "Deployment"):
            workloads.append(doc)

    for doc in workloads:
        where = f"{doc['kind']}/{doc['metadata'].get('name')}"
        spec = doc.get("spec") or {}
        tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        if not sel or any(tmpl_labels.get(k) != v for k, v in sel.items()):
            problems.append(f"{where}: selector {sel} does not match the template's labels {tmpl_labels}")
        annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
        port = annotations.get("prometheus.io/port")
        if port is not None and not str(port).isdigit():
            problems.append(f"{where}: prometheus.io/port {port!r} is not a number")
        ps = pod_spec(doc)
        volumes = {v.get("name"): v for v in ps.get("volumes") or []}
        claims = {(c.get("metadata") or {}).get("name") for c in spec.get("volumeClaimTemplates") or []}
        for v in volumes.values():
            for kind, ref in (("Secret", (v.get("secret") or {}).get("secretName")),
                              ("ConfigMap", (v.get("configMap") or {}).get("name"))):
                if ref is None:
                    continue
                if (kind, ref) not in made:
                    problems.append(f"{where}: volume {v.get('name')} uses {kind} {ref}, which "
                                    f"docs/deploy.md does not create")
                    continue
                src = v.get("secret") or v.get("configMap")
                for item in src.get("items") or []:
                    if item.get("key") not in made[(kind, ref)]:
                        problems.append(f"{where}: volume {v.get('name')} takes key {item.get('key')!r}"
                                        f" of {kind} {ref}, which has {sorted(made[(kind, ref)])}")
        containers = ps.get("containers") or []
        if not containers:
            problems.append(f"{where}: no containers")
        for c in containers:
            cwhere = f"{where} container {c.get('name')!r}"
            if not c.get("name") or not c.get("image"):
                problems.append(f"{cwhere}: needs a name and an image")
            cmd = c.get("command") or []
            if not cmd or not all(isinstance(a, str) for a in cmd):
                problems.append(f"{cwhere}: command must be a list of strings: {cmd!r}")
                cmd = [str(a) for a in cmd]
            mounts = {}
            for m in c.get("volumeMounts") or []:
                if m.get("name") not in volumes and m.get("name") not in claims:
                    problems.append(f"{cwhere}: volumeMount {m.get('name')!r} names no volume")
                mounts[m.get("mountPath", "").rstrip("/")] = m.get("name")
            paths = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a in PATH_FLAGS]
            paths += [e.get("value") for e in c.get("env") or [] if e.get("name") in PATH_ENV]
            for path in paths:
                if not isinstance(path, str) or not path.startswith("/"):
                    problems.append(f"{cwhere}: path {path!r} is not absolute")
                    continue
                mount = next((m for m in sorted(mounts, key=len, reverse=True)
                              if path.startswith(m + "/")), None)
                if mount is None:
                    problems.append(f"{cwhere}: {path} is under no volumeMount")
                    continue
                vol = volumes.get(mounts[mount])
                if vol is None:
                    continue  # a volumeClaimTemplate: any file
                src = vol.get("secret") or vol.get("configMap")
                if src is None:
                    continue
                name = path[len(mount) + 1:]
                kind = "Secret" if "secret" in vol else "ConfigMap"
                ref = src.get("secretName") or src.get("name")
                items = src.get("items")
                keys = ({i.get("path") for i in items} if items
                        else made.get((kind, ref), set()))
                if name not in keys:
                    problems.append(f"{cwhere}: {path}: {kind} {ref} mounted at {mount} has no "
                                    f"file {name!r} (it has {sorted(keys)})")

    masters = [w for w in workloads if w["metadata"].get("name") == "ztask-master"]
    if len(masters) != 1 or masters[0]["kind"] != "StatefulSet":
        problems.append("the master must be one StatefulSet named ztask-master")
    else:
        m = masters[0]
        if (m.get("spec") or {}).get("replicas") != 1:
            problems.append(f"StatefulSet/ztask-master: replicas {m['spec'].get('replicas')!r}, want 1")
        svc_name = (m.get("spec") or {}).get("serviceName")
        svc = next((s for s in services if s["metadata"].get("name") == svc_name), None)
        if svc is None or (svc.get("spec") or {}).get("clusterIP") != "None":
            problems.append(f"StatefulSet/ztask-master: serviceName {svc_name!r} is not a headless Service")
        for w in workloads:
            cmd = [str(a) for c in pod_spec(w).get("containers") or [] for a in c.get("command") or []]
            if "--master" in cmd[:-1]:
                host = cmd[cmd.index("--master") + 1].rsplit(":", 1)[0]
                if host.split(".")[0] != svc_name:
                    problems.append(f"{w['kind']}/{w['metadata'].get('name')}: --master {host} is not "
                                    f"the master's Service {svc_name}")
    for s in services:
        where = f"Service/{s['metadata'].get('name')}"
        sel = (s.get("spec") or {}).get("selector") or {}
        match = [w for w in workloads
                 if sel and all((((w["spec"].get("template") or {}).get("metadata") or {})
                                 .get("labels") or {}).get(k) == v for k, v in sel.items())]
        if not match:
            problems.append(f"{where}: selector {sel} matches no workload")
            continue
        named = {p.get("name") for w in match for c in pod_spec(w).get("containers") or []
                 for p in c.get("ports") or []}
        for p in (s.get("spec") or {}).get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            if isinstance(tp, str) and tp not in named:
                problems.append(f"{where}: targetPort {tp!r} is no named container port ({sorted(named)})")
    return problems


def check_stack(stack):
    problems = []
    secrets = set((stack.get("secrets") or {}).keys())
    configs = set((stack.get("configs") or {}).keys())
    for name, svc in (stack.get("services") or {}).items():
        mounted = set()
        for s in svc.get("secrets") or []:
            src = s if isinstance(s, str) else s.get("source")
            target = s if isinstance(s, str) else s.get("target", src)
            if src not in secrets:
                problems.append(f"stack service {name}: secret {src!r} is not defined")
            mounted.add(target if target.startswith("/") else "/run/secrets/" + target)
        for c in svc.get("configs") or []:
            src = c if isinstance(c, str) else c.get("source")
            target = c if isinstance(c, str) else c.get("target", "/" + src)
            if src not in configs:
                problems.append(f"stack service {name}: config {src!r} is not defined")
            mounted.add(target)
        cmd = [str(a) for a in svc.get("command") or []]
        paths = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a in PATH_FLAGS and a != "--db"]
        env = svc.get("environment") or {}
        paths += [v for k, v in (env.items() if isinstance(env, dict) else []) if k in PATH_ENV]
        for path in paths:
            if path not in mounted:
                problems.append(f"stack service {name}: {path} is neither a secret nor a config it mounts")
    return problems


def check_all(k8s_docs, stack, docs_text):
    made = created_objects(docs_text)
    if not made:
        return ["docs/deploy.md creates no Secret or ConfigMap (kubectl create ...)"]
    return check_k8s(k8s_docs, made) + check_stack(stack)


def load():
    docs = []
    for f in sorted(os.listdir(K8S_DIR)):
        if f.endswith((".yaml", ".yml")):
            with open(os.path.join(K8S_DIR, f), encoding="utf-8") as fh:
                docs += [d for d in yaml.safe_load_all(fh) if d is not None]
    with open(STACK, encoding="utf-8") as fh:
        stack = yaml.safe_load(fh)
    with open(DOCS, encoding="utf-8") as fh:
        docs_text = fh.read()
    return docs, stack, docs_text


def self_test():
    docs, stack, text = load()
    if check_all(docs, stack, text):
        print("self-test: the manifests as they are do not pass")
        return 1

    def find(ds, kind, name):
        return next(d for d in ds if d.get("kind") == kind and d["metadata"].get("name") == name)

    def master(ds):
        return find(ds, "StatefulSet", "ztask-master")

    def worker(ds):
        return find(ds, "Deployment", "ztask-worker")

    def cmd_set(ds, flag, value, which=master):
        c = pod_spec(which(ds))["containers"][0]["command"]
        c[c.index(flag) + 1] = value

    breaks = [
        ("two masters", lambda ds, st, t: master(ds)["spec"].__setitem__("replicas", 2)),
        ("selector off", lambda ds, st, t: worker(ds)["spec"]["selector"]["matchLabels"]
         .__setitem__("app.kubernetes.io/component", "other")),
        ("wrong namespace", lambda ds, st, t: worker(ds)["metadata"].__setitem__("namespace", "default")),
        ("key path under no mount", lambda ds, st, t: cmd_set(ds, "--curve-secret", "/etc/keys/master.key")),
        ("key file not in the Secret", lambda ds, st, t: cmd_set(ds, "--curve-secret",
                                                                 "/etc/ztask/master/nope.key")),
        ("allowlist not in the ConfigMap", lambda ds, st, t: cmd_set(ds, "--workers",
                                                                     "/etc/ztask/public/w.pub")),
        ("worker's master.pub not among its items", lambda ds, st, t: cmd_set(
            ds, "--master-key", "/etc/ztask/public/clients.pub", worker)),
        ("mount of no volume", lambda ds, st, t: pod_spec(worker(ds))["containers"][0]["volumeMounts"]
         .append({"name": "ghost", "mountPath": "/x"})),
        ("Secret the docs do not create", lambda ds, st, t: next(
            v for v in pod_spec(worker(ds))["volumes"] if "secret" in v)["secret"]
         .__setitem__("secretName", "ztask-other")),
        ("worker pointed elsewhere", lambda ds, st, t: cmd_set(ds, "--master", "ztask-api:5555", worker)),
        ("not headless", lambda ds, st, t: find(ds, "Service", "ztask-master")["spec"]
         .__setitem__("clusterIP", "10.0.0.1")),
        ("targetPort unnamed", lambda ds, st, t: find(ds, "Service", "ztask-master")["spec"]["ports"][0]
         .__setitem__("targetPort", "apix")),
        ("metrics port not a number", lambda ds, st, t: master(ds)["spec"]["template"]["metadata"]
         ["annotations"].__setitem__("prometheus.io/port", "metrics")),
        ("unknown kind", lambda ds, st, t: ds.append({"apiVersion": "v1", "kind": "Pod",
                                                       "metadata": {"name": "x", "namespace": "ztask"}})),
        ("stack: undefined secret", lambda ds, st, t: st["secrets"].pop("worker_key")),
        ("stack: key path not mounted", lambda ds, st, t: st["services"]["worker"]["command"]
         .__setitem__(st["services"]["worker"]["command"].index("--curve-secret") + 1,
                      "/run/secrets/other.key")),
    ]
    bad = 0
    for name, brk in breaks:
        ds, st = copy.deepcopy(docs), copy.deepcopy(stack)
        brk(ds, st, text)
        if not check_all(ds, st, text):
            bad += 1
            print(f"self-test: '{name}' was not caught")
    # The docs no longer creating a Secret the manifests use.
    if not check_all(docs, stack, re.sub(r"create secret generic ztask-worker", "create secret generic x",
                                         text)):
        bad += 1
        print("self-test: a Secret missing from docs/deploy.md was not caught")
    if bad:
        return 1
    print(f"{len(breaks) + 1} broken variants, each caught")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    docs, stack, text = load()
    problems = check_all(docs, stack, text)
    for p in problems:
        print(p)
    if problems:
        return 1
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    print(f"{len(docs)} Kubernetes objects ({', '.join(kinds)}) and the swarm stack: consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
