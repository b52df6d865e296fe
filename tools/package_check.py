"""Offline checks of what lifecycled ships: the image, the Helm chart, the AWS templates.

    make package-check        (installs the tools into .venv first)
    python tools/package_check.py [--keep DIR]

Each scenario in helm/lifecycled/ci/*.yaml is rendered with `helm template` and checked:
the built-in kinds against Kubernetes 1.32's and 1.25's schemas (kubernetes-validate --strict), the
Prometheus Operator kinds (no schema offline) by their structure and PromQL, and all of it
against the code: the container's environment must load as lifecycled's Settings, the RBAC
rules must be exactly the API calls lifecycled/clients/ makes, the alerts may only use
metrics and labels lifecycled/observe.py defines. The CloudFormation template is linted and
its EventBridge rules compared with lifecycled/rules.py.
The wheel is built (pip takes setuptools from its cache or PyPI) and must hold lifecycled/ only:
no devstack/, no module importing the test stack.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "lifecycled"
DASHBOARD = CHART / "dashboards" / "lifecycled.json"
BIN = Path(sys.executable).parent
# The version the brief targets, and the oldest the chart admits (Chart.yaml kubeVersion).
KUBERNETES_VERSIONS = ("1.32.0", "1.25.0")
NAMESPACE = "lifecycled"
RELEASE = "lifecycled"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

Doc = dict[str, Any]


class CheckFailed(Exception):
    pass


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    expect(found, f"{name} is not installed: run `make package-check` (it installs the tools)")
    return str(found)


def run(*cmd: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if ok and done.returncode != 0:
        raise CheckFailed(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}".rstrip())
    return done


# --- values ------------------------------------------------------------------------------


def merged(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: merged(base[k], over[k]) if k in base else over[k] for k in over} | {
            k: v for k, v in base.items() if k not in over
        }
    return over


def scenario_values(path: Path) -> Doc:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return merged(defaults, yaml.safe_load(path.read_text()) or {})  # type: ignore[no-any-return]


def render(*args: str) -> list[Doc]:
    done = run(tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def fullname(values: Doc) -> str:
    return str(values.get("fullnameOverride") or RELEASE)  # release name contains the chart's


# --- what the code does ------------------------------------------------------------------

VERBS = {"read": "get", "list": "list", "patch": "patch", "create": "create",
         "delete": "delete", "replace": "update"}  # fmt: skip
GROUPS = {"_core": "", "_batch": "batch"}


def api_permission(group: str, method: str) -> tuple[str, str, str]:
    """kubernetes_asyncio method name -> (apiGroup, resource, verb)."""
    verb, _, rest = method.partition("_")
    rest = rest.removesuffix("_for_all_namespaces").removeprefix("namespaced_")
    resource, _, sub = rest.partition("_")
    plural = resource + ("es" if resource.endswith("s") else "s")
    return group, f"{plural}/{sub}" if sub else plural, VERBS[verb]


# Allowed to every authenticated account (the default ClusterRole system:basic-user): not
# in the chart's ClusterRole. `lifecycled check` asks with it (KubeClient.can).
EVERYONE = {"create_self_subject_access_review"}


def request_permission(node: ast.AST) -> tuple[str, str, str] | None:
    """The permission one `self._request("op", self._core.read_node, ...)` call needs; None
    for a call that is not one, or that every account may make (EVERYONE)."""
    if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "_request"):
        return None
    target = node.args[1]
    assert isinstance(target, ast.Attribute), ast.unparse(node)
    if target.attr in EVERYONE:
        return None
    assert isinstance(target.value, ast.Attribute), ast.unparse(node)
    return api_permission(GROUPS[target.value.attr], target.attr)


def kube_permissions() -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) behind KubeClient's calls in lifecycled/clients/kube.py."""
    tree = ast.parse((ROOT / "lifecycled" / "clients" / "kube.py").read_text())
    found = {p for node in ast.walk(tree) if (p := request_permission(node))}
    expect(found, "found no Kubernetes calls in clients/kube.py")
    return found


def kube_client_methods() -> dict[str, set[tuple[str, str, str]]]:
    """KubeClient method -> the permissions its _request calls need."""
    tree = ast.parse((ROOT / "lifecycled" / "clients" / "kube.py").read_text())
    methods: dict[str, set[tuple[str, str, str]]] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef):
            for node in ast.walk(fn):
                if perm := request_permission(node):
                    methods.setdefault(fn.name, set()).add(perm)
    return methods


REQUEUE_CLASSES = {"_JobTarget", "_PodTarget"}  # lifecycled/platforms/kube_jobs.py


