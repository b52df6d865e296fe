"""Label selectors, field selectors, node selector terms and taint tolerations."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import JSON
from .resources import Resource

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET_REQ = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_REQ = re.compile(rf"^\s*({_KEY})\s*(==|=|!=|>|<)\s*(.*?)\s*$")
_EXISTS_REQ = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector. op: = != in notin exists !exists gt lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        return present and _compare(self.op, str(value), self.values[0])


def _compare(op: str, value: str, bound: str) -> bool:
    try:
        number = int(value)
    except ValueError:
        return False
    return number > int(bound) if op == "gt" else number < int(bound)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses (`a in (x,y),b`)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise errors.bad_request(f"unable to parse requirement: invalid label value: {text!r}")
    return value


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse the string form (`app=web,tier!=db,env in (a,b),!legacy`). Errors are 400s."""
    if not text.strip():
        return []
    return [_parse_requirement(part) for part in _split_top_level(text)]


def _parse_requirement(part: str) -> Requirement:
    if match := _SET_REQ.match(part):
        values = tuple(_check_value(v.strip(), part) for v in match.group(4).split(","))
        return Requirement(match.group(1), match.group(3), values)
    if match := _CMP_REQ.match(part):
        key, op, value = match.group(1), match.group(3), match.group(4)
        if op in (">", "<"):
            if not re.fullmatch(r"-?\d+", value):
                raise errors.bad_request(f"unable to parse requirement: {part!r}: not an integer")
            return Requirement(key, "gt" if op == ">" else "lt", (value,))
        op = "=" if op == "==" else op
        return Requirement(key, op, (_check_value(value, part),))
    if match := _EXISTS_REQ.match(part):
        return Requirement(match.group(2), "!exists" if match.group(1) else "exists")
    raise errors.bad_request(f"unable to parse requirement: found {part.strip()!r}")


def matches_all(requirements: Iterable[Requirement], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in requirements)


_EXPR_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


def from_label_selector(selector: JSON | None) -> list[Requirement] | None:
    """A metav1.LabelSelector as requirements; None for a nil selector (matches nothing)."""
    if selector is None:
        return None
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = _EXPR_OPS.get(str(expr.get("operator")))
        if op is None:
            return None
        reqs.append(Requirement(str(expr.get("key")), op, tuple(expr.get("values") or ())))
    return reqs


def label_selector_matches(selector: JSON | None, labels: Mapping[str, str] | None) -> bool:
    reqs = from_label_selector(selector)
    return reqs is not None and matches_all(reqs, labels or {})


def labels_of(obj: JSON) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


# ---- field selectors -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str

    def matches(self, res: Resource, obj: JSON) -> bool:
        equal = field_value(res, obj, self.field) == self.value
        return equal if self.op == "=" else not equal


_BOOL_FIELDS = {"spec.hostNetwork", "spec.unschedulable"}


def field_value(res: Resource, obj: JSON, field: str) -> str:
    if field == "source" and res.key == "events":
        return str((obj.get("source") or {}).get("component", ""))
    value: Any = obj
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if field in _BOOL_FIELDS:
        return "true" if value else "false"
    return "" if value is None else str(value)


def _unescape_terms(text: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return terms


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def supported_fields(res: Resource) -> set[str]:
    base = {"metadata.name", "metadata.namespace"} if res.namespaced else {"metadata.name"}
    return base | set(res.fields)


def parse_field_selector(text: str, res: Resource) -> list[FieldRequirement]:
    """Parse `spec.nodeName=n1,status.phase!=Failed`; unknown fields are a 400, as upstream."""
    out: list[FieldRequirement] = []
    for term in _unescape_terms(text):
        if not term.strip():
            continue
        match = re.match(r"^([^=!]+?)\s*(!=|==|=)(.*)$", term)
        if not match:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = match.group(1).strip(), match.group(2), _unescape(match.group(3))
        if field not in supported_fields(res):
            raise errors.bad_request(f"field label not supported: {field}")
        out.append(FieldRequirement(field, "!=" if op == "!=" else "=", value))
    return out


# ---- scheduling predicates ----------------------------------------------------------------


def _expression_matches(expr: JSON, values_of: Mapping[str, str]) -> bool:
    op = _EXPR_OPS.get(str(expr.get("operator")))
    if op is None:  # Gt/Lt on node labels
        key, bound = str(expr.get("key")), (expr.get("values") or ["0"])[0]
        op = {"Gt": "gt", "Lt": "lt"}.get(str(expr.get("operator")))
        return op is not None and Requirement(key, op, (str(bound),)).matches(values_of)
    return Requirement(str(expr.get("key")), op, tuple(expr.get("values") or ())).matches(values_of)


def node_selector_term_matches(term: JSON, node: JSON) -> bool:
    """A NodeSelectorTerm: all its expressions (labels) and fields (metadata.name) must hold."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches no objects
    name = {"metadata.name": str((node.get("metadata") or {}).get("name", ""))}
    return all(_expression_matches(e, labels_of(node)) for e in exprs) and all(
        _expression_matches(f, name) for f in fields
    )


def node_affinity_matches(pod_spec: JSON, node: JSON) -> bool:
    selector = pod_spec.get("nodeSelector") or {}
    node_labels = labels_of(node)
    if any(node_labels.get(k) != v for k, v in selector.items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(node_selector_term_matches(t, node) for t in terms)  # terms are ORed


def tolerates(tolerations: Iterable[JSON], taint: JSON) -> JSON | None:
    """The toleration that tolerates `taint`, or None."""
    for tol in tolerations:
        effect = tol.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        key = tol.get("key")
        if tol.get("operator") == "Exists":
            if not key or key == taint.get("key"):
                return tol
        elif key == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return tol
    return None


def untolerated_taints(
    tolerations: Iterable[JSON], taints: Iterable[JSON], effects: set[str]
) -> list[JSON]:
    tols = list(tolerations)
    return [t for t in taints if t.get("effect") in effects and tolerates(tols, t) is None]
