"""Building, checking and merging the rollup that analytics/rolled.py reads. The counts themselves are kept by the
apps that write the rows (contacts/services/rollup.py, campaigns/rollup.py); this module only asks them to count
again from their rows (a first build, or rows written without the services) and merges the rollup every minute
(`rollup_maintain`, a django-q schedule: analytics/migrations/0002)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import Count, Sum

from campaigns import rollup as campaigns_rollup
from contacts.models import ContactActivity, Conversation, ConversationStatus, MessageDirection
from contacts.services import rollup as inbox
from mktx.tallies.models import Tally
from mktx.tallies.services import grouped_by_quarter, tallies_built, tallies_built_now, tallies_merge

logger = logging.getLogger("mktx.analytics")


def rollup_build(account_ids: Sequence[Any] | None = None) -> int:
    """Count everything again from the rows (of these accounts, or of all; a build of all marks the rollup built,
    and the overview reads it from then on). Answers the rows written."""
    written = inbox.contacts_rollup_rebuild(account_ids) + campaigns_rollup.campaigns_rollup_rebuild(account_ids)
    if account_ids is None:
        tallies_built_now()
    return written


def rollup_maintain() -> int:
    """Every minute: the first build when there was none yet, then the merge. Answers the rows merged."""
    if not tallies_built():
        logger.info("rollup: first build, %s rows", rollup_build())
    return tallies_merge()


Key = tuple[Any, str, datetime]


def rollup_differences(account_ids: Sequence[Any] | None = None) -> list[str]:
    """Where the rollup and the rows disagree (nothing when it is right): each metric per account and quarter-hour,
    the conversations open now by the events against their status, and the activity."""
    contacts, messages, events = inbox.rows_of(account_ids)
    expected: dict[Key, int] = defaultdict(int)
    for account_id, metric, at, n in inbox.counts_of(contacts, messages, events):
        expected[(account_id, metric, at)] += n
    deliveries = campaigns_rollup.rows_of(account_ids)
    for account_id, metric, at, n in campaigns_rollup.counts_of(deliveries):
        expected[(account_id, metric, at)] += n
    tallies = Tally.objects.all() if account_ids is None else Tally.objects.filter(account_id__in=account_ids)
    found = {
        (row["account_id"], row["metric"], row["bucket"]): int(row["n"])
        for row in tallies.values("account_id", "metric", "bucket").annotate(n=Sum("n")).order_by()
    }
    out = [
        f"{metric} {at:%Y-%m-%d %H:%M} account {account}: rollup {found.get(key, 0)}, rows {expected.get(key, 0)}"
        for key in sorted(set(expected) | set(found), key=str)
        for account, metric, at in [key]
        if found.get(key, 0) != expected.get(key, 0)
    ]
    open_now = Conversation.objects.filter(status=ConversationStatus.OPEN)
    if account_ids is not None:
        open_now = open_now.filter(account_id__in=account_ids)
    is_open = dict(open_now.values_list("account_id").annotate(n=Count("pk")).order_by())
    balance: dict[Any, int] = defaultdict(int)
    for (account, metric, _), n in found.items():
        balance[account] += n if metric == inbox.OPENED else -n if metric == inbox.CLOSED else 0
    out += [
        f"open now, account {account}: by the events {balance.get(account, 0)}, by the status {is_open.get(account, 0)}"
        for account in sorted(set(balance) | set(is_open), key=str)
        if balance.get(account, 0) != is_open.get(account, 0)
    ]
    activity = ContactActivity.objects.all()
    if account_ids is not None:
        activity = activity.filter(account_id__in=account_ids)
    inbound = messages.filter(direction=MessageDirection.INBOUND)
    want = set(grouped_by_quarter(inbound, "created_at", ["account_id", "conversation__contact_id"]))
    have = set(activity.values_list("account_id", "contact_id", "bucket"))
    out += [f"activity missing: contact {c} at {b:%Y-%m-%d %H:%M}" for _, c, b in sorted(want - have, key=str)]
    out += [f"activity without a DM: contact {c} at {b:%Y-%m-%d %H:%M}" for _, c, b in sorted(have - want, key=str)]
    return out
