from __future__ import annotations

from dataclasses import replace

from lifecycled.events import Rejected, RejectReason, check_scope, parse_message
from lifecycled.model import Notice
from tests.events.conftest import fixture_bytes

NONE: frozenset[str] = frozenset()


def spot() -> Notice:
    result = parse_message(fixture_bytes("spot_interruption.json"))
    assert isinstance(result, Notice)
    return result  # account 123456789012, region us-east-1


def test_no_restriction() -> None:
    assert check_scope(spot(), allowed_accounts=NONE, region=None) == spot()


def test_allowed_account_and_region() -> None:
    result = check_scope(
        spot(), allowed_accounts=frozenset({"123456789012", "1"}), region="us-east-1"
    )
    assert result == spot()


def test_foreign_account() -> None:
    result = check_scope(spot(), allowed_accounts=frozenset({"210987654321"}), region=None)
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.FOREIGN_ACCOUNT


def test_foreign_region() -> None:
    result = check_scope(spot(), allowed_accounts=NONE, region="eu-west-1")
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.FOREIGN_REGION


def test_account_is_checked_before_region() -> None:
    result = check_scope(spot(), allowed_accounts=frozenset({"2"}), region="eu-west-1")
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.FOREIGN_ACCOUNT


def test_notice_without_account_is_accepted() -> None:
    anonymous = replace(spot(), account=None)
    assert check_scope(anonymous, allowed_accounts=frozenset({"2"}), region=None) == anonymous


def test_notice_without_region_is_accepted() -> None:
    nowhere = replace(spot(), region=None)
    assert check_scope(nowhere, allowed_accounts=NONE, region="eu-west-1") == nowhere


def test_sns_topic_supplies_the_scope_of_a_direct_message() -> None:
    direct = parse_message(fixture_bytes("lifecycle_terminate_direct.json"))
    wrapped = parse_message(fixture_bytes("lifecycle_terminate_sns.json"))
    assert isinstance(direct, Notice)
    assert isinstance(wrapped, Notice)
    only_other = frozenset({"210987654321"})
    assert check_scope(direct, allowed_accounts=only_other, region="eu-west-1") == direct
    rejected = check_scope(wrapped, allowed_accounts=only_other, region=None)
    assert isinstance(rejected, Rejected)
    assert rejected.reason is RejectReason.FOREIGN_ACCOUNT
