"""Event parsing: message bodies in, typed notices out. Pure; no AWS calls.

The notice itself is vocabulary (`lifecycled.model`); what is exported here is parsing.
"""

from lifecycled.events.actions import default_action
from lifecycled.events.decode import MAX_BODY_BYTES, MAX_CONTAINERS, MAX_DEPTH, MAX_MEMBERS
from lifecycled.events.parse import parse_message
from lifecycled.events.result import Ignored, IgnoreReason, ParseResult, Rejected, RejectReason
from lifecycled.events.scope import check_scope

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CONTAINERS",
    "MAX_DEPTH",
    "MAX_MEMBERS",
    "IgnoreReason",
    "Ignored",
    "ParseResult",
    "RejectReason",
    "Rejected",
    "check_scope",
    "default_action",
    "parse_message",
]
