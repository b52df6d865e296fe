"""Safe decoding of one message body into a JSON object.

Every check here is linear in the body size and runs before `json.loads`, so a hostile
body is refused quickly: too large (in bytes, or in arrays, objects and members), not
UTF-8, nested absurdly deep. Duplicate keys and non-standard constants (NaN, Infinity)
are refused by `json.loads` hooks. An SNS envelope's inner `Message` goes through here too.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

from lifecycled.events.result import Rejected, RejectReason

# The SQS maximum message size: 1 MiB (1,048,576 bytes) since AWS raised it from 256 KiB
# in 2025. Anything larger cannot have come from SQS.
MAX_BODY_BYTES = 1_048_576

# Real notices nest four or five levels deep; 32 leaves room and stays far below
# Python's recursion limit.
MAX_DEPTH = 32

JsonObject = dict[str, object]

# Real notices hold a few dozen arrays, objects and members; a multi-instance Health
# event a few thousand. More than this is refused before parsing, which bounds the time
# `json.loads` can take on a body of the maximum size.
MAX_CONTAINERS = 20_000
MAX_MEMBERS = 100_000

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS_RUN_RE = re.compile(rb"[\[{]{%d}" % (MAX_DEPTH + 1))
_DELTA = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class _DuplicateKeyError(ValueError):
    pass


class _BadConstantError(ValueError):
    pass


def decode_json(body: str | bytes, *, where: str = "body") -> JsonObject | Rejected:
    """Decode `body` into a JSON object, or say why not. Never raises."""
    decoded = _to_text(body, where)
    if isinstance(decoded, Rejected):
        return decoded
    raw, text = decoded
    shape = _check_shape(raw, where)
    if shape is not None:
        return shape
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except _DuplicateKeyError:
        return Rejected(RejectReason.DUPLICATE_KEYS, f"{where} has an object with a duplicate key")
    except _BadConstantError:
        return Rejected(RejectReason.NOT_JSON, f"{where} uses NaN or Infinity, which JSON lacks")
    except json.JSONDecodeError as exc:
        return Rejected(RejectReason.NOT_JSON, f"{where} is not JSON ({exc.msg}, char {exc.pos})")
    except (ValueError, RecursionError):
        # e.g. an integer longer than Python's int-string conversion limit.
        return Rejected(RejectReason.NOT_JSON, f"{where} is not JSON Python can read")
    if not isinstance(value, dict):
        return Rejected(RejectReason.NOT_AN_OBJECT, f"{where} is a JSON {_json_kind(value)}")
    return value


def _outside_strings(raw: bytes) -> bytes:
    """The bytes of `raw` outside JSON strings (an unterminated string runs to the end).

    Only C-level bytes operations, so a body of many tiny strings stays fast. Dropping
    escaped backslashes first, then escaped quotes, leaves exactly the quotes that open
    and close strings. Exact on valid JSON and on any valid prefix, which is all the
    parser ever reads before it fails.
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


def _check_shape(raw: bytes, where: str) -> Rejected | None:
    outside = _outside_strings(raw)
    brackets = outside.translate(None, _NOT_BRACKETS)
    if _OPENERS_RUN_RE.search(brackets):
        return _too_deep(where)  # the common attack, found without summing
    # Valid JSON closes what it opens, so twice the container limit bounds all brackets.
    if len(brackets) > 2 * MAX_CONTAINERS:
        return Rejected(
            RejectReason.TOO_LARGE, f"{where} holds more than {MAX_CONTAINERS} arrays and objects"
        )
    if outside.count(b",") + outside.count(b":") > MAX_MEMBERS:
        return Rejected(RejectReason.TOO_LARGE, f"{where} holds more than {MAX_MEMBERS} members")
    if max(accumulate(map(_DELTA.__getitem__, brackets)), default=0) > MAX_DEPTH:
        return _too_deep(where)
    return None


def _to_text(body: str | bytes, where: str) -> tuple[bytes, str] | Rejected:
    """Both forms of the body: UTF-8 bytes for the shape scan, text for `json.loads`."""
    if isinstance(body, bytes):
        if len(body) > MAX_BODY_BYTES:
            return _too_large(where)
        try:
            return body, body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejected(RejectReason.NOT_UTF8, f"{where} is not UTF-8 (byte {exc.start})")
    # A str has at most as many characters as UTF-8 bytes: cheap early refusal.
    if len(body) > MAX_BODY_BYTES:
        return _too_large(where)
    try:
        raw = body.encode("utf-8")
    except UnicodeEncodeError:
        return Rejected(RejectReason.NOT_UTF8, f"{where} holds a lone surrogate")
    return _too_large(where) if len(raw) > MAX_BODY_BYTES else (raw, body)


def _too_deep(where: str) -> Rejected:
    return Rejected(RejectReason.TOO_DEEP, f"{where} nests deeper than {MAX_DEPTH} levels")


def _too_large(where: str) -> Rejected:
    return Rejected(RejectReason.TOO_LARGE, f"{where} exceeds {MAX_BODY_BYTES} bytes")


def _unique_keys(pairs: list[tuple[str, object]]) -> JsonObject:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKeyError
    return obj


def _no_constants(name: str) -> object:
    raise _BadConstantError(name)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
