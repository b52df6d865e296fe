"""The demo's timeline picture: well-formed SVG, a lane per node, a mark per step, the
deadline drawn."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from devstack.demo import Timeline

SVG = "{http://www.w3.org/2000/svg}"


def line(event: str, at: str, **fields: object) -> dict[str, object]:
    return {"time": f"2026-01-01T00:00:{at}Z", "event": event, **fields}


def test_the_timeline_is_one_well_formed_svg_with_a_lane_per_node() -> None:
    timeline = Timeline()
    for n, instance in enumerate(("i-1", "i-2")):
        node = f"node-{n}"
        timeline.add(
            line(
                "notice received",
                "00.000",
                instances=[instance],
                kind="spot_interruption",
                event_time="2026-01-01T00:00:00+00:00",
            )
        )
        timeline.add(
            line(
                "node cordoned",
                "00.500",
                instance=instance,
                node=node,
                deadline="2026-01-01T00:02:00+00:00",
            )
        )
        timeline.add(line("pod evicted", "01.000", node=node))
        timeline.add(line("drain finished", "09.000", instance=instance, outcome="drained"))
    root = ET.fromstring(timeline.svg())
    assert root.tag == f"{SVG}svg"
    lanes = root.findall(f"{SVG}g")
    assert len(lanes) == 2
    for lane in lanes:
        steps = [c.findtext(f"{SVG}title") for c in lane.findall(f"{SVG}circle")]
        assert len(steps) == 4 and "drain finished: drained" in steps[-1]
        (deadline,) = [x for x in lane.findall(f"{SVG}line") if x.get("class") == "deadline"]
        # The deadline (120 s) lies right of every step (at most 9 s).
        assert float(deadline.get("x1")) > max(
            float(c.get("cx")) for c in lane.findall(f"{SVG}circle")
        )
