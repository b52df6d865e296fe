"""Small helpers on object dicts: timestamps, names, conditions, ownership."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from .errors import JSON

# The alphabet kube-apiserver uses for generateName suffixes (no vowels, no confusables).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


T = TypeVar("T")
_DICT, _LIST = dict, list


def clone(value: T) -> T:
    """A deep copy of JSON data (dicts, lists, scalars), about 4x faster than copy.deepcopy."""
    return cast(T, _clone(value))


def evolve(obj: JSON, *deep: str, shallow: tuple[str, ...] = ()) -> JSON:
    """A new version of a stored object, to change and write: new top-level and metadata
    dicts, the `deep` top-level fields cloned, the `shallow` ones copied one level down; the
    rest is shared with the stored version. That is safe because stored objects are never
    mutated in place: change only what was copied, and replace (never mutate) anything
    else, e.g. `meta(new)["finalizers"] = [...]`."""
    new = dict(obj)
    new["metadata"] = dict(meta(obj))
    for key in deep:
        if key in obj:
            new[key] = _clone(obj[key])
    for key in shallow:
        if isinstance(obj.get(key), dict):
            new[key] = dict(obj[key])
    return new


def _clone(value: Any) -> Any:
    kind = type(value)
    if kind is _DICT:
        return {k: v if type(v) not in (_DICT, _LIST) else _clone(v) for k, v in value.items()}
    if kind is _LIST:
        return [v if type(v) not in (_DICT, _LIST) else _clone(v) for v in value]
    return value


def timestamp(offset_seconds: float = 0.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_SUFFIX_ALPHABET) for _ in range(length))


def is_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_SUBDOMAIN.match(name))


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and bool(_LABEL.match(name))


def meta(obj: JSON) -> JSON:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def name_of(obj: JSON) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: JSON) -> str:
    return str(meta(obj).get("namespace") or "")


def uid_of(obj: JSON) -> str:
    return str(meta(obj).get("uid", ""))


def annotations_of(obj: JSON) -> dict[str, str]:
    value = meta(obj).get("annotations")
    return value if isinstance(value, dict) else {}


def spec(obj: JSON) -> JSON:
    value = obj.get("spec")
    return value if isinstance(value, dict) else {}


def status(obj: JSON) -> JSON:
    value = obj.get("status")
    return value if isinstance(value, dict) else {}


def is_terminating(obj: JSON) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def controller_ref(obj: JSON) -> JSON | None:
    """The controller's owner reference: the stored dict itself, read it only."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def owner_ref(owner: JSON, *, controller: bool = True) -> JSON:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def condition(obj: JSON, kind: str) -> JSON | None:
    """The condition of that type: the stored dict itself, read it only."""
    for cond in status(obj).get("conditions") or []:
        if cond.get("type") == kind:
            return cond  # type: ignore[no-any-return]
    return None


def condition_true(obj: JSON, kind: str) -> bool:
    cond = condition(obj, kind)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    obj: JSON,
    kind: str,
    value: str,
    reason: str = "",
    message: str = "",
    *,
    observed_generation: int | None = None,
) -> None:
    """Set a condition on a (private, mutable) object; the transition time moves on change.

    With `observed_generation`, the condition is a metav1.Condition, whose reason and message
    are always present (clients validate that)."""
    conditions: list[JSON] = obj.setdefault("status", {}).setdefault("conditions", [])
    new: JSON = {"type": kind, "status": value}
    if observed_generation is not None:
        new.update(observedGeneration=observed_generation, reason=reason, message=message)
    else:
        new.update({k: v for k, v in (("reason", reason), ("message", message)) if v})
    for i, cond in enumerate(conditions):
        if cond.get("type") == kind:
            same = cond.get("status") == value
            new["lastTransitionTime"] = cond.get("lastTransitionTime") if same else timestamp()
            conditions[i] = new
            return
    new["lastTransitionTime"] = timestamp()
    conditions.append(new)


def pod_ready(pod: JSON) -> bool:
    return condition_true(pod, "Ready")


def pod_phase(pod: JSON) -> str:
    return str(status(pod).get("phase", ""))


def is_terminal(pod: JSON) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    """IntOrString scaled against `total` (kube's GetScaledValueFromIntOrPercent)."""
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    percent = int(text[:-1])
    scaled = percent * total
    return -(-scaled // 100) if round_up else scaled // 100


def same_without_status(a: JSON, b: JSON) -> bool:
    return {k: v for k, v in a.items() if k != "status"} == {
        k: v for k, v in b.items() if k != "status"
    }
