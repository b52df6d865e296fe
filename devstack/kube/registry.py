"""What each verb does: defaulting, validation, preconditions, graceful deletion, finalizers.

HTTP handlers, controllers and the in-process helpers all write through a `Registry`, so the
rules are the same whoever writes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import JSON, ApiError
from .objects import (
    clone,
    evolve,
    is_dns_label,
    is_subdomain,
    is_terminal,
    meta,
    random_suffix,
    spec,
    timestamp,
    uid_of,
)
from .patch import MalformedPatch, PatchError, json_patch, merge_patch, strategic_merge_patch
from .resources import BY_KEY, Resource
from .selectors import label_selector_matches
from .store import Store

FOREGROUND = "foregroundDeletion"
JOB_TRACKING = "batch.kubernetes.io/job-tracking"
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID = "controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME = "job-name"
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


@dataclass
class DeleteOptions:
    grace_period: int | None = None
    propagation: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False

    @classmethod
    def parse(cls, body: Any, query: Mapping[str, str]) -> DeleteOptions:
        body = body if isinstance(body, dict) else {}
        grace = query.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
        propagation = query.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = query.get("orphanDependents", body.get("orphanDependents"))
        if propagation is None and orphan is not None:
            propagation = "Orphan" if str(orphan).lower() == "true" else "Background"
        if propagation not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(
                f'Unsupported value: "{propagation}": supported values: '
                '"Foreground", "Background", "Orphan"'
            )
        pre = body.get("preconditions") or {}
        try:
            grace_int = None if grace is None else int(grace)
        except ValueError as exc:
            raise errors.bad_request(f"invalid gracePeriodSeconds: {grace!r}") from exc
        return cls(
            grace_period=grace_int,
            propagation=propagation,
            uid=pre.get("uid"),
            resource_version=pre.get("resourceVersion"),
            dry_run=bool(query.get("dryRun") or body.get("dryRun")),
        )


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- create --------------------------------------------------------------------------

    def create(
        self, res: Resource, body: Any, namespace: str | None, *, dry_run: bool = False
    ) -> JSON:
        obj = self._new_object(res, body, namespace)
        PREPARE.get(res.key, _nothing)(self, obj)
        if dry_run:
            return obj
        return self.store.put(res, obj)

    def _new_object(self, res: Resource, body: Any, namespace: str | None) -> JSON:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the body of the request is not a valid object")
        if body.get("kind") not in (None, "", res.kind):
            raise errors.bad_request(
                f"the kind in the data ({body.get('kind')}) does not match "
                f"the expected kind ({res.kind})"
            )
        obj = clone(body)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        m = obj.setdefault("metadata", {})
        if m.get("resourceVersion"):
            # kube-apiserver answers this with a bare 500 (from its storage layer).
            raise ApiError(500, "", "resourceVersion should not be set on objects to be created")
        self._place(res, m, namespace)
        self._name(res, m)
        for field in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ):
            m.pop(field, None)
        m.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp(), generation=1)
        return obj

    def _place(self, res: Resource, m: JSON, namespace: str | None) -> None:
        if not res.namespaced:
            m.pop("namespace", None)
            return
        given = m.get("namespace")
        if given and namespace and given != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        ns = namespace or given or "default"
        m["namespace"] = ns
        owner = self.store.get_ref(BY_KEY["namespaces"], None, ns)
        if owner is None:
            raise errors.not_found("", "namespaces", ns)
        if meta(owner).get("deletionTimestamp"):
            raise errors.forbidden(
                res.group,
                res.plural,
                str(m.get("name") or m.get("generateName") or ""),
                f"unable to create new content in namespace {ns} because it is being terminated",
            )

    def _name(self, res: Resource, m: JSON) -> None:
        ns = m.get("namespace")
        if not m.get("name"):
            prefix = m.get("generateName")
            if not prefix:
                raise errors.invalid(
                    res.group,
                    res.kind,
                    "",
                    [
                        errors.cause(
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            name = f"{prefix}{random_suffix()}"
            while self.store.get_ref(res, ns, name) is not None:
                name = f"{prefix}{random_suffix()}"
            m["name"] = name
        name = str(m["name"])
        valid = is_dns_label(name) if res.key == "namespaces" else is_subdomain(name)
        if not valid:
            raise errors.invalid(
                res.group,
                res.kind,
                name,
                [
                    errors.cause(
                        "metadata.name",
                        "FieldValueInvalid",
                        f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
                        "consist of lower case alphanumeric characters, '-' or '.', and must "
                        "start and end with an alphanumeric character",
                    )
                ],
            )
        if self.store.get_ref(res, ns, name) is not None:
            raise errors.already_exists(res.group, res.plural, name)

    # ---- update and patch ----------------------------------------------------------------

    def update(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        current = self.require(res, namespace, name)
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the body of the request is not a valid object")
        new = clone(body)
        nm = new.setdefault("metadata", {})
        cm = meta(current)
        if nm.get("name") and nm["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({nm['name']}) does not match the name on the URL ({name})"
            )
        if res.namespaced and nm.get("namespace") and nm["namespace"] != cm.get("namespace"):
            raise errors.bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        self._check_preconditions(res, current, nm.get("uid"), nm.get("resourceVersion"))
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if field in cm:
                nm[field] = cm[field]
            else:
                nm.pop(field, None)
        new = self._split_status(res, current, new, subresource)
        VALIDATE_UPDATE.get(res.key, _no_update_check)(res, current, new)
        return self.commit(res, current, new, dry_run=dry_run)

    @staticmethod
    def _split_status(res: Resource, current: JSON, new: JSON, subresource: str | None) -> JSON:
        """The main resource ignores status changes; the status subresource ignores the rest."""
        if subresource == "status":
            merged = clone({k: v for k, v in current.items() if k != "status"})
            merged["status"] = new.get("status") or {}
            return merged
        if res.has_status:
            new.pop("status", None)
            if "status" in current:
                new["status"] = clone(current["status"])
        return new

    def _check_preconditions(self, res: Resource, current: JSON, uid: Any, rv: Any) -> None:
        cm = meta(current)
        name = str(cm.get("name"))
        if uid and uid != cm.get("uid"):
            raise errors.conflict(
                res.group,
                res.plural,
                name,
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {cm.get('uid')}",
            )
        if rv and str(rv) != cm.get("resourceVersion"):
            raise errors.conflict(res.group, res.plural, name, errors.STALE_OBJECT)

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        content_type: str,
        raw: bytes,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        current = self.require(res, namespace, name)
        if content_type not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type)
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        try:
            patched = self._apply_patch(res, current, content_type, body)
        except PatchError as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc
        except MalformedPatch as exc:
            raise errors.bad_request(str(exc)) from exc
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")
        # A resourceVersion the patch sets is a precondition, checked by update().
        return self.update(res, namespace, name, patched, subresource=subresource, dry_run=dry_run)

    @staticmethod
    def _apply_patch(res: Resource, current: JSON, content_type: str, body: Any) -> Any:
        if content_type == "application/json-patch+json":
            return json_patch(current, body)
        if not isinstance(body, dict):
            raise MalformedPatch("a merge patch must be a JSON object")
        if content_type == "application/merge-patch+json":
            return merge_patch(current, body)
        return strategic_merge_patch(current, body, res.key)

    # ---- writing and deleting ------------------------------------------------------------

    def require(self, res: Resource, namespace: str | None, name: str) -> JSON:
        obj = self.store.get_ref(res, namespace if res.namespaced else None, name)
        if obj is None:
            raise errors.not_found(res.group, res.plural, name)
        return obj

    def commit(self, res: Resource, old: JSON | None, new: JSON, *, dry_run: bool = False) -> JSON:
        """Store `new` (a private copy). A terminating object whose finalizers are all gone
        is deleted for good."""
        if old is not None and spec(old) != spec(new):
            meta(new)["generation"] = int(meta(old).get("generation") or 1) + 1
        if dry_run:
            return new
        if self._finished(res, new):
            return self.store.remove(res, new, new)
        return self.store.put(res, new)

    @staticmethod
    def _finished(res: Resource, obj: JSON) -> bool:
        m = meta(obj)
        if not m.get("deletionTimestamp") or m.get("finalizers") or res.key == "namespaces":
            return False
        # A pod is gone only once its grace period is over (the kubelet's final delete).
        return res.key != "pods" or m.get("deletionGracePeriodSeconds") == 0

    def delete(self, res: Resource, namespace: str | None, name: str, opts: DeleteOptions) -> JSON:
        """Returns the object (still terminating, or as it was) or a success Status."""
        current = self.require(res, namespace, name)
        self._check_preconditions(res, current, opts.uid, opts.resource_version)
        if res.key == "pods":
            return self._delete_pod(res, current, opts)
        if res.key == "namespaces":
            return self._delete_namespace(res, current, opts)
        if meta(current).get("deletionTimestamp"):
            return current
        propagation = opts.propagation or res.default_propagation
        new = evolve(current)
        m = meta(new)
        if propagation == "Foreground":
            m["finalizers"] = [*(m.get("finalizers") or []), FOREGROUND]
        if m.get("finalizers"):
            m.update(deletionTimestamp=timestamp(), deletionGracePeriodSeconds=0)
            return self.commit(res, current, new, dry_run=opts.dry_run)
        if opts.dry_run:
            return errors.success_status(self._deleted_details(res, current))
        if propagation == "Orphan":
            self.orphan_dependents(uid_of(current))
        self.store.remove(res, current)
        return errors.success_status(self._deleted_details(res, current))

    @staticmethod
    def _deleted_details(res: Resource, obj: JSON) -> JSON:
        # Upstream puts the resource (plural) in details.kind here too.
        raw = {
            "name": meta(obj).get("name"),
            "group": res.group,
            "kind": res.plural,
            "uid": uid_of(obj),
        }
        return {k: v for k, v in raw.items() if v}

    def orphan_dependents(self, owner_uid: str) -> None:
        for dep_res, dep in self.store.dependents(owner_uid):
            new = evolve(dep)
            refs = [r for r in meta(new).get("ownerReferences") or [] if r.get("uid") != owner_uid]
            if refs:
                meta(new)["ownerReferences"] = refs
            else:
                meta(new).pop("ownerReferences", None)
            self.commit(dep_res, dep, new)

    def _delete_pod(self, res: Resource, pod: JSON, opts: DeleteOptions) -> JSON:
        grace = grace_period(pod, opts.grace_period)
        m = meta(pod)
        current = m.get("deletionGracePeriodSeconds")
        if m.get("deletionTimestamp") and current is not None and grace >= int(current):
            return pod  # a graceful deletion can only be shortened
        new = evolve(pod)
        meta(new).update(deletionTimestamp=timestamp(grace), deletionGracePeriodSeconds=grace)
        if grace > 0 and not opts.dry_run:
            now = time.monotonic()
            first = self.store.deleted_at.get(uid_of(pod), (now, now))[0]
            self.store.deleted_at[uid_of(pod)] = (first, now + grace)
        return self.commit(res, pod, new, dry_run=opts.dry_run)

    def _delete_namespace(self, res: Resource, ns: JSON, opts: DeleteOptions) -> JSON:
        if meta(ns).get("deletionTimestamp"):
            return ns
        new = evolve(ns, "status")
        meta(new).update(deletionTimestamp=timestamp(), deletionGracePeriodSeconds=0)
        new.setdefault("status", {})["phase"] = "Terminating"
        return self.commit(res, ns, new, dry_run=opts.dry_run)

    def finish_pod(self, pod: JSON) -> JSON:
        """The kubelet's final delete after the containers stopped (grace period 0)."""
        return self._delete_pod(BY_KEY["pods"], pod, DeleteOptions(grace_period=0))

    def remove_finalizer(self, res: Resource, obj: JSON, finalizer: str) -> JSON:
        new = evolve(obj)
        left = [f for f in meta(new).get("finalizers") or [] if f != finalizer]
        if left:
            meta(new)["finalizers"] = left
        else:
            meta(new).pop("finalizers", None)
        return self.commit(res, obj, new)


