"""`make demo-ecs`: ECS mode on the embedded stack, no AWS account needed.

An ECS cluster of six instances in an Auto Scaling group, a `web` service behind an ALB
target group, a daemon service, a few standalone tasks (one non-idempotent); then a Spot
warning and a scale-in. The real service runs as a subprocess (`lifecycled run`,
LIFECYCLED_PLATFORM=ecs), configured as a user would configure it.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from devstack.aws import AwsStack
from devstack.demo import Timeline
from devstack.service_process import Values, say, service_process, total, verdict

INSTANCES = 6
WEB_TASKS = 12
TIMEOUT = 90.0
CLUSTER = "demo-ecs"
GROUP = "demo-ecs-workers"


@dataclass
class EcsTimeline(Timeline):
    """The demo's Timeline plus the ECS steps (targets, task stops, requeues)."""

    stopped: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, entry: dict[str, Any]) -> None:
        super().add(entry)
        instance = entry.get("instance")
        if not instance:
            return
        at = datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))
        event = entry.get("event")
        if event == "node cordoned":  # the coordinator's words; on ECS it means this
            self.steps[instance][-1] = (at, "record written, container instance DRAINING")
        elif event == "targets deregistered":
            self.steps[instance].append((at, f"targets deregistered: {entry.get('targets')}"))
        elif event == "task stopped":
            self.stopped[instance] += 1
            if self.stopped[instance] == 1:
                self.steps[instance].append((at, f"first task stopped ({entry.get('why')})"))
        elif event == "job requeued":
            self.steps[instance].append((at, f"job requeued as {entry.get('copy')}"))

    def print(self) -> None:
        for instance, steps in self.steps.items():
            if instance not in self.event_time:
                continue
            t0 = self.event_time[instance]
            say(f"\n{instance}  [{self.kind.get(instance)}]")
            for at, what in sorted(steps):
                say(f"  +{(at - t0).total_seconds():6.2f}s  {what}")
            say(f"           {self.stopped[instance]} tasks stopped by lifecycled")


def build(aws: AwsStack) -> tuple[Any, list[str], str, str]:
    queue = aws.create_queue("lifecycled-demo-ecs", dlq=True)
    aws.route_events_to(queue)
    instances = [i.id for i in aws.create_group(GROUP, size=INSTANCES, heartbeat_timeout=30)]
    aws.create_ecs_cluster(CLUSTER, instances)
    target_group = aws.create_target_group("demo-web", deregistration_delay=5)
    web = aws.register_task_definition("web", stop_timeout=10)
    aws.create_service(CLUSTER, "web", web, desired_count=WEB_TASKS, target_group=target_group)
    agent = aws.register_task_definition("log-agent", container_port=None)
    aws.create_service(CLUSTER, "log-agent", agent, daemon=True)
    report = aws.register_task_definition(
        "nightly-report", container_port=None, tags={"lifecycled.io/idempotent": "false"}
    )
    thumbs = aws.register_task_definition(
        "thumbnails", container_port=None, tags={"lifecycled.io/idempotent": "true"}
    )
    report_task = aws.run_standalone_task(
        CLUSTER, report, instance_id=instances[0], started_by="scheduler", group="reports"
    )
    aws.run_standalone_task(CLUSTER, thumbs, instance_id=instances[0], started_by="scheduler")
    aws.run_standalone_task(CLUSTER, thumbs, instance_id=instances[1], started_by="scheduler")
    return queue, instances, target_group, report_task


