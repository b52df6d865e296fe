"""ECS and ELBv2 behaviour moto lacks, added to the backends it serves.

- ELBv2: targets are (Id, Port) pairs (moto keyed them by Id alone, so two bridge-mode tasks
  on one instance collided); DeregisterTargets puts a target in `draining` for the group's
  `deregistration_delay.timeout_seconds`, then it is gone (`unused`, Target.NotRegistered).
- ECS tasks keep the lastStatus they are given (moto advanced it one step per DescribeTasks);
  StopTask is asynchronous: a service task with registered targets is DEACTIVATING while they
  drain, then every task is STOPPING for `config.stop_seconds`, then STOPPED.
- A small service scheduler (one pass per ticker tick): REPLICA services keep `desiredCount`
  tasks RUNNING on ACTIVE instances (the emptiest first), registering each task's targets in
  the service's target groups; tasks on DRAINING instances are replaced and then stopped, as
  ECS does. DAEMON services run one task per ACTIVE instance; on a DRAINING instance it is
  stopped once no other task is left there.
- ListAttributes filters by name alone (moto also required the value); ListTasks honours
  `serviceName`.

Everything runs under the devstack's one lock (asg.LOCK): request threads and the ticker.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from moto.ecs.models import (
    ContainerInstance,
    EC2ContainerServiceBackend,
    Service,
    Task,
    TaskDefinition,
    ecs_backends,
)
from moto.elbv2.exceptions import InvalidTargetError
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup, elbv2_backends

TargetKey = tuple[str, int]

DYNAMIC_PORTS = itertools.count(32768)


@dataclass
class EcsConfig:
    stop_seconds: float = 0.5  # STOPPING -> STOPPED (the container's stop, in short)
    # How long a new service task takes to pass its health checks: only then does the
    # scheduler stop the task it replaces on a DRAINING instance.
    healthy_after_seconds: float = 1.0


config = EcsConfig()


# --- ELBv2 ---------------------------------------------------------------------------------


def _key(group: FakeTargetGroup, target: dict[str, Any]) -> TargetKey:
    return str(target["Id"]), int(target.get("Port") or group.port or 0)


def _draining(group: FakeTargetGroup) -> dict[TargetKey, float]:
    """(Id, Port) -> time.monotonic() at which the target is gone."""
    found: dict[TargetKey, float] | None = getattr(group, "draining", None)
    if found is None:
        found = {}
        setattr(group, "draining", found)  # noqa: B010
    now = time.monotonic()
    for key, until in list(found.items()):
        if until <= now:
            del found[key]
    return found


def _keyed(group: FakeTargetGroup) -> dict[TargetKey, dict[str, Any]]:
    return {_key(group, t): t for t in group.targets.values()}


def _register(self: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
    for target in targets:
        key = _key(self, target)
        _draining(self).pop(key, None)
        self.targets[f"{key[0]}:{key[1]}"] = {"Id": key[0], "Port": key[1]}


def _deregister(self: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
    delay = float(str(self.attributes.get("deregistration_delay.timeout_seconds", 300)))
    draining = _draining(self)
    for target in targets:
        key = _key(self, target)
        if key in draining:
            continue  # deregistering again changes nothing
        if self.targets.pop(f"{key[0]}:{key[1]}", None) is None:
            raise InvalidTargetError()
        draining[key] = time.monotonic() + delay


def _deregister_terminated(self: FakeTargetGroup, instance_ids: list[str]) -> None:
    gone = [t for t in self.targets.values() if t["Id"] in instance_ids]
    if gone:
        _deregister(self, gone)


def _health_for(self: FakeTargetGroup, target: dict[str, Any], ec2: Any) -> FakeHealthStatus:
    key = _key(self, target)
    port = str(key[1])
    if f"{key[0]}:{key[1]}" in self.targets:
        return FakeHealthStatus(key[0], port, self.health_check_port, "healthy")
    if key in _draining(self):
        return FakeHealthStatus(
            key[0],
            port,
            self.health_check_port,
            "draining",
            "Target.DeregistrationInProgress",
            "Target deregistration is in progress",
        )
    return FakeHealthStatus(
        key[0],
        port,
        self.health_check_port,
        "unused",
        "Target.NotRegistered",
        "Target is not registered to the target group",
    )


def _describe_target_health(
    self: ELBv2Backend, target_group_arn: str, targets: list[dict[str, Any]]
) -> list[FakeHealthStatus]:
    group = self.target_groups.get(target_group_arn)
    if group is None:
        from moto.elbv2.exceptions import TargetGroupNotFoundError

        raise TargetGroupNotFoundError()
    if not targets:  # every registered target, and the draining ones, as AWS lists them
        targets = list(group.targets.values())
        targets += [{"Id": i, "Port": p} for i, p in _draining(group)]
    return [_health_for(group, t, self.ec2_backend) for t in targets]


def install_elbv2() -> None:
    setattr(FakeTargetGroup, "register", _register)  # noqa: B010
    setattr(FakeTargetGroup, "deregister", _deregister)  # noqa: B010
    setattr(FakeTargetGroup, "deregister_terminated_instances", _deregister_terminated)  # noqa: B010
    setattr(FakeTargetGroup, "health_for", _health_for)  # noqa: B010
    setattr(ELBv2Backend, "describe_target_health", _describe_target_health)  # noqa: B010


# --- ECS tasks -----------------------------------------------------------------------------


def _get_last_status(self: Task) -> str:
    return str(self._status)


def _set_last_status(self: Task, value: str) -> None:
    self._status = value


def _stop_task(
    self: EC2ContainerServiceBackend, cluster_str: str, task_str: str, reason: str
) -> Task:
    cluster = self._get_cluster(cluster_str)
    task_id = task_str.split("/")[-1]
    for arn, task in self.tasks.get(cluster.name, {}).items():
        if arn.endswith(task_id):
            begin_stop(self, task, reason)
            return task
    from moto.ecs.exceptions import InvalidParameterException

    raise InvalidParameterException(f"The referenced task was not found: {task_str}")


def begin_stop(backend: EC2ContainerServiceBackend, task: Task, reason: str) -> None:
    """desiredStatus STOPPED; DEACTIVATING while the service's targets drain, then STOPPING."""
    if task.desired_status == "STOPPED":
        return
    task.desired_status = "STOPPED"
    task.stopped_reason = reason
    drain_ends = deregister_task_targets(backend, task)
    setattr(task, "drain_ends", drain_ends)  # noqa: B010
    task.last_status = "DEACTIVATING" if drain_ends else "STOPPING"
    setattr(task, "stop_at", (drain_ends or time.monotonic()) + config.stop_seconds)  # noqa: B010


