"""STS: whose credentials these are (the account a default scope admits)."""

from __future__ import annotations

from lifecycled.clients.aws.base import ServiceClient


class StsClient(ServiceClient):
    service = "sts"

    async def caller_account(self) -> str:
        reply = await self._call("get_caller_identity")
        return str(reply["Account"])

    @property
    def region(self) -> str | None:
        """The region the clients were opened in (after botocore's own chain)."""
        region = getattr(getattr(self._client, "meta", None), "region_name", None)
        return str(region) if region else None