async def run_demo(aws: AwsStack, workdir: Path) -> int:
    say(f"== building the stack: moto at {aws.endpoint_url}")
    # ECS's own replacement (new task healthy, then the old one drained) is slower than
    # lifecycled's deregister -> wait -> StopTask on a two-minute warning.
    aws.configure_ecs(stop_seconds=1.0, healthy_after_seconds=8.0)
    queue, instances, target_group, report_task = build(aws)
    say(
        f"== ECS cluster {CLUSTER}: {INSTANCES} instances, service web ({WEB_TASKS} tasks behind "
        f"an ALB target group, deregistration delay 5 s), daemon log-agent, 3 standalone tasks"
    )
    env = {
        **aws.env(),
        "LIFECYCLED_PLATFORM": "ecs",
        "LIFECYCLED_ECS_CLUSTERS": CLUSTER,
        "LIFECYCLED_QUEUE_URL": queue.url,
        "LIFECYCLED_SQS_WAIT_SECONDS": "2",
        "LIFECYCLED_ECS_TARGET_POLL_SECONDS": "0.5",
    }
    timeline = EcsTimeline()
    spot, scaled = instances[0], instances[2]
    async with service_process(env, timeline, workdir) as service:
        say(f"== lifecycled running (pid {service.proc.pid}), metrics at {service.url}/metrics")
        say(f"== Spot interruption warning for {spot}; scaling in {scaled} (terminate hook)")
        aws.send_spot_interruption(spot)
        aws.scale_in(GROUP, scaled)

        def done(values: Values) -> bool:
            closed = total(values, "lifecycled_drain_duration_seconds_count")
            return closed >= 2 and aws.lifecycle_state(scaled) is None

        values = await service.wait_for(done, TIMEOUT)
    timeline.print()
    return summary(aws, values, service.code, spot, scaled, target_group, report_task, service.log)


def summary(
    aws: AwsStack,
    values: dict[tuple[str, tuple[Any, ...]], float],
    code: int | None,
    spot: str,
    scaled: str,
    target_group: str,
    report_task: str,
    log: Path,
) -> int:
    deregisters = aws.calls.of("DeregisterTargets")
    stops = aws.calls.of("StopTask")
    web = {t["taskArn"] for t in aws.ecs_tasks(CLUSTER) if t["group"] == "service:web"}
    first = min((c.time for c in deregisters), default=0.0)
    early = [c for c in stops if c.params.get("task") in web and c.time < first + 5.0]
    drained = total(values, "lifecycled_drain_duration_seconds_count", outcome="drained")
    left = [
        t
        for t in aws.ecs_tasks(CLUSTER, instance_id=spot)
        if t["lastStatus"] != "STOPPED" and t["group"] != "service:log-agent"
    ]
    copies = [t for t in aws.ecs_tasks(CLUSTER) if t["group"] == "reports"]
    say("\n== summary")
    say(f"  notices:              {int(total(values, 'lifecycled_notices_total'))}")
    say(f"  drains drained:       {int(drained)} of 2")
    say(f"  targets deregistered: {int(total(values, 'lifecycled_targets_deregistered_total'))}")
    say(f"  tasks stopped:        {int(total(values, 'lifecycled_tasks_stopped_total'))}")
    say(f"  jobs requeued:        {int(total(values, 'lifecycled_jobs_requeued_total'))}")
    hooks = int(total(values, "lifecycled_lifecycle_actions_total", result="CONTINUE"))
    say(f"  hooks completed:      {hooks}")
    say(f"  web targets now:      {len(aws.target_health(target_group))}")
    say(f"  instance {scaled} in the group: {aws.lifecycle_state(scaled) or 'terminated'}")
    say(f"  service exit code:    {code}; full log: {log}")
    failures: list[str] = []
    if drained < 2:
        failures.append(f"only {int(drained)} of 2 drains finished")
    if early:
        failures.append("a service task was stopped before its target left the target group")
    if left:
        failures.append(f"{len(left)} tasks left on the Spot instance")
    if len(copies) != 2:
        failures.append(f"the non-idempotent job ran {len(copies)} times (want: original + 1 copy)")
    if aws.lifecycle_state(scaled) is not None:
        failures.append("the lifecycle hook was not completed")
    if code != 0:
        failures.append(f"lifecycled exited with {code}")
    return verdict(failures)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="lifecycled-demo-ecs-"))
    aws = AwsStack()
    aws.start()
    try:
        return asyncio.run(run_demo(aws, workdir))
    finally:
        aws.stop()


if __name__ == "__main__":
    sys.exit(main())