def requeue_permissions() -> set[tuple[str, str, str]]:
    """What only requeueing needs: KubeClient methods the requeue targets call and no other
    product code does (jobs.requeue.enabled=false leaves these out of the ClusterRole)."""
    methods = kube_client_methods()
    in_requeue: set[str] = set()
    elsewhere: set[str] = set()
    for path in (ROOT / "lifecycled").rglob("*.py"):
        if path.name == "kube.py" and path.parent.name == "clients":
            continue
        tree = ast.parse(path.read_text())
        requeue_nodes = {
            id(n)
            for c in ast.walk(tree)
            if isinstance(c, ast.ClassDef) and c.name in REQUEUE_CLASSES
            for n in ast.walk(c)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in methods:
                (in_requeue if id(node) in requeue_nodes else elsewhere).add(node.attr)
    expect(in_requeue, f"found no Kubernetes calls in {sorted(REQUEUE_CLASSES)}")
    only = in_requeue - elsewhere
    return {perm for m in only for perm in methods[m]} - {
        perm for m in elsewhere for perm in methods[m]
    }


def lease_permissions() -> set[tuple[str, str, str]]:
    """What the client library's LeaseLock (used by clients/leader.py) calls."""
    from kubernetes_asyncio.leaderelection.resourcelock import leaselock

    methods = set(re.findall(r"api_instance\.(\w+)\(", inspect.getsource(leaselock)))
    expect(methods, "found no calls in kubernetes_asyncio's LeaseLock")
    return {api_permission("coordination.k8s.io", m) for m in methods}


def rbac_rules(doc: Doc) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in doc.get("rules", [])
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def metric_names() -> dict[str, set[str]]:
    """Exposed series names -> label names, from lifecycled's own Metrics."""
    from prometheus_client import Counter, Gauge, Histogram

    from lifecycled.observe import Metrics

    names: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        labels = set(getattr(metric, "_labelnames", ()))
        if isinstance(metric, Counter):
            suffixes = ["_total", "_created"]
        elif isinstance(metric, Histogram):
            suffixes, labels = ["_bucket", "_sum", "_count", "_created"], labels | {"le"}
        elif isinstance(metric, Gauge):
            suffixes = [""]
        else:
            continue
        for suffix in suffixes:
            names[metric._name + suffix] = labels
    return names


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("LIFECYCLED_", "POD_", "NODE_NAME")):
            del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


FIELD_REFS = {"metadata.name": "lifecycled-abc12", "metadata.namespace": NAMESPACE,
              "spec.nodeName": "ip-10-0-0-1.ec2.internal"}  # fmt: skip