def _list_attributes(
    self: EC2ContainerServiceBackend,
    target_type: str,
    cluster_name: str | None = None,
    attr_name: str | None = None,
    attr_value: str | None = None,
) -> Any:
    from moto.ecs.exceptions import InvalidParameterException

    if target_type != "container-instance":
        raise InvalidParameterException("targetType must be container-instance")
    cluster = cluster_name.split("/")[-1] if cluster_name else None
    found = []
    for name, instances in self.container_instances.items():
        if cluster is not None and name != cluster:
            continue
        for instance in instances.values():
            for key, value in instance.attributes.items():
                if attr_name and key != attr_name:
                    continue
                if attr_value is not None and value != attr_value:
                    continue
                found.append((name, instance.container_instance_arn, key, value))
    return found


def _with_service_filter(list_tasks: Any) -> Any:
    def filtered(self: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> list[Task]:
        names = ["cluster_str", "container_instance", "family", "started_by", "service_name"]
        names.append("desiredStatus")
        given = dict(zip(names, args, strict=False)) | kwargs
        service = given.pop("service_name", None)
        tasks: list[Task] = list_tasks(self, **given)
        if service:
            tasks = [t for t in tasks if t.group == f"service:{service.split('/')[-1]}"]
        return tasks

    return filtered


def install_ecs() -> None:
    setattr(Task, "last_status", property(_get_last_status, _set_last_status))  # noqa: B010
    setattr(EC2ContainerServiceBackend, "stop_task", _stop_task)  # noqa: B010
    setattr(EC2ContainerServiceBackend, "list_attributes", _list_attributes)  # noqa: B010
    listing = _with_service_filter(EC2ContainerServiceBackend.list_tasks)
    setattr(EC2ContainerServiceBackend, "list_tasks", listing)  # noqa: B010


# --- the service scheduler -----------------------------------------------------------------


def _elbv2(backend: EC2ContainerServiceBackend) -> ELBv2Backend:
    return elbv2_backends[backend.account_id][backend.region_name]


def task_targets(backend: EC2ContainerServiceBackend, task: Task) -> list[tuple[str, TargetKey]]:
    """(target group ARN, (Id, Port)) for a service task, from its service's loadBalancers."""
    service = _service_of(backend, task)
    if service is None:
        return []
    found = []
    for lb in service.load_balancers:
        arn = lb.get("targetGroupArn")
        if not arn:
            continue
        port = int(lb.get("containerPort") or 0)
        ip = _task_ip(task)
        if ip:
            found.append((arn, (ip, port)))
            continue
        instance = _instance_of(backend, task)
        for container in task.containers:
            for binding in getattr(container, "network_bindings", []):
                if binding["containerPort"] == port and instance is not None:
                    found.append((arn, (instance.ec2_instance_id, int(binding["hostPort"]))))
    return found


def deregister_task_targets(backend: EC2ContainerServiceBackend, task: Task) -> float | None:
    """Deregister a stopping service task's registered targets; when their draining ends."""
    ends: list[float] = []
    for arn, (target_id, port) in task_targets(backend, task):
        group = _elbv2(backend).target_groups.get(arn)
        if group is None:
            continue
        # Only targets ECS deregisters itself hold the task in DEACTIVATING; a target
        # someone already took out (lifecycled) does not (a simplification, see README).
        if f"{target_id}:{port}" in group.targets:
            _deregister(group, [{"Id": target_id, "Port": port}])
            ends.append(_draining(group)[(target_id, port)])
    return max(ends) if ends else None


def _task_ip(task: Task) -> str | None:
    attachments: list[dict[str, Any]] = list(task.attachments)
    for attachment in attachments:
        for detail in attachment.get("details", []):
            if detail["name"] == "privateIPv4Address":
                return str(detail["value"])
    return None


def _instance_of(backend: EC2ContainerServiceBackend, task: Task) -> ContainerInstance | None:
    if not task.container_instance_arn:
        return None
    instances = backend.container_instances.get(task.cluster_name, {})
    found: ContainerInstance | None = instances.get(task.container_instance_arn.split("/")[-1])
    return found


def _service_of(backend: EC2ContainerServiceBackend, task: Task) -> Service | None:
    if not task.group.startswith("service:"):
        return None
    found: Service | None = backend.services.get(f"{task.cluster_name}:{task.group[8:]}")
    return found


def _finish_stops(backend: EC2ContainerServiceBackend, now: float) -> None:
    for cluster_name, tasks in backend.tasks.items():
        for task in tasks.values():
            if task.desired_status != "STOPPED" or task.last_status == "STOPPED":
                continue
            stop_at = getattr(task, "stop_at", now)
            drain_ends = getattr(task, "drain_ends", None)
            if task.last_status == "DEACTIVATING" and drain_ends is not None and now >= drain_ends:
                task.last_status = "STOPPING"
            if now >= stop_at:
                _release(backend, cluster_name, task)


def _release(backend: EC2ContainerServiceBackend, cluster_name: str, task: Task) -> None:
    task.last_status = "STOPPED"
    instance = _instance_of(backend, task)
    if instance is not None and task.resource_requirements:
        backend.update_container_instance_resources(
            instance, task.resource_requirements, removing=True
        )
        backend.update_cluster_resources(backend.clusters[cluster_name], -1, task_state="RUNNING")


def _host_ports(definition: TaskDefinition, network_mode: str) -> list[dict[str, Any]]:
    bindings = []
    containers: list[dict[str, Any]] = list(definition.container_definitions)
    for container in containers:
        for mapping in container.get("portMappings", []):
            port = int(mapping.get("containerPort") or 0)
            host = int(mapping.get("hostPort") or 0)
            if network_mode == "host":
                host = port
            elif not host:
                host = next(DYNAMIC_PORTS)
            bindings.append(
                {"containerPort": port, "hostPort": host, "protocol": "tcp", "bindIP": "0.0.0.0"}
            )
    return bindings


def _start(
    backend: EC2ContainerServiceBackend, service: Service, instance: ContainerInstance
) -> Task:
    cluster = backend.clusters[service.cluster_name]
    definition = backend.describe_task_definition(str(service.task_definition))
    needs = backend._calculate_task_resource_requirements(definition)
    network = service.network_configuration or None
    task = Task(
        cluster,
        definition,
        instance.container_instance_arn,
        needs,
        backend=backend,
        group=f"service:{service.name}",
        started_by=str(service.deployments[0]["id"]) if service.deployments else "ecs-svc",
        launch_type="EC2",
        networking_configuration=network,
    )
    if definition.network_mode != "awsvpc":
        for container in task.containers:
            bindings = _host_ports(definition, str(definition.network_mode))
            setattr(container, "network_bindings", bindings)  # noqa: B010
    for container in task.containers:
        container.last_status = "RUNNING"
    setattr(task, "started_mono", time.monotonic())  # noqa: B010
    backend.update_container_instance_resources(instance, needs)
    backend.update_cluster_resources(cluster, 1)
    backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
    for arn, (target_id, port) in task_targets(backend, task):
        group = _elbv2(backend).target_groups.get(arn)
        if group is not None:
            _register(group, [{"Id": target_id, "Port": port}])
    return task


def _placeable(backend: EC2ContainerServiceBackend, service: Service) -> ContainerInstance | None:
    definition = backend.describe_task_definition(str(service.task_definition))
    needs = backend._calculate_task_resource_requirements(definition)
    candidates = [
        i
        for i in backend.container_instances.get(service.cluster_name, {}).values()
        if i.status == "ACTIVE" and backend._can_be_placed(i, needs)
    ]
    return min(candidates, key=lambda i: i.running_tasks_count, default=None)


def _live(tasks: list[Task]) -> list[Task]:
    return [t for t in tasks if t.desired_status == "RUNNING"]


def _tasks_of(backend: EC2ContainerServiceBackend, service: Service) -> list[Task]:
    group = f"service:{service.name}"
    return [t for t in backend.tasks.get(service.cluster_name, {}).values() if t.group == group]


def _healthy(task: Task) -> bool:
    started: float = getattr(task, "started_mono", 0.0)
    return time.monotonic() - started >= config.healthy_after_seconds


def _reconcile_replica(backend: EC2ContainerServiceBackend, service: Service) -> None:
    live = _live(_tasks_of(backend, service))
    on_draining = [t for t in live if (i := _instance_of(backend, t)) and i.status != "ACTIVE"]
    healthy = len(live) - len(on_draining)
    while healthy < service.desired_count:
        instance = _placeable(backend, service)
        if instance is None:
            break  # no capacity: the service stays short, as on ECS
        live.append(_start(backend, service, instance))
        healthy += 1
    # Replacements that passed their health checks let the tasks on draining instances go
    # (their targets drain first).
    ready = sum(1 for t in live if t not in on_draining and _healthy(t))
    surplus = max(0, ready + len(on_draining) - service.desired_count)
    for task in on_draining[: min(surplus, len(on_draining))]:
        begin_stop(backend, task, "Task stopped because the container instance is DRAINING")
    for task in [t for t in live if t not in on_draining][service.desired_count :]:
        begin_stop(backend, task, "Scaling activity initiated by deployment")
    service.running_count = len(_live(_tasks_of(backend, service)))
    service.pending_count = 0


def _reconcile_daemon(backend: EC2ContainerServiceBackend, service: Service) -> None:
    tasks = backend.tasks.get(service.cluster_name, {}).values()
    mine = [
        t for t in tasks if t.group == f"service:{service.name}" and t.desired_status == "RUNNING"
    ]
    by_instance = {t.container_instance_arn: t for t in mine}
    for instance in list(backend.container_instances.get(service.cluster_name, {}).values()):
        arn = instance.container_instance_arn
        if instance.status == "ACTIVE" and arn not in by_instance:
            needs = backend._calculate_task_resource_requirements(
                backend.describe_task_definition(str(service.task_definition))
            )
            if backend._can_be_placed(instance, needs):
                _start(backend, service, instance)
        elif instance.status != "ACTIVE" and arn in by_instance:
            others = [
                t
                for t in tasks
                if t.container_instance_arn == arn
                and t.last_status != "STOPPED"
                and t.group != f"service:{service.name}"
                and not _is_daemon(backend, t)
            ]
            if not others:  # ECS stops daemon tasks last
                begin_stop(backend, by_instance[arn], "Container instance is DRAINING")
    service.running_count = len(mine)
    service.pending_count = 0


def _is_daemon(backend: EC2ContainerServiceBackend, task: Task) -> bool:
    service = _service_of(backend, task)
    return service is not None and service.scheduling_strategy == "DAEMON"


def reconcile(backend: EC2ContainerServiceBackend, now: float) -> None:
    _finish_stops(backend, now)
    for service in list(backend.services.values()):
        if service.status != "ACTIVE" or not service.task_definition:
            continue
        if service.scheduling_strategy == "DAEMON":
            _reconcile_daemon(backend, service)
        else:
            _reconcile_replica(backend, service)


def tick_all(now: float) -> None:
    for account in list(ecs_backends.values()):
        for backend in list(account.values()):
            reconcile(backend, now)
