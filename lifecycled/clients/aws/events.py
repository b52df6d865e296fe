"""EventBridge: the reads `lifecycled check` makes (which rules exist, where they send)."""

from __future__ import annotations

from lifecycled.clients.aws.base import ServiceClient


class EventsClient(ServiceClient):
    service = "events"

    async def rules_targeting(self, target_arn: str) -> list[str]:
        """Names of the default bus's rules with `target_arn` among their targets."""
        names: list[str] = []
        token: str | None = None
        while True:
            extra = {"NextToken": token} if token else {}
            reply = await self._call("list_rule_names_by_target", TargetArn=target_arn, **extra)
            names += [str(n) for n in reply.get("RuleNames", [])]
            token = reply.get("NextToken")
            if not token:
                return sorted(names)

    async def rule_pattern(self, name: str) -> str | None:
        """The rule's event pattern (JSON text) if it is enabled; None: disabled or absent."""
        reply = await self._call("describe_rule", Name=name)
        if reply.get("State") != "ENABLED":
            return None
        pattern = reply.get("EventPattern")
        return str(pattern) if pattern else None
