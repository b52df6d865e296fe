"""The resource types the emulator serves, and the discovery documents describing them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import JSON

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    # Field selectors this resource supports besides metadata.name/metadata.namespace.
    fields: tuple[str, ...] = ()
    # Default for DeleteOptions.propagationPolicy when the client sends none.
    default_propagation: str = "Background"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Unique name, `plural` or `plural.group`, used by the store."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def discovery_entries(self) -> list[JSON]:
        main: JSON = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ALL_VERBS,
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        entries = [main]
        if self.has_status:
            entries.append(_sub(self, "status", self.kind, ["get", "patch", "update"]))
        if self.key == "pods":
            eviction = _sub(self, "eviction", "Eviction", ["create"])
            eviction.update(group="policy", version="v1")
            entries.append(eviction)
        return entries


def _sub(res: Resource, name: str, kind: str, verbs: list[str]) -> JSON:
    return {
        "name": f"{res.plural}/{name}",
        "singularName": "",
        "namespaced": res.namespaced,
        "kind": kind,
        "verbs": verbs,
    }


POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", False, ("ns",), True, ("status.phase",)),
    Resource("", "v1", "Node", "nodes", False, ("no",), True, ("spec.unschedulable",)),
    Resource("", "v1", "Pod", "pods", True, ("po",), True, POD_FIELDS),
    Resource("", "v1", "Event", "events", True, ("ev",), False, EVENT_FIELDS),
    Resource("", "v1", "Service", "services", True, ("svc",), True),
    Resource("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    Resource("apps", "v1", "Deployment", "deployments", True, ("deploy",), True),
    Resource("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), True, ("status.replicas",)),
    Resource("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), True),
    Resource("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), True),
    # batch/v1 Jobs orphan their pods unless told otherwise (legacy default kept by the API).
    Resource("batch", "v1", "Job", "jobs", True, (), True, ("status.successful",), "Orphan"),
    Resource("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",), True),
    Resource("coordination.k8s.io", "v1", "Lease", "leases", True),
    Resource("events.k8s.io", "v1", "Event", "events", True, ("ev",)),
)

BY_KEY: dict[str, Resource] = {r.key: r for r in RESOURCES}
BY_PATH: dict[tuple[str, str, str], Resource] = {
    (r.group, r.version, r.plural): r for r in RESOURCES
}
BY_KIND: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in RESOURCES}


def resolve(name: str) -> Resource:
    """`pods`, `deployments`, `deployments.apps`, `Deployment`: the resource meant."""
    if name in BY_KEY:
        return BY_KEY[name]
    matches = [r for r in RESOURCES if name in (r.plural, r.kind)]
    if not matches:
        raise KeyError(f"unknown resource {name!r}")
    return matches[0]  # core wins over events.k8s.io for "events": it is listed first


def for_object(obj: JSON) -> Resource:
    res = BY_KIND.get((str(obj.get("apiVersion", "")), str(obj.get("kind", ""))))
    if res is None:
        raise KeyError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
    return res


def groups() -> list[str]:
    seen: list[str] = []
    for r in RESOURCES:
        if r.group and r.group not in seen:
            seen.append(r.group)
    return seen


def group_versions(group: str) -> list[str]:
    return sorted({r.version for r in RESOURCES if r.group == group})


def api_group(group: str) -> JSON:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in group_versions(group)]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def api_group_list() -> JSON:
    items = [
        {k: v for k, v in api_group(g).items() if k not in ("kind", "apiVersion")} for g in groups()
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def resource_list(group: str, version: str) -> JSON | None:
    members = [r for r in RESOURCES if r.group == group and r.version == version]
    if not members:
        return None
    entries: list[Any] = [e for r in members for e in r.discovery_entries()]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }


def api_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


VERSION_INFO: JSON = {
    "major": "1",
    "minor": "32",
    "emulationMajor": "1",
    "emulationMinor": "32",
    "gitVersion": "v1.32.0-lifecycled-devstack",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