def container_env(container: Doc) -> dict[str, str]:
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            env[var["name"]] = FIELD_REFS[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


# --- checks of one rendered scenario -----------------------------------------------------

TARGET_LABELS = {"namespace", "job", "pod", "instance", "service", "container", "endpoint"}


def check_workload(values: Doc, docs: list[Doc]) -> None:
    from lifecycled.settings import ENVIRONMENT, load_settings

    kinds = [d["kind"] for d in docs]
    want = "DaemonSet" if values["mode"] == "imds" else "Deployment"
    expect(kinds.count(want) == 1, f"expected one {want}, got {kinds}")
    expect({"Deployment", "DaemonSet"} & set(kinds) == {want}, f"both workload kinds: {kinds}")
    workload = next(d for d in docs if d["kind"] == want)
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    security, pod_security = container["securityContext"], pod.get("securityContext", {})
    expect(security.get("readOnlyRootFilesystem") is True, "root filesystem not read-only")
    expect(security.get("allowPrivilegeEscalation") is False, "privilege escalation allowed")
    expect(security.get("capabilities", {}).get("drop") == ["ALL"], "capabilities not dropped")
    expect(
        security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, "may run as root"
    )
    expect(not str(container["image"]).endswith(":latest"), "image tag latest")
    host_network = values["mode"] == "imds" and values["daemonset"]["hostNetwork"]
    expect(pod.get("hostNetwork", False) is host_network, "hostNetwork differs from the values")

    env = container_env(container)
    names = [v["name"] for v in container["env"]]
    expect(len(names) == len(set(names)), f"duplicate environment variables: {names}")
    unknown = {n for n in env if n.startswith("LIFECYCLED_") and n not in ENVIRONMENT}
    expect(not unknown, f"variables lifecycled does not read: {sorted(unknown)}")
    with environment(env):
        settings = load_settings()
    expect(settings.source == ("imds" if values["mode"] == "imds" else "sqs"), "source")
    expect(settings.platform == values["platform"], "platform")
    expect(settings.ha.leader_election is bool(values["leaderElection"]["enabled"]), "election")
    expect(settings.ha.lease_namespace == NAMESPACE, "the Lease is not in the release namespace")
    expect(settings.ha.identity == FIELD_REFS["metadata.name"], "identity is not POD_NAME")
    port = settings.observe.metrics_host_port[1]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    expect(ports.get("metrics") == port == values["metrics"]["port"], "metrics port mismatch")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        expect(get["path"] == path and get["port"] in ("metrics", port), f"{probe} not {path}")
    expect(env.get("POD_NAMESPACE") and env.get("POD_NAME"), "no downward API POD_NAME/NAMESPACE")
    # Queue mode needs a region to open lifecycled's clients at start-up; a DaemonSet pod
    # falls back to its instance's own (placement/region).
    in_url = re.findall(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com/", values["queueUrl"])
    region = values["aws"]["region"] or (in_url[0] if in_url else None)
    if region or values["mode"] == "queue":
        expect(region and env.get("AWS_REGION") == region, f"AWS_REGION is not {region}")

    requeue = values["jobs"]["requeue"]
    expect(settings.jobs.requeue_enabled is bool(requeue["enabled"]), "requeue_enabled")
    wanted_namespaces = set(requeue["namespaces"]) if requeue["enabled"] else set()
    expect(settings.jobs.requeue_namespaces == wanted_namespaces, "requeue_namespaces")
    tag = values["image"]["tag"] or yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    expect(str(container["image"]).startswith(f"{values['image']['repository']}:{tag}"), "tag")

    if values["mode"] == "imds":
        check_placement(values, pod)
        expect(settings.imds.node_name == FIELD_REFS["spec.nodeName"], "NODE_NAME not from spec")
        tolerations = pod.get("tolerations", [])
        expect(
            any(t.get("operator") == "Exists" and "key" not in t for t in tolerations)
            or any(t.get("key") == "lifecycled.io/draining" for t in tolerations),
            "the DaemonSet does not tolerate lifecycled.io/draining",
        )
    else:
        expect(workload["spec"]["replicas"] == values["replicaCount"], "replicas")
        expect(
            any(d["kind"] == "PodDisruptionBudget" for d in docs)
            is bool(values["podDisruptionBudget"]["enabled"]),
            "PodDisruptionBudget",
        )


FARGATE = {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["fargate"]}


def check_placement(values: Doc, pod: Doc) -> None:
    """The DaemonSet: Linux nodes only, never Fargate's virtual nodes (unless told otherwise),
    and the user's own nodeSelector and affinity kept."""
    os_name = values["daemonset"]["targetNodeOs"]
    selector = pod.get("nodeSelector", {})
    expect(selector.get("kubernetes.io/os") == (os_name or None), f"os selector {selector}")
    expect(values["nodeSelector"].items() <= selector.items(), "nodeSelector not kept")
    required = (
        pod.get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
    )
    terms = required.get("nodeSelectorTerms", [])
    theirs = (
        values["affinity"]
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms", [])
    )
    if values["daemonset"]["excludeFargate"]:
        expect(terms and all(FARGATE in t.get("matchExpressions", []) for t in terms), "Fargate")
        expect(len(terms) == max(1, len(theirs)), "nodeSelectorTerms added or lost")
        for mine, their in zip(terms, theirs, strict=False):
            kept = [e for e in mine["matchExpressions"] if e != FARGATE]
            expect(kept == their.get("matchExpressions", []), "affinity terms not kept")
    else:
        expect(terms == theirs, "affinity changed without excludeFargate")


def check_rbac(values: Doc, docs: list[Doc]) -> None:
    by_kind: dict[str, list[Doc]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    cluster_roles = by_kind.get("ClusterRole", [])
    requeue = values["jobs"]["requeue"]
    namespaces = requeue["namespaces"] if requeue["enabled"] else []
    roles = by_kind.get("Role", [])
    requeue_roles = [r for r in roles if r["metadata"]["name"].endswith("-requeue")]
    if values["platform"] == "kubernetes":
        expect(len(cluster_roles) == 1, "expected one ClusterRole")
        granted, needed = rbac_rules(cluster_roles[0]), kube_permissions()
        only_requeue = requeue_permissions()
        expect(
            {("", "pods", "create"), ("", "pods", "delete"), ("batch", "jobs", "create")}
            <= only_requeue,
            f"requeue-only permissions {sorted(only_requeue)}",
        )
        if not requeue["enabled"] or namespaces:
            needed = needed - only_requeue
        expect(needed <= granted, f"ClusterRole lacks {sorted(needed - granted)}")
        expect(granted <= needed, f"ClusterRole grants unused {sorted(granted - needed)}")
        in_roles = sorted(r["metadata"]["namespace"] for r in requeue_roles)
        expect(in_roles == sorted(namespaces), f"requeue Roles in {in_roles}, not {namespaces}")
        for role in requeue_roles:
            expect(rbac_rules(role) == only_requeue, f"requeue Role grants {rbac_rules(role)}")
        bound = sorted(
            b["metadata"]["namespace"]
            for b in by_kind.get("RoleBinding", [])
            if b["roleRef"]["name"].endswith("-requeue")
        )
        expect(bound == sorted(namespaces), f"requeue RoleBindings in {bound}")
    else:
        expect(not cluster_roles, "platform ecs needs no ClusterRole")
        expect(not requeue_roles, "platform ecs needs no requeue Role")
    roles = [r for r in roles if r not in requeue_roles]
    if values["leaderElection"]["enabled"]:
        expect(len(roles) == 1, "expected one Role for the Lease")
        granted = {(g, r, v) for g, r, v in rbac_rules(roles[0])}
        expect(granted == lease_permissions(), f"Lease Role {granted} != {lease_permissions()}")
        named = [r for r in roles[0]["rules"] if r.get("resourceNames")]
        lease = values["leaderElection"]["leaseName"] or fullname(values)
        expect(all(r["resourceNames"] == [lease] for r in named), "Role names another Lease")
    else:
        expect(not roles, "a Role without leader election")
    accounts = by_kind.get("ServiceAccount", [])
    role_arn = values["serviceAccount"]["roleArn"]
    if role_arn:
        annotations = accounts[0]["metadata"].get("annotations", {})
        expect(annotations.get("eks.amazonaws.com/role-arn") == role_arn, "IRSA annotation")


def check_monitoring(values: Doc, docs: list[Doc]) -> None:
    import promql_parser

    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    metrics = values["metrics"]
    expect(bool(monitors) is bool(metrics["serviceMonitor"]["enabled"]), "ServiceMonitor")
    expect(bool(rules) is bool(metrics["prometheusRule"]["enabled"]), "PrometheusRule")
    for monitor in monitors:
        expect(monitor["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
        service = next(d for d in docs if d["kind"] == "Service")
        expect(
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items(),
            "the ServiceMonitor does not select the Service",
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        expect(endpoint["port"] == service["spec"]["ports"][0]["name"], "endpoint port")
    known = metric_names()
    for rule_doc in rules:
        expect(rule_doc["apiVersion"] == "monitoring.coreos.com/v1", "PrometheusRule apiVersion")
        alerts = [r for g in rule_doc["spec"]["groups"] for r in g["rules"]]
        expect(alerts, "a PrometheusRule without rules")
        for alert in alerts:
            name = alert.get("alert")
            expect(isinstance(name, str) and name, f"rule without an alert name: {alert}")
            expect(set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, name)
            expect(alert["labels"].get("severity") in ("critical", "warning", "info"), name)
            expect({"summary", "description", "runbook_url"} <= set(alert["annotations"]), name)
            check_runbook(name, alert["annotations"]["runbook_url"])
            expect(re.fullmatch(r"\d+[smhd]", alert.get("for", "0s")), f"{name}: for")
            try:
                expr = promql_parser.parse(alert["expr"])
            except ValueError as exc:
                raise CheckFailed(f"{name}: PromQL does not parse: {exc}") from exc
            check_selectors(name, expr, known)
        disabled = set(metrics["prometheusRule"]["disabled"])
        expect(not disabled & {a["alert"] for a in alerts}, "a disabled alert is rendered")
        headline = "LifecycledForcedTermination"
        expect(headline in disabled or any(a["alert"] == headline for a in alerts), headline)


def check_dashboard(values: Doc, docs: list[Doc]) -> None:
    """The Grafana dashboard ConfigMap: Grafana's sidecar label, the file as it is, and every
    expression parsing and naming only metrics (and labels) lifecycled exports."""
    import json

    import promql_parser

    wanted = values["metrics"]["grafanaDashboard"]
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {})
    ]
    expect(len(maps) == (1 if wanted["enabled"] else 0), "dashboard ConfigMap")
    known = metric_names()
    for cm in maps:
        label = cm["metadata"]["labels"]["grafana_dashboard"]
        expect(label == str(wanted["labelValue"]), f"grafana_dashboard label {label!r}")
        (text,) = cm["data"].values()
        dashboard = json.loads(text)
        expect(dashboard == json.loads(DASHBOARD.read_text()), "the ConfigMap is not the file")
        targets = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
        expect(targets, "a dashboard without queries")
        for title, text in targets:
            where = f"dashboard panel {title!r}"
            try:
                expr = promql_parser.parse(text.replace("$job", "x"))
            except ValueError as exc:
                raise CheckFailed(f"{where}: PromQL does not parse: {exc}") from exc
            check_selectors(where, expr, known)
        for variable in dashboard.get("templating", {}).get("list", []):
            for name in re.findall(r"label_values\((\w+)", str(variable.get("query", ""))):
                expect(name in known, f"dashboard variable {variable['name']}: no metric {name}")


def runbook_anchors() -> set[str]:
    """docs/runbooks.md's section anchors, as GitHub spells them."""
    text = (ROOT / "docs" / "runbooks.md").read_text()
    headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def check_runbook(alert: str, url: str) -> None:
    base, _, anchor = url.partition("#")
    expect(base.endswith("docs/runbooks.md"), f"{alert}: runbook_url {url}")
    expect(anchor in runbook_anchors(), f"{alert}: no section #{anchor} in docs/runbooks.md")


def check_selectors(alert: str, expr: Any, known: dict[str, set[str]]) -> None:
    import promql_parser

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name
            expect(name == "up" or name in known, f"{alert}: no metric {name!r} in observe.py")
            labels = known.get(name, set())
            for matcher in node.matchers.matchers:
                expect(
                    matcher.name in labels | TARGET_LABELS,
                    f"{alert}: {name} has no label {matcher.name!r}",
                )
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            for label in node.modifier.labels:
                expect(
                    label in TARGET_LABELS or any(label in ls for ls in known.values()),
                    f"{alert}: aggregates by unknown label {label!r}",
                )

    promql_parser.walk(expr, visit)


# --- steps -------------------------------------------------------------------------------

STEPS: list[tuple[str, Callable[[argparse.Namespace], None]]] = []


def step(name: str) -> Callable[[Callable[[argparse.Namespace], None]], Any]:
    def register(fn: Callable[[argparse.Namespace], None]) -> Any:
        STEPS.append((name, fn))
        return fn

    return register


@step("values.schema.json matches lifecycled's settings")
def schema_fresh(_: argparse.Namespace) -> None:
    import chart_schema

    expect(chart_schema.main([]) == 0, "values.schema.json is stale")


@step("one version: pyproject.toml, Chart.yaml appVersion, the Dockerfile's VERSION")
def versions(_: argparse.Namespace) -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    expect(chart["appVersion"] == version, f"Chart.yaml appVersion is not {version}")
    dockerfile = (ROOT / "Dockerfile").read_text()
    expect(f"ARG VERSION={version}\n" in dockerfile, f"the Dockerfile's VERSION is not {version}")


@step("hadolint Dockerfile")
def hadolint(_: argparse.Namespace) -> None:
    run(tool("hadolint"), "--failure-threshold", "info", "Dockerfile")


@step("helm lint --strict, each scenario")
def helm_lint(_: argparse.Namespace) -> None:
    for values in sorted((CHART / "ci").glob("*.yaml")):
        run(tool("helm"), "lint", "--strict", str(CHART), "-f", str(values), "--quiet")


@step("helm template | kubernetes-validate --strict (1.32, 1.25); RBAC, alerts, dashboard vs code")
def helm_template(args: argparse.Namespace) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    expect(defaults["daemonset"]["hostNetwork"] is False, "hostNetwork must stay opt-in")
    expect(defaults["mode"] == "imds", "the defaults must render (IMDS mode needs no queue)")
    expect(defaults["jobs"]["requeue"]["enabled"] is True, "requeueing is on by default")
    expect(
        defaults["daemonset"]["targetNodeOs"] == "linux"
        and defaults["daemonset"]["excludeFargate"],
        "the DaemonSet defaults to Linux, non-Fargate nodes",
    )
    names = {p.name for p in (CHART / "ci").glob("*.yaml")}
    expect({"default-values.yaml", "requeue-off-values.yaml"} <= names, "scenarios missing")
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="package-check-"))
    out.mkdir(parents=True, exist_ok=True)
    rendered = []
    try:
        for path in sorted((CHART / "ci").glob("*.yaml")):
            values = scenario_values(path)
            docs = render("-f", str(path))
            builtin = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com")]
            target = out / path.name.replace("-values", "")
            target.write_text(yaml.safe_dump_all(builtin, sort_keys=False))
            rendered.append(str(target))
            try:
                check_workload(values, docs)
                check_rbac(values, docs)
                check_monitoring(values, docs)
                check_dashboard(values, docs)
            except CheckFailed as exc:
                raise CheckFailed(f"{path.name}: {exc}") from exc
        for version in KUBERNETES_VERSIONS:
            run(tool("kubernetes-validate"), "-k", version, "--strict", "--quiet", *rendered)
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)


@step("NOTES.txt renders for each scenario")
def notes(_: argparse.Namespace) -> None:
    # helm template skips NOTES.txt; a copy of the chart renders it as a ConfigMap-like value.
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "lifecycled"
        shutil.copytree(CHART, chart)
        text = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "zz-notes.yaml").write_text(
            '{{- define "package-check.notes" }}' + text + "{{- end }}\n"
            'notes: {{ include "package-check.notes" . | toJson }}\n'
        )
        for path in sorted((CHART / "ci").glob("*.yaml")):
            done = run(tool("helm"), "template", RELEASE, str(chart), "-f", str(path),
                       "--show-only", "templates/zz-notes.yaml")  # fmt: skip
            rendered = yaml.safe_load(done.stdout)["notes"]
            expect("lifecycled" in rendered, f"{path.name}: NOTES.txt rendered {rendered!r}")
            expect("<no value>" not in rendered, f"{path.name}: NOTES.txt has <no value>")


