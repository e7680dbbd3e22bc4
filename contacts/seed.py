"""Set-based demo data: contacts with tags and attributes, conversations and messages, written by a handful of
`INSERT ... SELECT` statements over a generated series (PostgreSQL's generate_series, SQLite's recursive CTE), so a
million contacts take seconds, not hours."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from contacts.models import Contact, Tag
from contacts.services.rollup import contacts_rollup_rebuild
from mktx.accounts.models import Account, AccountStatus
from mktx.iam.models import Merchant
from mktx.tallies.services import tallies_built

TAGS = ("vip", "customer", "newsletter", "returning", "wholesale", "lead", "promo", "loyal", "premium", "dormant")
MESSAGES_PER_CONVERSATION = 4


@dataclass(frozen=True)
class Dialect:
    series: str  # a CTE producing column g from 1 to %(n)s
    uuid: str
    now: str
    days_ago: str  # of an SQL integer expression {x}
    minutes_ago: str
    json_object: str
    text: str  # cast an integer expression {x} to text
    bigint: str  # cast a text expression {x} to an integer
    json_bool: str  # a boolean expression {x} as a JSON true/false inside json_object
    json_array_agg: str
    empty_json_array: str


POSTGRES = Dialect(
    series="WITH s AS (SELECT g FROM generate_series(1, %(n)s) AS g)",
    uuid="gen_random_uuid()",
    now="now()",
    days_ago="(now() - ({x}) * interval '1 day')",
    minutes_ago="(now() - ({x}) * interval '1 minute')",
    json_object="jsonb_build_object",
    text="({x})::text",
    bigint="({x})::bigint",
    json_bool="({x})",
    json_array_agg="jsonb_agg(t.name ORDER BY t.name)",  # over the CTE t
    empty_json_array="'[]'::jsonb",
)
SQLITE = Dialect(
    series="WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %(n)s)",
    uuid="lower(hex(randomblob(16)))",
    now="strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')",
    days_ago="strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || ({x}) || ' days')",
    minutes_ago="strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || ({x}) || ' minutes')",
    json_object="json_object",
    text="CAST(({x}) AS TEXT)",
    bigint="CAST(({x}) AS INTEGER)",
    json_bool="json(CASE WHEN {x} THEN 'true' ELSE 'false' END)",
    json_array_agg="json_group_array(t.name)",
    empty_json_array="'[]'",
)


def _dialect() -> Dialect:
    return POSTGRES if connection.vendor == "postgresql" else SQLITE


def _uuid_param(value: uuid.UUID) -> str:
    return str(value) if connection.vendor == "postgresql" else value.hex


def seed_account(merchant: Merchant) -> Account:
    account = Account.objects.filter(merchant=merchant).order_by("connected_at").first()
    if account is not None:
        return account
    return Account.objects.create(
        merchant=merchant,
        twitter_user_id=str(9_000_000_000 + Account.objects.count()),
        username="seed_demo_shop",
        display_name="Seed Demo Shop",
        status=AccountStatus.INACTIVE,
        status_reason="demo data; not connected to X",
    )


def seed_demo(*, merchant: Merchant, contacts: int, progress: Callable[[str], None] = print) -> dict[str, float]:
    """Add `contacts` contacts (and their tags, conversations, messages) to the merchant's first account."""
    d = _dialect()
    account = seed_account(merchant)
    base = 10_000_000_000 + Contact.objects.filter(account=account).count()
    for name in TAGS:
        Tag.objects.get_or_create(merchant=merchant, name=name)
    params: dict[str, Any] = {
        "n": contacts,
        "base": base,
        "m": _uuid_param(merchant.id),
        "a": _uuid_param(account.id),
        "msgs": MESSAGES_PER_CONVERSATION,
    }
    g_of = d.bigint.format(x="c.twitter_user_id") + " - %(base)s"
    timings: dict[str, float] = {}

    def step(label: str, sql: str) -> None:  # the SQL is this module's own text; values go as parameters
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.rowcount
        timings[label] = time.monotonic() - started
        shown = f"{rows:,} rows" if rows >= 0 else "done"
        progress(f"  {label}: {shown} in {timings[label]:.1f} s")

    # tag of rank r (by name) on every (2 + r)-th contact; the contact row carries its tag names too
    ranked_tags = (
        "SELECT id, name, row_number() OVER (ORDER BY name) - 1 AS tag_rank FROM contacts_tag WHERE merchant_id = %(m)s"
    )
    has_conversation = "g %% 10 < 3"
    tiers = "CASE g %% 4 WHEN 0 THEN 'bronze' WHEN 1 THEN 'silver' WHEN 2 THEN 'gold' ELSE 'platinum' END"
    with transaction.atomic():
        step(
            "contacts",
            f"""{d.series}, t AS ({ranked_tags})
            INSERT INTO contacts_contact (id, merchant_id, account_id, twitter_user_id, username, display_name,
                display_name_overridden, profile_image_url, source, attributes, following, opted_out, opted_out_at,
                conversation_count, messages_sent, messages_received, response_time_total, response_time_count,
                first_interaction_at, last_interaction_at, created_at, updated_at, tag_names)
            SELECT {d.uuid}, %(m)s, %(a)s, {d.text.format(x="%(base)s + g")}, 'user_' || g, 'Customer ' || g,
                false, '', CASE WHEN g %% 5 = 0 THEN 'new_follower' ELSE 'inbound_message' END,
                {d.json_object}('purchaseCount', g %% 20, 'totalSpent', (g %% 97) * 10000,
                    'membershipTier', {tiers}, 'newsletter', {d.json_bool.format(x="g %% 2 = 0")}),
                g %% 3 = 0, g %% 50 = 0, CASE WHEN g %% 50 = 0 THEN {d.now} END,
                CASE WHEN {has_conversation} THEN 1 ELSE 0 END,
                CASE WHEN {has_conversation} THEN %(msgs)s / 2 ELSE 0 END,
                CASE WHEN {has_conversation} THEN %(msgs)s / 2 ELSE 0 END,
                CASE WHEN {has_conversation} THEN 300 ELSE 0 END, CASE WHEN {has_conversation} THEN 1 ELSE 0 END,
                {d.days_ago.format(x="g %% 365 + 30")}, {d.minutes_ago.format(x="g %% 525600")},
                {d.days_ago.format(x="g %% 365 + 30")}, {d.now},
                COALESCE((SELECT {d.json_array_agg} FROM t WHERE g %% (2 + t.tag_rank) = 0), {d.empty_json_array})
            FROM s""",
        )
        step(
            "contact tags",
            f"""WITH t AS ({ranked_tags})
            INSERT INTO contacts_contacttag (contact_id, tag_id, created_at)
            SELECT c.id, t.id, {d.now}
            FROM contacts_contact c CROSS JOIN t
            WHERE c.account_id = %(a)s AND {d.bigint.format(x="c.twitter_user_id")} > %(base)s
              AND ({g_of}) %% (2 + t.tag_rank) = 0""",
        )
        step(
            "conversations",
            f"""INSERT INTO contacts_conversation (id, merchant_id, account_id, contact_id, status, channel,
                assigned_to_id, message_count, started_at, last_message_at, awaiting_reply_since,
                away_message_sent_at, closed_at, close_reason)
            SELECT {d.uuid}, %(m)s, %(a)s, c.id,
                CASE WHEN ({g_of}) %% 3 = 0 THEN 'open' ELSE 'closed' END, 'direct_message', NULL, %(msgs)s,
                c.last_interaction_at, c.last_interaction_at, NULL, NULL,
                CASE WHEN ({g_of}) %% 3 = 0 THEN NULL ELSE c.last_interaction_at END, ''
            FROM contacts_contact c
            WHERE c.account_id = %(a)s AND {d.bigint.format(x="c.twitter_user_id")} > %(base)s
              AND ({g_of}) %% 10 < 3""",
        )
        step(
            "conversation history",
            f"""INSERT INTO contacts_conversationevent (merchant_id, account_id, conversation_id, kind, at, opened_at,
                seconds)
            SELECT v.merchant_id, v.account_id, v.id, k.kind, CASE WHEN k.kind = 'opened' THEN v.started_at
                ELSE v.closed_at END, CASE WHEN k.kind = 'opened' THEN NULL ELSE v.started_at END,
                CASE WHEN k.kind = 'opened' THEN NULL ELSE 0 END
            FROM contacts_conversation v
            JOIN (SELECT 'opened' AS kind UNION ALL SELECT 'closed') k ON k.kind = 'opened' OR v.status = 'closed'
            WHERE v.account_id = %(a)s AND v.contact_id IN (
                SELECT c.id FROM contacts_contact c
                WHERE c.account_id = %(a)s AND {d.bigint.format(x="c.twitter_user_id")} > %(base)s)""",
        )
        step(
            "messages",
            f"""{d.series.replace("%(n)s", "%(msgs)s")}
            INSERT INTO contacts_message (id, account_id, conversation_id, direction, origin, type, content,
                attachments, metadata, is_from_bot, sent_by_id, twitter_message_id, idempotency_key, status,
                error_code, error_detail, sent_at, read_at, created_at)
            SELECT {d.uuid}, %(a)s, v.id,
                CASE WHEN s.g %% 2 = 1 THEN 'inbound' ELSE 'outbound' END,
                CASE WHEN s.g %% 2 = 1 THEN 'customer' ELSE 'staff' END, 'text',
                CASE WHEN s.g %% 2 = 1 THEN 'Hello, I have a question about my order' ELSE 'Happy to help!' END,
                '[]', '{{}}', false, NULL, NULL, NULL,
                CASE WHEN s.g %% 2 = 1 THEN 'received' ELSE 'sent' END, '', '',
                v.started_at, NULL, v.started_at
            FROM contacts_conversation v CROSS JOIN s
            WHERE v.account_id = %(a)s AND v.contact_id IN (
                SELECT c.id FROM contacts_contact c
                WHERE c.account_id = %(a)s AND {d.bigint.format(x="c.twitter_user_id")} > %(base)s)""",
        )
        # an answered wait per conversation for the analytics, with a made-up response time of 0-90 minutes (a
        # quarter by the bot); the seeded messages themselves all carry the conversation's start time
        step(
            "answered waits",
            f"""INSERT INTO contacts_conversationresponse (merchant_id, account_id, conversation_id, waited_since,
                answered_at, seconds, responder, user_id)
            SELECT v.merchant_id, v.account_id, v.id, v.started_at, v.started_at, (({g_of}) * 37) %% 5400,
                CASE WHEN ({g_of}) %% 4 = 0 THEN 'bot' ELSE 'staff' END, NULL
            FROM contacts_contact c JOIN contacts_conversation v ON v.contact_id = c.id
            WHERE c.account_id = %(a)s AND {d.bigint.format(x="c.twitter_user_id")} > %(base)s""",
        )
    if tallies_built():  # rows written without the services: the rollup counts the account again
        started = time.monotonic()
        contacts_rollup_rebuild([account.id])
        timings["rollup"] = time.monotonic() - started
        progress(f"  rollup: {timings['rollup']:.1f} s")
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        # what autovacuum would do a little later: statistics for the planner and the visibility map for
        # index-only scans (counts of a million rows read the index, not the table)
        started = time.monotonic()
        with connection.cursor() as cursor:
            for table in (
                "contacts_contact",
                "contacts_contacttag",
                "contacts_conversation",
                "contacts_conversationevent",
                "contacts_conversationresponse",
                "contacts_message",
            ):
                cursor.execute(f"VACUUM ANALYZE {table}")
        timings["vacuum"] = time.monotonic() - started
        progress(f"  vacuum analyze: {timings['vacuum']:.1f} s")
    return timings
