"""SQS consumer: long-poll, handle messages concurrently, delete each only on its own success.

- Notices are deleted once the coordinator has recorded their intent on the machine.
- Rejected messages are counted, logged with their message id (never the body) and moved to
  the redrive policy's dead-letter queue at once (a copy with the reason, then the original
  deleted); if that fails they are hidden for MAX_RELEASE_SECONDS and the redrive policy
  takes them in the end. Deleted only when there is no DLQ.
- Anything that fails part-way is released with a backoff and comes back later.
- A notice about another cluster's instance is deleted (`LIFECYCLED_NOT_OURS=delete`) or
  passed on to the queue's other consumers (`release`): made visible again after
  `LIFECYCLED_NOT_OURS_VISIBILITY_SECONDS`; when our own receives would otherwise push it
  into the dead-letter queue (its receive count reached maxReceiveCount) a fresh copy is
  sent and the original deleted, at most `LIFECYCLED_NOT_OURS_MAX_FORWARDS` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from lifecycled.batch import Batcher
from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.sqs import QueueMessage
from lifecycled.errors import LifecycledError, PermanentError, TemporaryError
from lifecycled.events import check_scope, parse_message
from lifecycled.events.result import Ignored, Rejected
from lifecycled.model import Disposition, Notice
from lifecycled.observe import Metrics, fields
from lifecycled.retry import keep_trying
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Notice], Awaitable[object]]
MAX_RELEASE_SECONDS = 300


class SqsSource:
    def __init__(
        self, aws: AwsClients, settings: Settings, metrics: Metrics, handle: Handler
    ) -> None:
        assert settings.queue.url
        self._aws = aws
        self._queue_url = settings.queue.url
        self._settings = settings
        self._metrics = metrics
        self._handle = handle
        # `concurrency` notices handled at once; up to four times that received and held
        # (waiting for a handler, or for their delete): receiving never waits on a delete.
        self._slots = asyncio.Semaphore(settings.queue.concurrency)
        self._held = asyncio.Semaphore(settings.queue.concurrency * 4)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._stopped_at: float | None = None  # loop time the first receiver saw the stop
        self._idle.set()
        self._dead_letter = True
        self._max_receives: int | None = None
        self._dead_letter_url: str | None = None
        # Deletes and dead-letter copies go out ten to a request (each caller still waits for
        # its own entry): a storm or a poison flood costs a tenth of the calls.
        self._deletes: Batcher[str] = Batcher(
            lambda handles: aws.sqs.delete_batch(self._queue_url, handles)
        )
        self._aside: Batcher[tuple[QueueMessage, str]] = Batcher(self._move_aside)

    async def _move_aside(self, rejected: list[tuple[QueueMessage, str]]) -> list[Exception | None]:
        assert self._dead_letter_url is not None
        return await self._aws.sqs.move_aside_batch(self._dead_letter_url, rejected)

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Consume until `stop` is set; then let in-flight messages finish (bounded by grace)."""
        redrive = await keep_trying(
            lambda: self._aws.sqs.redrive(self._queue_url),
            delays=self._settings.calls.retry_delays,
            what="read the queue's redrive policy",
        )
        self._max_receives = redrive.max_receive_count if redrive else None
        self._dead_letter_url = redrive.dead_letter_url if redrive else None
        self._dead_letter = redrive is not None
        if not self._dead_letter:
            log.warning("queue has no redrive policy; rejected messages will be deleted")
        if ready is not None:
            ready.set()
        async with asyncio.TaskGroup() as tg:
            receivers = [
                tg.create_task(self._consume(stop, tg), name=f"receive-{n}")
                for n in range(self._settings.queue.receivers)
            ]
            await asyncio.wait(receivers)
            await self._drain_in_flight()

    async def _consume(self, stop: asyncio.Event, tg: asyncio.TaskGroup) -> None:
        """One long-poll loop; several run at once, so a storm's receives overlap."""
        while not stop.is_set():
            batch = await self._receive(stop)
            for message in batch:
                await self._held.acquire()
                self._in_flight += 1
                self._idle.clear()
                tg.create_task(self._guarded(message), name=f"message-{message.message_id}")

    async def _receive(self, stop: asyncio.Event) -> list[QueueMessage]:
        receive = asyncio.ensure_future(
            self._aws.sqs.receive(
                self._queue_url,
                max_messages=min(self._settings.queue.max_messages, self._free_slots()),
                wait_seconds=self._settings.queue.wait_seconds,
                visibility_seconds=self._settings.queue.visibility_seconds,
            )
        )
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([receive, stopping], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            receive.cancel()
            raise
        finally:
            stopping.cancel()
        if not receive.done():
            # Stopping. A long poll cancelled here would go on at the queue and could still
            # take a notice, which would then stay invisible for its whole visibility timeout
            # (a Spot warning a minute late). So it ends (within `wait_seconds`) and what it
            # brought is handed back at once.
            self._stopped_at = self._stopped_at or asyncio.get_running_loop().time()
            with contextlib.suppress(LifecycledError):
                await self._hand_back(await receive)
            return []
        try:
            batch = receive.result()
        except LifecycledError as exc:
            log.error("receiving from the queue failed", extra=fields(error=str(exc)))
            await asyncio.sleep(
                self._settings.calls.retry_delays[-1] if self._settings.calls.retry_delays else 1
            )
            return []
        self._metrics.messages.labels("received").inc(len(batch))
        return batch

    def _free_slots(self) -> int:
        return max(1, self._held._value)

    async def _hand_back(self, batch: list[QueueMessage]) -> None:
        """Visible again at once, for the next consumer (received as we stopped)."""
        for message in batch:
            with contextlib.suppress(LifecycledError):
                await self._aws.sqs.change_visibility(self._queue_url, message.receipt_handle, 0)
                self._metrics.messages.labels("released").inc()

    async def _drain_in_flight(self) -> None:
        # Phase two of shutdown: in-flight messages only need to record intent (seconds). The
        # grace counts from the stop, not from the last long poll's end.
        loop = asyncio.get_running_loop()
        stopped_at = self._stopped_at or loop.time()
        left = self._settings.calls.shutdown_grace_seconds - (loop.time() - stopped_at)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max(0.0, left))

    async def _guarded(self, message: QueueMessage) -> None:
        try:
            async with self._keep_invisible(message):
                await self._process(message)
        except Exception:
            log.exception("message handling failed", extra=fields(message_id=message.message_id))
            await self._release(message)
        finally:
            self._held.release()
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _process(self, message: QueueMessage) -> None:
        result = parse_message(message.body)
        if isinstance(result, Notice):
            result = check_scope(
                result,
                allowed_accounts=self._settings.scope.allowed_accounts,
                region=self._settings.scope.region,
            )
        if isinstance(result, Rejected):
            await self._reject(message, result)
            return
        if isinstance(result, Ignored):
            self._metrics.ignored.labels(result.reason).inc()
            log.info(
                "message ignored",
                extra=fields(
                    message_id=message.message_id, reason=result.reason, detail=result.detail
                ),
            )
            await self._delete(message)
            return
        self._metrics.notices.labels(result.kind).inc()
        log.info(
            "notice received",
            extra=fields(
                message_id=message.message_id,
                kind=result.kind,
                event_id=result.event_id,
                instances=list(result.instance_ids),
                event_time=result.event_time.isoformat(),
            ),
        )
        try:
            async with self._slots:
                dispositions = await self._handle(result)
        except TemporaryError as exc:
            log.warning(
                "notice not handled yet; will retry",
                extra=fields(message_id=message.message_id, error=str(exc)),
            )
            await self._release(message)
            return
        except PermanentError as exc:
            # Forbidden, invalid: back with a back-off; the redrive policy moves it aside
            # (evidence kept) if it never succeeds.
            log.error(
                "notice could not be handled",
                extra=fields(message_id=message.message_id, kind=result.kind, error=str(exc)),
            )
            await self._release(message)
            return
        if _concerns_others(dispositions):
            await self._not_ours(message)
            return
        await self._delete(message)

    async def _not_ours(self, message: QueueMessage) -> None:
        if self._settings.queue.not_ours == "delete":
            await self._delete(message)
            self._metrics.not_ours_messages.labels("deleted").inc()
            return
        fifo = self._queue_url.endswith(".fifo")
        at_limit = self._max_receives is not None and message.receive_count >= self._max_receives
        if not at_limit or fifo:
            # Visible again soon for the other handlers; not at once, or we take it back.
            await self._aws.sqs.change_visibility(
                self._queue_url,
                message.receipt_handle,
                self._settings.queue.not_ours_visibility_seconds,
            )
            self._metrics.not_ours_messages.labels("released").inc()
            return
        # The next receive would dead-letter it, though it is only meant for someone else.
        if message.forwards >= self._settings.queue.not_ours_max_forwards:
            log.warning(
                "no handler claimed this notice; dropped",
                extra=fields(message_id=message.message_id, forwards=message.forwards),
            )
            await self._delete(message)
            self._metrics.not_ours_messages.labels("dropped").inc()
            return
        await self._aws.sqs.forward_message(
            self._queue_url,
            message.body,
            forwards=message.forwards + 1,
            # Visible at once: a new message is offered to every waiting long poll alike,
            # where a visibility timeout running out favours whoever polls next (often us).
            delay_seconds=0,
        )
        await self._delete(message)
        self._metrics.not_ours_messages.labels("forwarded").inc()

    async def _reject(self, message: QueueMessage, result: Rejected) -> None:
        self._metrics.rejected.labels(result.reason).inc()
        log.warning(
            "message rejected",
            extra=fields(
                message_id=message.message_id,
                reason=result.reason,
                detail=result.detail,
                receive_count=message.receive_count,
                dead_letter=self._dead_letter,
            ),
        )
        if not self._dead_letter:
            await self._delete(message)
            return
        # Straight to the dead-letter queue: released at once it would come back
        # maxReceiveCount times and crowd real warnings out of every receive.
        if self._dead_letter_url is not None:
            try:
                await self._aside.submit((message, str(result.reason)))
            except LifecycledError as exc:
                log.warning(
                    "could not move a rejected message to the dead-letter queue",
                    extra=fields(message_id=message.message_id, error=str(exc)),
                )
            else:
                await self._delete(message)
                self._metrics.messages.labels("dead_lettered").inc()
                return
        # Out of the way for a while; the redrive policy moves it aside in the end.
        await self._aws.sqs.change_visibility(
            self._queue_url, message.receipt_handle, MAX_RELEASE_SECONDS
        )
        self._metrics.messages.labels("released").inc()

    async def _delete(self, message: QueueMessage) -> None:
        await self._deletes.submit(message.receipt_handle)
        self._metrics.messages.labels("deleted").inc()

    async def _release(self, message: QueueMessage) -> None:
        delay = min(MAX_RELEASE_SECONDS, 2 ** min(message.receive_count, 8))
        with contextlib.suppress(LifecycledError):
            await self._aws.sqs.change_visibility(self._queue_url, message.receipt_handle, delay)
            self._metrics.messages.labels("released").inc()

    @contextlib.asynccontextmanager
    async def _keep_invisible(self, message: QueueMessage) -> AsyncIterator[None]:
        """Extend the message's visibility while it is being handled."""
        period = self._settings.queue.visibility_seconds / 2

        async def extend() -> None:
            while True:
                await asyncio.sleep(period)
                with contextlib.suppress(LifecycledError):
                    await self._aws.sqs.change_visibility(
                        self._queue_url,
                        message.receipt_handle,
                        self._settings.queue.visibility_seconds,
                    )

        extender = asyncio.create_task(extend(), name=f"visibility-{message.message_id}")
        try:
            yield
        finally:
            extender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await extender


def _concerns_others(dispositions: object) -> bool:
    """Some instance of the notice belongs to someone else (a coordinator's dispositions)."""
    return isinstance(dispositions, list) and Disposition.NOT_OURS in dispositions