Q = ["--set", "mode=queue", "--set", "queueUrl=https://q"]
IMDS = ["--set", "mode=imds"]
REFUSED = [
    ("queue mode without a queue", ["--set", "mode=queue"], "queueUrl is required"),
    ("imds on ECS", ["--set", "mode=imds", "--set", "platform=ecs"], "needs platform kubernetes"),
    ("two consumers without a leader", [*Q, "--set", "replicaCount=2"], "needs leaderElection"),
    ("an unknown node OS", ["--set", "daemonset.targetNodeOs=windows"], "targetNodeOs"),
    ("a misspelt setting", [*Q, "--set", "config.rebalance_actoin=drain"], "rebalance_actoin"),
    ("a setting the chart owns", [*Q, "--set", "config.source=imds"], "source"),
    ("an unknown mode", ["--set", "mode=sidecar"], "mode"),
    ("out of bounds", [*Q, "--set", "config.heartbeat_fraction=1.5"], "heartbeat_fraction"),
    ("a grace shorter than the shutdown", [*Q, "--set", "config.shutdown_grace_seconds=60"],
     "must exceed config.shutdown_grace_seconds"),
    ("requeue namespaces with requeueing off",
     ["--set", "jobs.requeue.enabled=false", "--set", "jobs.requeue.namespaces={batch}"],
     "jobs.requeue.namespaces needs jobs.requeue.enabled"),
    ("a requeue setting the chart owns", ["--set", "config.requeue_enabled=false"],
     "requeue_enabled"),
    ("leader election in imds mode", [*IMDS, "--set", "leaderElection.enabled=true"],
     "leaderElection is for queue mode"),
]  # fmt: skip


