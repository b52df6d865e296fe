"""Property-based: the parser is total (never raises, never falls into its internal-error
branch), quick for its size, and never yields a drain for a body that is not a valid notice
(every instance it names is a well-formed instance id written in the body itself)."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycled.events import Ignored, Rejected, parse_message
from lifecycled.model import INSTANCE_ID_RE, Notice
from tests.events.conftest import FIXTURES

FIXTURE_OBJS = [json.loads(p.read_bytes()) for p in sorted(FIXTURES.glob("*.json"))]
INTERNAL = "internal parser error"
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(
        ["i-0123456789abcdef0", "aws.ec2", "aws.autoscaling", "2026-12-02T00:00:00Z"]
    ),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=40,
)


def check(body: bytes) -> Notice | Ignored | Rejected:
    started = time.perf_counter()
    result = parse_message(body)
    took = time.perf_counter() - started
    assert isinstance(result, Notice | Ignored | Rejected)
    assert not (isinstance(result, Rejected) and result.detail == INTERNAL), result
    # A loose bound against pathological blow-ups; the real figures are bench/parse.py's.
    assert took < 0.05 + 0.02 * len(body) / 1024, (took, len(body))
    if isinstance(result, Notice):
        text = body.decode("utf-8", "replace")
        for instance in result.instance_ids:
            assert INSTANCE_ID_RE.fullmatch(instance), instance
            assert instance in text, "never a machine the body does not name"
    return result


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real payload with one place replaced by an arbitrary value, or deleted."""
    obj = copy.deepcopy(draw(st.sampled_from(FIXTURE_OBJS)))
    where = draw(st.sampled_from(paths(obj)[1:]))
    parent = obj
    for step in where[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[where[-1]]
    else:
        parent[where[-1]] = draw(json_values)
    return json.dumps(obj).encode()


@PROPERTY
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    check(body)


@PROPERTY
@given(st.text(max_size=2048))
def test_arbitrary_text_never_raises(body: str) -> None:
    check(body.encode("utf-8", "surrogatepass"))


@PROPERTY
@given(json_values)
def test_arbitrary_json_never_raises_nor_drains(value: Any) -> None:
    assert not isinstance(check(json.dumps(value).encode()), Notice) or isinstance(value, dict)


@PROPERTY
@given(mutated())
def test_mutated_real_payloads_never_raise_nor_drain_a_machine_not_named(body: bytes) -> None:
    check(body)


@PROPERTY
@given(mutated(), st.integers(min_value=0, max_value=4096), st.binary(min_size=1, max_size=8))
def test_corrupted_bytes_of_real_payloads_never_raise(body: bytes, at: int, noise: bytes) -> None:
    at = min(at, len(body))
    check(body[:at] + noise + body[at + len(noise) :])


def test_an_instance_id_made_invalid_never_names_a_machine() -> None:
    for obj in FIXTURE_OBJS:
        text = json.dumps(obj)
        if "i-" not in text:
            continue
        result = parse_message(text.replace('"i-', '"j-').encode())
        assert not isinstance(result, Notice) or not result.instance_ids, result
