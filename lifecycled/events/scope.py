"""Is a notice about our account and region?

An empty `allowed_accounts` or a `None` region means no restriction. A notice that does
not say its account (moto's EventBridge drops it; direct Auto Scaling messages may lack
`AccountId` when no SNS topic supplies one) or its region is **accepted**: the check
guards against misrouted events (an organisation-wide bus, a shared queue), and a notice
that names no account still has to resolve its instance to one of our nodes or container
instances before anything is drained. A notice that names a foreign account or region is
refused.
"""

from __future__ import annotations

from lifecycled.events.fields import clip
from lifecycled.events.result import Rejected, RejectReason
from lifecycled.model import Notice


def check_scope(
    result: Notice, *, allowed_accounts: frozenset[str], region: str | None
) -> Notice | Rejected:
    account = result.account
    if allowed_accounts and account is not None and account not in allowed_accounts:
        detail = f"account {clip(account, 16)} is not allowed"
        return Rejected(RejectReason.FOREIGN_ACCOUNT, detail)
    if region is not None and result.region is not None and result.region != region:
        detail = f"region {clip(result.region, 24)} is not {region!r}"
        return Rejected(RejectReason.FOREIGN_REGION, detail)
    return result