@step("helm template refuses bad combinations")
def helm_refuses(_: argparse.Namespace) -> None:
    for what, extra, message in REFUSED:
        done = run(tool("helm"), "template", RELEASE, str(CHART), *extra, ok=False)
        expect(done.returncode != 0, f"rendered {what}")
        expect(message in done.stderr, f"{what}: unexpected error {done.stderr.strip()!r}")


@step("cfn-lint deploy/cloudformation/*.yaml")
def cfn_lint(_: argparse.Namespace) -> None:
    templates = sorted(str(p) for p in (ROOT / "deploy" / "cloudformation").glob("*.yaml"))
    expect(templates, "no CloudFormation templates")
    run(tool("cfn-lint"), *templates)


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short intrinsics (!Ref, !GetAtt...) as {"Fn::X": value}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


@step("queue.yaml: the EventBridge rules are rules.py's, the queue takes only them")
def queue_template(_: argparse.Namespace) -> None:
    from lifecycled.rules import EVENT_RULES

    template = yaml.load((ROOT / "deploy/cloudformation/queue.yaml").read_text(), CfnLoader)
    resources = {k: v for k, v in template["Resources"].items() if not k.startswith("Fn::")}
    rules = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::Events::Rule"}
    patterns = sorted(yaml.safe_dump(p["EventPattern"], sort_keys=True) for p in rules.values())
    wanted = sorted(yaml.safe_dump(r.pattern, sort_keys=True) for r in EVENT_RULES)
    expect(patterns == wanted, "the template's event patterns differ from rules.py's")
    queues = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::SQS::Queue"}
    for name, queue in queues.items():
        expect(queue.get("SqsManagedSseEnabled") or queue.get("KmsMasterKeyId"), f"{name}: SSE")
    redrive = [q for q in queues.values() if "RedrivePolicy" in q]
    expect(len(redrive) == 1, "one queue with a dead-letter queue")
    (policy,) = [v for v in resources.values() if v["Type"] == "AWS::SQS::QueuePolicy"]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    expect(allow["Principal"] == {"Service": "events.amazonaws.com"}, "principal")
    expect(allow["Action"] == "sqs:SendMessage", "the rules may only send")
    sources = allow["Condition"]["ArnEquals"]["aws:SourceArn"]
    expect(sorted(s["Fn::GetAtt"][0] for s in sources) == sorted(rules), "SourceArn != the rules")
    for name, rule in rules.items():
        (target,) = rule["Targets"]
        expect(target["Arn"] == {"Fn::GetAtt": ["Queue", "Arn"]}, f"{name} targets the queue")


