"""Leader election on a coordination.k8s.io Lease (the client library's own elector).

Only the holder consumes and acts; standbys wait. A new leader resumes open drains from
their records. The lease is not released on shutdown (the library has no release): a
standby takes over at most one lease duration later.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable

from kubernetes_asyncio.leaderelection.electionconfig import Config as ElectionConfig
from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from lifecycled.clients.kube import KubeClient
from lifecycled.observe import Metrics, fields
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

Work = Callable[[asyncio.Event, asyncio.Event], Awaitable[None]]


async def lead(settings: Settings, metrics: Metrics, stop: asyncio.Event, work: Work) -> None:
    """Stand for election until `stop`; run `work` for as long as we hold the lease."""
    identity = settings.ha.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    async with KubeClient.open(
        metrics, settings.calls.timeout_seconds, settings.calls.retry_delays
    ) as kube:
        while not stop.is_set():
            await _term(settings, metrics, stop, work, kube, identity)


async def _term(
    settings: Settings,
    metrics: Metrics,
    stop: asyncio.Event,
    work: Work,
    kube: KubeClient,
    identity: str,
) -> None:
    """One candidacy: wait to acquire, work while renewing, return when lost or stopped."""
    leading = asyncio.Event()
    finished = asyncio.Event()

    async def started() -> None:
        leading.set()
        metrics.leader.set(1)
        log.info("became leader", extra=fields(identity=identity))
        try:
            await work(stop, asyncio.Event())
        finally:
            finished.set()

    async def stopped() -> None:
        leading.clear()
        metrics.leader.set(0)
        log.warning("lost leadership", extra=fields(identity=identity))

    lock = LeaseLock(settings.ha.lease_name, settings.ha.lease_namespace, identity, kube.api)
    config = ElectionConfig(
        lock,
        lease_duration=settings.ha.lease_duration_seconds,
        renew_deadline=settings.ha.lease_renew_seconds,
        retry_period=settings.ha.lease_retry_seconds,
        onstarted_leading=started,
        onstopped_leading=stopped,
    )
    election = asyncio.create_task(LeaderElection(config).run(), name="leader-election")
    stopping = asyncio.create_task(stop.wait(), name="stop-wait")
    try:
        await asyncio.wait([election, stopping], return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set() and leading.is_set():
            await finished.wait()  # the work saw `stop` too: let it shut down in phases
    finally:
        election.cancel()
        stopping.cancel()
        outcomes = await asyncio.gather(election, stopping, return_exceptions=True)
        metrics.leader.set(0)
    error = outcomes[0]
    if isinstance(error, Exception):
        log.error("leader election failed; will retry: %r", error, extra=fields(error=repr(error)))
        await asyncio.sleep(settings.ha.lease_retry_seconds)
