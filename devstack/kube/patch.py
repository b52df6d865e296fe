"""The three patch formats: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge."""

from __future__ import annotations

from typing import Any

from .errors import JSON
from .objects import clone

PRIMITIVE = "<merge primitives>"  # a list of scalars with patchStrategy=merge: set union


class PatchError(Exception):
    """The patch could not be applied (a 422 from the server)."""


class MalformedPatch(Exception):
    """The patch document itself is not valid (a 400 from the server)."""


# ---- RFC 7386 ----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---- RFC 6902 ----------------------------------------------------------------------------


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise MalformedPatch(f"JSON pointer {pointer!r} must start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if token == "-" and for_add:
        return len(container)
    if not token.isdigit():
        raise PatchError(f"invalid array index {token!r}")
    index = int(token)
    limit = len(container) if for_add else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of bounds")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise PatchError(f"doc is missing path: {path!r}")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchError(f"doc is missing path: {path!r}")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], for_add=True), value)
    else:
        raise PatchError(f"doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _tokens(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict) and tokens[-1] in parent:
        del parent[tokens[-1]]
    elif isinstance(parent, list):
        del parent[_index(parent, tokens[-1], for_add=False)]
    else:
        raise PatchError(f"unable to remove nonexistent key: {tokens[-1]}: missing value")
    return doc


def _apply_op(doc: Any, op: JSON) -> Any:
    kind, path = op.get("op"), op.get("path")
    if not isinstance(path, str):
        raise MalformedPatch(f"operation {op!r} has no path")
    if kind == "add":
        return _add(doc, path, clone(op.get("value")))
    if kind == "remove":
        return _remove(doc, path)
    if kind == "replace":
        _get(doc, path)  # must exist
        return _add(_remove(doc, path), path, clone(op.get("value")))
    if kind in ("move", "copy"):
        source = op.get("from")
        if not isinstance(source, str):
            raise MalformedPatch(f"operation {op!r} has no from")
        value = clone(_get(doc, source))
        if kind == "move":
            doc = _remove(doc, source)
        return _add(doc, path, value)
    if kind == "test":
        if _get(doc, path) != op.get("value"):
            raise PatchError(f"testing value {path} failed: test failed")
        return doc
    raise MalformedPatch(f"Unexpected kind: {kind}")


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
        raise MalformedPatch("a JSON patch must be a list of operations")
    doc = clone(doc)
    for op in ops:
        doc = _apply_op(doc, op)
    return doc


# ---- strategic merge patch ---------------------------------------------------------------
# Merge keys come from the Go struct tags (patchStrategy/patchMergeKey) of the real types.
# A list with no entry here has no strategy: the patch replaces it (NodeSpec.taints,
# PodSpec.tolerations, ...).

Path = tuple[str, ...]
_CONTAINER_LISTS: dict[Path, str] = {
    ("env",): "name",
    ("ports",): "containerPort",
    ("volumeMounts",): "mountPath",
    ("volumeDevices",): "devicePath",
}
_POD_SPEC_LISTS: dict[Path, str] = {
    ("volumes",): "name",
    ("imagePullSecrets",): "name",
    ("hostAliases",): "ip",
}


def _meta(prefix: Path) -> dict[Path, str]:
    return {(*prefix, "ownerReferences"): "uid", (*prefix, "finalizers"): PRIMITIVE}


def _pod_spec(prefix: Path) -> dict[Path, str]:
    table = {prefix + k: v for k, v in _POD_SPEC_LISTS.items()}
    for lst in ("containers", "initContainers", "ephemeralContainers"):
        table[(*prefix, lst)] = "name"
        table.update({(*prefix, lst, *k): v for k, v in _CONTAINER_LISTS.items()})
    return table


_CONDITIONS = {("status", "conditions"): "type"}
_TEMPLATED = (
    _meta(("metadata",))
    | _meta(("spec", "template", "metadata"))
    | _pod_spec(("spec", "template", "spec"))
    | _CONDITIONS
)
STRATEGIES: dict[str, dict[Path, str]] = {
    "pods": _meta(("metadata",))
    | _pod_spec(("spec",))
    | _CONDITIONS
    | {("status", "podIPs"): "ip", ("status", "hostIPs"): "ip"},
    "nodes": _meta(("metadata",))
    | _CONDITIONS
    | {("status", "addresses"): "type", ("spec", "podCIDRs"): PRIMITIVE},
    "deployments.apps": _TEMPLATED,
    "replicasets.apps": _TEMPLATED,
    "daemonsets.apps": _TEMPLATED,
    "statefulsets.apps": _TEMPLATED,
    "jobs.batch": _TEMPLATED,
    "poddisruptionbudgets.policy": _meta(("metadata",)) | _CONDITIONS,
    "namespaces": _meta(("metadata",)) | _CONDITIONS,
}
_DEFAULT = _meta(("metadata",))


class _Delete:
    """Marker: `$patch: delete` removed this map."""


_DELETED = _Delete()


def strategic_merge_patch(original: JSON, patch: Any, resource_key: str) -> JSON:
    if not isinstance(patch, dict):
        raise MalformedPatch("a strategic merge patch must be a JSON object")
    table = STRATEGIES.get(resource_key, _DEFAULT)
    merged = _merge_map(original, patch, (), table)
    return {} if isinstance(merged, _Delete) else merged


def _clean(value: Any) -> Any:
    """A new value from a patch: drop directives and nulls."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def _merge_map(orig: JSON, patch: JSON, path: Path, table: dict[Path, str]) -> JSON | _Delete:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        return dict(_clean(patch))
    result = dict(orig)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        old = result.get(key)
        if isinstance(value, dict):
            merged = _merge_map(old if isinstance(old, dict) else {}, value, (*path, key), table)
            if isinstance(merged, _Delete):
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(
                old if isinstance(old, list) else [], value, (*path, key), table
            )
        else:
            result[key] = value
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            field = key.split("/", 1)[1]
            result[field] = [x for x in result.get(field) or [] if x not in value]
    return result


def _merge_list(orig: list[Any], patch: list[Any], path: Path, table: dict[Path, str]) -> list[Any]:
    strategy = table.get(path)
    if strategy is None:
        return list(_clean(patch))
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return list(_clean(patch))
    if strategy == PRIMITIVE:
        return list(orig) + [v for v in patch if v not in orig]
    result = list(orig)
    for item in patch:
        if not isinstance(item, dict) or strategy not in item:
            raise MalformedPatch(f"map: {item!r} does not contain declared merge key: {strategy}")
        at = next(
            (
                i
                for i, o in enumerate(result)
                if isinstance(o, dict) and o.get(strategy) == item[strategy]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if at is not None:
                del result[at]
        elif at is None:
            result.append(_clean(item))
        else:
            merged = _merge_map(result[at], item, path, table)
            if isinstance(merged, _Delete):
                del result[at]
            else:
                result[at] = merged
    return result