# The template's Sub variables -> the docs' placeholders (docs/iam-*.json).
PLACEHOLDERS = [("${AWS::Partition}", "aws"), ("${AWS::Region}", "REGION"),
                ("${AWS::AccountId}", "ACCOUNT"), ("${QueueName}-dlq", "NOTICE_QUEUE_DLQ"),
                ("${QueueName}", "NOTICE_QUEUE"), ("${RequeueQueueName}", "REQUEUE_QUEUE"),
                ("${AutoScalingGroupNamePrefix}", "ASG_NAME_PREFIX"),
                ("${TargetGroupNamePrefix}", "TARGET_GROUP_PREFIX"),
                ("${ClassicElbName}", "CLASSIC_ELB_NAME"), ("${EcsClusterName}", "CLUSTER"),
                ("${JobTaskRolePrefix}", "JOB_TASK_ROLES"),
                ("${NotifyTopicName}", "NOTIFY_TOPIC")]  # fmt: skip


def as_documented(value: Any) -> Any:
    """A template policy with its conditions taken and its !Sub variables as placeholders."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"]
        for var, placeholder in PLACEHOLDERS:
            text = text.replace(var, placeholder)
        expect("${" not in text, f"unknown variable in {text}")
        return text
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        return as_documented(value["Fn::If"][1])  # the optional statement, when wanted
    if isinstance(value, dict):
        return {k: as_documented(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_documented(v) for v in value]
    return value


@step("queue.yaml: hooks per named group; the IRSA role's policies are docs/iam-*.json")
def queue_template_role(_: argparse.Namespace) -> None:
    import json

    template = yaml.load((ROOT / "deploy/cloudformation/queue.yaml").read_text(), CfnLoader)
    resources = template["Resources"]
    (hooks,) = [v for k, v in resources.items() if k.startswith("Fn::ForEach::")]
    (hook,) = hooks[2].values()
    expect(hooks[1] == {"Ref": "HookGroupNames"}, "hooks are not one per HookGroupNames")
    props = hook["Properties"]
    expect(props["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING", "transition")
    expect("NotificationTargetARN" not in props, "hooks notify through EventBridge, not a target")
    expect(hook["Condition"] == "HasHookGroups", "an empty HookGroupNames makes a hook")
    for name, doc in (("KubernetesPolicy", "iam-kubernetes.json"), ("EcsPolicy", "iam-ecs.json")):
        policy = as_documented(resources[name]["Properties"]["PolicyDocument"])
        documented = json.loads((ROOT / "docs" / doc).read_text())
        expect(policy == documented, f"{name} differs from docs/{doc}")
    trust = resources["Role"]["Properties"]["AssumeRolePolicyDocument"]["Fn::Sub"]
    expect("sts:AssumeRoleWithWebIdentity" in trust, "the role is not for IRSA")
    expect(
        "system:serviceaccount:${ServiceAccountNamespace}:${ServiceAccountName}" in trust,
        "the role is not limited to lifecycled's service account",
    )


def unquoted(value: Any) -> Any:
    """python-hcl2 keeps string literals' quotes (and `__comments__`): plain values."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {unquoted(k): unquoted(v) for k, v in value.items() if k != "__comments__"}
    if isinstance(value, list):
        return [unquoted(v) for v in value]
    return value


