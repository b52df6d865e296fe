"""All wiring in one place: read `Service.run` and you know every long-running task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from lifecycled import __version__
from lifecycled.clients.aws import AwsClients, region_known
from lifecycled.clients.checkpoint import CheckpointClient
from lifecycled.clients.kube import KubeClient
from lifecycled.clients.leader import lead
from lifecycled.coordinator import Coordinator
from lifecycled.execute import executor_for
from lifecycled.kube_events import EventRecorder
from lifecycled.lifecycle import HookFinder, LifecycleHooks
from lifecycled.notify import Notifier
from lifecycled.observe import Metrics, fields
from lifecycled.ownership import Ownership
from lifecycled.pace import RateLimiter
from lifecycled.platforms import Platform
from lifecycled.platforms.kubernetes import KubernetesPlatform
from lifecycled.replace import ReplaceAhead
from lifecycled.report import Reporter
from lifecycled.server import serve_http
from lifecycled.settings import Settings
from lifecycled.sources.imds import with_own_region
from lifecycled.sources.sqs import SqsSource
from lifecycled.trust import scoped, with_cluster_name

log = logging.getLogger(__name__)

AWS_SERVICES = ("sqs", "ec2", "autoscaling")
ECS_SERVICES = ("ecs", "elbv2")


class Service:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.ready = asyncio.Event()
        self.addresses: list[tuple[str, int]] = []
        self.coordinator: Coordinator | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down in phases (see docs/architecture.md)."""
        settings, metrics = self.settings, self.metrics
        host, port = settings.observe.metrics_host_port
        async with contextlib.AsyncExitStack() as stack:
            self.addresses = await stack.enter_async_context(
                serve_http(host, port, metrics, self.ready)
            )
            if settings.source == "imds" and not region_known(settings):
                settings = self.settings = await with_own_region(settings, metrics)
            services = AWS_SERVICES + aws_services_for(settings)
            aws = await stack.enter_async_context(AwsClients.open(settings, metrics, services))
            settings = self.settings = await scoped(settings, aws)
            platform = await stack.enter_async_context(open_platform(settings, aws, metrics))
            if isinstance(platform, KubernetesPlatform):
                settings = self.settings = await with_cluster_name(
                    settings, aws, platform.node_sample
                )
            hooks = LifecycleHooks(aws, settings, metrics)
            reporter = await stack.enter_async_context(
                open_reporter(settings, platform, aws, metrics)
            )
            # A DaemonSet pod only ever hears about its own machine: no tag check there.
            ownership = Ownership(aws, settings) if settings.source == "sqs" else None
            # A dry run is the executor chosen here: the coordinator decides the same either way.
            executor = executor_for(settings, platform, hooks, metrics, reporter)
            # Replace-ahead is for Auto Scaling groups of Kubernetes nodes (docs/jobs.md).
            replacer = (
                ReplaceAhead(aws, platform, settings, metrics)
                if settings.replace.ahead and isinstance(platform, KubernetesPlatform)
                else None
            )
            coordinator = Coordinator(
                platform,
                hooks,
                settings,
                metrics,
                ownership=ownership,
                executor=executor,
                reporter=reporter,
                replacer=replacer,
            )
            self.coordinator = coordinator
            log.info(
                "lifecycled starting",
                extra=fields(
                    version=__version__,
                    source=settings.source,
                    platform=settings.platform,
                    dry_run=settings.dry_run,
                ),
            )
            if settings.dry_run:
                log.warning("dry run: nothing will be changed in Kubernetes, ECS or Auto Scaling")

            async def work(until: asyncio.Event, ready: asyncio.Event) -> None:
                async with coordinator.running():
                    source = make_source(settings, aws, metrics, coordinator)
                    await source.run(until, ready=ready)

            if settings.ha.leader_election and settings.dry_run:
                # A dry run changes nothing, so replicas acting at once is harmless; taking
                # the Lease from a live handler that shares its name would not be.
                log.warning("dry run: leader election is off; this replica never takes a Lease")
            if settings.ha.leader_election and not settings.dry_run:
                self.ready.set()  # a standby is healthy and ready; it just does not consume
                await lead(settings, metrics, stop, work)
            else:
                await work(stop, self.ready)
            self.ready.clear()
            log.info("lifecycled stopped")


def aws_services_for(settings: Settings) -> tuple[str, ...]:
    """The AWS clients a platform needs beyond the common ones."""
    scoping: tuple[str, ...] = (
        ("sts",) if settings.source == "sqs" and not settings.scope.any_account_or_region else ()
    )
    scoping += ("sns",) if settings.notify.sns_topic_arn else ()
    if settings.platform == "ecs":
        return ECS_SERVICES + scoping
    wanted = {"elbv2": settings.lb.target_groups_configured, "elb": bool(settings.lb.classic_names)}
    return tuple(service for service, needed in wanted.items() if needed) + scoping


@contextlib.asynccontextmanager
async def open_platform(
    settings: Settings, aws: AwsClients, metrics: Metrics
) -> AsyncIterator[Platform]:
    if settings.platform == "ecs":
        from lifecycled.platforms.ecs import EcsPlatform

        yield EcsPlatform(aws, settings, metrics)
        return
    calls = settings.calls
    async with (
        KubeClient.open(
            metrics,
            calls.timeout_seconds,
            calls.retry_delays,
            limiter=RateLimiter(calls.kube_api_qps, calls.kube_api_burst),
            connections=calls.kube_connections,
        ) as kube,
        CheckpointClient.open(metrics) as checkpoints,
    ):
        yield KubernetesPlatform(kube, aws, settings, metrics, checkpoints)


@contextlib.asynccontextmanager
async def open_reporter(
    settings: Settings, platform: Platform, aws: AwsClients, metrics: Metrics
) -> AsyncIterator[Reporter]:
    """Kubernetes Events (Kubernetes mode) and notifications, each written by its own workers;
    nothing is written in a dry run."""
    events = getattr(platform, "events", None)
    recorder = events if isinstance(events, EventRecorder) and settings.notify.kube_events else None
    notifier = Notifier.of(settings, metrics, aws) if not settings.dry_run else None
    async with contextlib.AsyncExitStack() as stack:
        if recorder is not None and not settings.dry_run:
            await stack.enter_async_context(recorder.running())
        if notifier is not None:
            await stack.enter_async_context(notifier.running())
        yield Reporter(
            metrics, events=recorder, notifier=notifier, cluster=settings.scope.cluster_name
        )


class Source(Protocol):
    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None: ...


def make_source(
    settings: Settings, aws: AwsClients, metrics: Metrics, coordinator: Coordinator
) -> Source:
    if settings.source == "imds":
        from lifecycled.sources.imds import ImdsSource

        return ImdsSource(settings, metrics, coordinator.submit, hooks=HookFinder(aws))
    return SqsSource(aws, settings, metrics, coordinator.submit)


@contextlib.asynccontextmanager
async def running(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[Service]:
    """Run a Service in the background (tests, demo); stop it gracefully on exit."""
    service = Service(settings, metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop), name="lifecycled")
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises what broke start-up
    try:
        yield service
    finally:
        stop.set()
        await task
