"""Whose notices a queue handler believes: secure by default.

The queue is the trust boundary: whoever can send to it can ask for a drain. So with no
scope configured the handler scopes itself at start-up: the allowed account is its own
credentials' (STS GetCallerIdentity), the region its clients' own. A notice naming another
account or region is then rejected (dead-lettered), whatever it says. Accepting any account
and region is an explicit setting, `LIFECYCLED_ANY_ACCOUNT_OR_REGION`.
"""

from __future__ import annotations

import logging

from lifecycled.clients.aws import AwsClients
from lifecycled.observe import fields
from lifecycled.retry import keep_trying
from lifecycled.settings import Settings

log = logging.getLogger(__name__)


async def scoped(settings: Settings, aws: AwsClients) -> Settings:
    """`settings` with the default scope filled in (queue mode, unless opted out)."""
    if settings.source != "sqs" or settings.scope.any_account_or_region:
        if settings.scope.any_account_or_region:
            log.warning("accepting notices that name any account or region")
        return settings
    accounts = settings.scope.allowed_accounts
    if not accounts:
        account = await keep_trying(
            aws.sts.caller_account, delays=settings.calls.retry_delays, what="read own account"
        )
        accounts = frozenset({account})
    region = settings.scope.region or aws.sts.region
    log.info("notices accepted from", extra=fields(accounts=sorted(accounts), region=region))
    scope = settings.scope.model_copy(update={"allowed_accounts": accounts, "region": region})
    return settings.model_copy(update={"scope": scope})