def terraform() -> dict[str, Any]:
    """deploy/terraform/*.tf parsed (terraform itself is not installable offline)."""
    import hcl2

    found: dict[str, Any] = {"locals": {}, "resource": {}, "variable": {}}
    for path in sorted((ROOT / "deploy" / "terraform").glob("*.tf")):
        try:
            parsed = unquoted(hcl2.loads(path.read_text()))
        except Exception as exc:  # the parser's own errors (lark's) have no common base
            raise CheckFailed(f"{path.name} does not parse: {exc}") from exc
        for block in parsed.get("locals", []):
            found["locals"].update(block)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                found["resource"].setdefault(kind, {}).update(named)
        for block in parsed.get("variable", []):
            found["variable"].update(block)
    return found


@step("deploy/terraform parses; its rules, queues and hooks are the CloudFormation stack's")
def terraform_module(_: argparse.Namespace) -> None:
    from lifecycled.rules import EVENT_RULES

    tf = terraform()
    template = yaml.load((ROOT / "deploy/cloudformation/queue.yaml").read_text(), CfnLoader)
    resources, params = template["Resources"], template["Parameters"]
    rules = tf["locals"]["rules"]
    wanted = {r.name.removeprefix("lifecycled-"): r.pattern for r in EVENT_RULES}
    expect(rules == wanted, "the module's event patterns differ from rules.py's")
    cfn_rules = {v["Properties"]["Name"]["Fn::Sub"].removeprefix("${QueueName}-")
                 for v in resources.values() if isinstance(v, dict)
                 and v.get("Type") == "AWS::Events::Rule"}  # fmt: skip
    expect(set(rules) == cfn_rules, f"rule names {sorted(rules)} != {sorted(cfn_rules)}")
    queues = tf["resource"]["aws_sqs_queue"]
    cfn_queue = resources["Queue"]["Properties"]
    queue = queues["queue"]
    expect(queue["receive_wait_time_seconds"] == cfn_queue["ReceiveMessageWaitTimeSeconds"], "wait")
    expect(queue["visibility_timeout_seconds"] == cfn_queue["VisibilityTimeout"], "visibility")
    expect(all(q["sqs_managed_sse_enabled"] is True for q in queues.values()), "SSE")
    expect("maxReceiveCount = var.max_receive_count" in queue["redrive_policy"], "redrive")
    variables = tf["variable"]
    for var, param in (("max_receive_count", "MaxReceiveCount"),
                       ("message_retention_seconds", "MessageRetentionSeconds"),
                       ("dead_letter_retention_seconds", "DeadLetterRetentionSeconds"),
                       ("hook_heartbeat_timeout", "HookHeartbeatTimeout"),
                       ("hook_default_result", "HookDefaultResult"),
                       ("queue_name", "QueueName")):  # fmt: skip
        expect(variables[var]["default"] == params[param]["Default"], f"{var} default")
    hook = tf["resource"]["aws_autoscaling_lifecycle_hook"]["terminate"]
    expect(hook["lifecycle_transition"] == "autoscaling:EC2_INSTANCE_TERMINATING", "hook")
    expect(hook["for_each"] == "${toset(var.hook_group_names)}", "a hook per named group")
    targets = tf["resource"]["aws_cloudwatch_event_target"]["queue"]
    expect(targets["arn"] == "${aws_sqs_queue.queue.arn}", "the rules target the queue")
    policy = tf["resource"]["aws_sqs_queue_policy"]["queue"]["policy"]
    expect("aws_cloudwatch_event_rule.rule" in policy and "events.amazonaws.com" in policy,
           "the queue policy does not limit senders to the rules")  # fmt: skip
    documented = {"docs/iam-${var.role_policy}.json" in str(tf["locals"].get("documented"))}
    expect(documented == {True}, "the role's policy is not read from docs/iam-*.json")
    optional = tf["locals"]["optional"]
    cfn_optional = {
        s["Fn::If"][1]["Sid"]
        for s in resources["KubernetesPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        if "Fn::If" in s
    }
    expect(set(optional) == cfn_optional, f"optional statements {sorted(optional)}")
    filled = str(tf["locals"]["filled"])
    for doc in ("iam-kubernetes.json", "iam-ecs.json"):
        for placeholder in sorted(set(re.findall(r"\b[A-Z][A-Z_]{2,}\b", doc_resources(doc)))):
            expect(f'"{placeholder}"' in filled, f"the module leaves {placeholder} in docs/{doc}")


def doc_resources(doc: str) -> str:
    """The Resource strings of docs/<doc>'s statements, one text."""
    import json

    statements = json.loads((ROOT / "docs" / doc).read_text())["Statement"]
    return " ".join(
        r
        for s in statements
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    )


# What only the tests, the demos and the benchmarks use: the product must never import it.
DEV_ONLY_IMPORTS = frozenset({"devstack", "moto", "boto3", "pytest", "tests"})


def dev_only_imports(source: str) -> set[str]:
    """The DEV_ONLY_IMPORTS names `source` imports (absolute imports; the top-level name)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.partition(".")[0] for name in names} & DEV_ONLY_IMPORTS
    return found


@step("the wheel: lifecycled only, no devstack, no module importing moto or devstack")
def wheel(_: argparse.Namespace) -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with tempfile.TemporaryDirectory(prefix="package-check-wheel-") as tmp:
        # A clean copy: setuptools reuses build/, so a stale build/lib could reach the wheel.
        source, dist = Path(tmp) / "source", Path(tmp) / "dist"
        skip = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skip))
        run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(dist),
            str(source),
        )
        (built,) = dist.glob("lifecycled-*.whl")
        with zipfile.ZipFile(built) as whl:
            names = whl.namelist()
            info = f"lifecycled-{version}.dist-info"
            tops = {name.partition("/")[0] for name in names}
            expect(tops == {"lifecycled", info}, f"the wheel holds more than lifecycled: {tops}")
            expect(whl.read(f"{info}/top_level.txt").split() == [b"lifecycled"], "top_level.txt")
            expect(not [n for n in names if "devstack" in n], "the wheel holds devstack files")
            for needed in (
                "lifecycled/py.typed",
                "lifecycled/rules.py",
                "lifecycled/cli.py",
                "lifecycled/clients/aws/models/ec2/2016-11-15/service-2.json",
            ):
                expect(needed in names, f"the wheel lacks {needed}")
            for name in names:
                if name.endswith(".py"):
                    found = dev_only_imports(whl.read(name).decode())
                    expect(not found, f"{name} (in the wheel) imports {', '.join(sorted(found))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="keep the rendered manifests in DIR")
    args = parser.parse_args()
    started = time.monotonic()
    failed = 0
    for name, fn in STEPS:
        t0 = time.monotonic()
        try:
            fn(args)
        except CheckFailed as exc:
            failed += 1
            print(
                f"FAIL {name} ({time.monotonic() - t0:.1f}s)\n  " + str(exc).replace("\n", "\n  ")
            )
        else:
            print(f"ok   {name} ({time.monotonic() - t0:.1f}s)")
    print(f"package-check took {time.monotonic() - started:.1f}s")
    print(f"package-check: {len(STEPS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