def grace_period(pod: JSON, requested: int | None) -> int:
    """The pod strategy's CheckGracefulDelete: unscheduled or finished pods go at once."""
    grace = requested
    if grace is None:
        grace = int(spec(pod).get("terminationGracePeriodSeconds") or 0)
    if not spec(pod).get("nodeName") or is_terminal(pod):
        grace = 0
    return 1 if grace < 0 else grace


# ---- per-kind defaulting and validation ---------------------------------------------------


def _nothing(_: Registry, __: JSON) -> None:
    return None


def _no_update_check(_: Resource, __: JSON, ___: JSON) -> None:
    return None


_DEFAULT_TOLERATIONS = (
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
)


def default_pod_spec(pod_spec: JSON) -> None:
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    pod_spec.setdefault("securityContext", {})
    for container in pod_spec.get("containers") or []:
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})


def _prepare_pod(reg: Registry, pod: JSON) -> None:
    pod_spec = pod.setdefault("spec", {})
    containers = pod_spec.get("containers")
    name = str(meta(pod).get("name"))
    if not containers:
        raise errors.invalid(
            "",
            "Pod",
            name,
            [errors.cause("spec.containers", "FieldValueRequired", "Required value")],
        )
    for i, container in enumerate(containers):
        for field in ("name", "image"):
            if not container.get(field):
                raise errors.invalid(
                    "",
                    "Pod",
                    name,
                    [
                        errors.cause(
                            f"spec.containers[{i}].{field}", "FieldValueRequired", "Required value"
                        )
                    ],
                )
    default_pod_spec(pod_spec)
    pod_spec.setdefault("serviceAccountName", "default")
    pod_spec.setdefault("serviceAccount", pod_spec["serviceAccountName"])
    pod_spec.setdefault("priority", 0)
    pod_spec.setdefault("enableServiceLinks", True)
    # The DefaultTolerationSeconds admission plugin.
    tolerations = pod_spec.setdefault("tolerations", [])
    for default in _DEFAULT_TOLERATIONS:
        if not any(t.get("key") == default["key"] for t in tolerations):
            tolerations.append(dict(default))
    pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def _template_labels_match(obj: JSON) -> list[JSON]:
    selector = spec(obj).get("selector")
    labels = ((spec(obj).get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        return [errors.cause("spec.selector", "FieldValueRequired", "Required value")]
    if not label_selector_matches(selector, labels):
        return [
            errors.cause(
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
            )
        ]
    return []


DAEMONSET_COUNTERS = (
    "currentNumberScheduled",
    "desiredNumberScheduled",
    "numberMisscheduled",
    "numberReady",
)


def _prepare_workload(reg: Registry, obj: JSON) -> None:
    s = obj.setdefault("spec", {})
    if obj["kind"] != "DaemonSet":
        s.setdefault("replicas", 1)
    s.setdefault("revisionHistoryLimit", 10)
    if obj["kind"] == "Deployment":
        s.setdefault("progressDeadlineSeconds", 600)
        s.setdefault(
            "strategy",
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
        )
    default_pod_spec(s.setdefault("template", {}).setdefault("spec", {}))
    causes = _template_labels_match(obj)
    if causes:
        raise errors.invalid("apps", obj["kind"], str(meta(obj)["name"]), causes)
    # The real server returns the required DaemonSet counters as 0 (clients validate them).
    obj["status"] = dict.fromkeys(DAEMONSET_COUNTERS, 0) if obj["kind"] == "DaemonSet" else {}


def _has_label(labels: JSON, key: str, expected: str) -> list[JSON]:
    path = f"spec.template.metadata.labels[{key}]"
    if key not in labels:
        return [errors.cause(path, "FieldValueRequired", f"Required value: {expected}")]
    if labels[key] != expected:
        return [
            errors.cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {json.dumps(labels)}: must be '{expected}'",
            )
        ]
    return []


def _generate_job_selector(job: JSON) -> None:
    """batch/v1 job strategy: fill in labels and selector only where the client left gaps."""
    s, m = job["spec"], meta(job)
    labels = s["template"].setdefault("metadata", {}).setdefault("labels", {})
    for key in (LEGACY_JOB_NAME, JOB_NAME):
        labels.setdefault(key, m["name"])
    for key in (LEGACY_CONTROLLER_UID, CONTROLLER_UID):
        labels.setdefault(key, m["uid"])
    selector = s.get("selector") or {}
    selector.setdefault("matchLabels", {}).setdefault(CONTROLLER_UID, m["uid"])
    s["selector"] = selector


def _job_selector_causes(job: JSON) -> list[JSON]:
    s, m = job["spec"], meta(job)
    if s.get("manualSelector"):
        return _template_labels_match(job)
    labels = s["template"]["metadata"]["labels"]
    causes: list[JSON] = []
    for key in (LEGACY_CONTROLLER_UID, CONTROLLER_UID):
        causes += _has_label(labels, key, m["uid"])
    for key in (LEGACY_JOB_NAME, JOB_NAME):
        causes += _has_label(labels, key, m["name"])
    # The selector must be exactly the generated one.
    if not label_selector_matches(s["selector"], {CONTROLLER_UID: m["uid"]}):
        causes.append(
            errors.cause(
                "spec.selector",
                "FieldValueInvalid",
                f"Invalid value: {json.dumps(s['selector'])}: `selector` not auto-generated",
            )
        )
    return causes


def _prepare_job(reg: Registry, job: JSON) -> None:
    s = job.setdefault("spec", {})
    if s.get("completions") is None and s.get("parallelism") is None:
        s["completions"] = 1
    s.setdefault("parallelism", 1)
    s.setdefault("backoffLimit", 6)
    s.setdefault("completionMode", "NonIndexed")
    s.setdefault("suspend", False)
    s.setdefault(
        "podReplacementPolicy", "Failed" if s.get("podFailurePolicy") else "TerminatingOrFailed"
    )
    template = s.setdefault("template", {})
    default_pod_spec(template.setdefault("spec", {}))
    if not s.get("manualSelector"):
        _generate_job_selector(job)
    causes = _job_selector_causes(job)
    policy = template["spec"].get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        causes.append(
            errors.cause(
                "spec.template.spec.restartPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
            )
        )
    if causes:
        raise errors.invalid("batch", "Job", str(meta(job)["name"]), causes)
    job["status"] = {}


def _check_job_update(res: Resource, old: JSON, new: JSON) -> None:
    for field in ("selector", "template", "completionMode"):
        if spec(old).get(field) != spec(new).get(field):
            raise errors.invalid(
                "batch",
                "Job",
                str(meta(old)["name"]),
                [
                    errors.cause(
                        f"spec.{field}",
                        "FieldValueInvalid",
                        f"Invalid value: {json.dumps(spec(new).get(field))}: field is immutable",
                    )
                ],
            )


def _prepare_pdb(reg: Registry, pdb: JSON) -> None:
    s = pdb.setdefault("spec", {})
    if s.get("minAvailable") is not None and s.get("maxUnavailable") is not None:
        raise errors.invalid(
            "policy",
            "PodDisruptionBudget",
            str(meta(pdb)["name"]),
            [
                errors.cause(
                    "spec",
                    "FieldValueInvalid",
                    "Invalid value: minAvailable and maxUnavailable cannot be both set",
                )
            ],
        )
    pdb["status"] = {
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "disruptionsAllowed": 0,
        "expectedPods": 0,
        "observedGeneration": 0,
    }


def _prepare_namespace(reg: Registry, ns: JSON) -> None:
    ns.setdefault("spec", {})["finalizers"] = ["kubernetes"]
    ns["status"] = {"phase": "Active"}
    meta(ns).setdefault("labels", {})["kubernetes.io/metadata.name"] = meta(ns)["name"]


def _prepare_node(reg: Registry, node: JSON) -> None:
    node.setdefault("spec", {})
    node.setdefault("status", {})


PREPARE: dict[str, Callable[[Registry, JSON], None]] = {
    "pods": _prepare_pod,
    "deployments.apps": _prepare_workload,
    "replicasets.apps": _prepare_workload,
    "daemonsets.apps": _prepare_workload,
    "statefulsets.apps": _prepare_workload,
    "jobs.batch": _prepare_job,
    "poddisruptionbudgets.policy": _prepare_pdb,
    "namespaces": _prepare_namespace,
    "nodes": _prepare_node,
}
VALIDATE_UPDATE: dict[str, Callable[[Resource, JSON, JSON], None]] = {
    "jobs.batch": _check_job_update,
}
