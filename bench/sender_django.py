"""The sender benchmarks' work inside Django (run as a subprocess with the bench's environment): set up sandbox
accounts and their campaigns set-based, start them through the service, and probe the sender in this process.

    python -m bench.sender_django setup|start|probe < spec.json    (prints one JSON line)

`setup`: `{"tag", "perAccount": bool, "accounts": [{"id", "username", "oauthToken", "oauthTokenSecret",
"recipients": [{"id", "username", "name"}]}]}`. One merchant holds every account and one campaign sends to all of
them, or (`perAccount`) each account has its own merchant and a campaign of its own recipients. Each recipient is a
contact with an open conversation (a customer who wrote to the shop) and the campaign's tag; a segment on the tag,
a template with a link. Answers `{"campaigns": [ids]}`.

`start`: `{"campaigns": [ids]}`, each through `campaign_start` (the audience frozen inline); `cancel` likewise;
`kick` queues the sender loops once (`queue.sender_kick_now`).

`probe`: `{"seconds", "profile"?}`: `campaigns.lanes.sender_step` in this process, looping as `sender_run` does,
until nothing is due or `seconds` have passed, every query counted from the connection's query log (BEGIN and
COMMIT included, as Django logs them). Answers the sends, the queries and CPU time (without the profiler's
overhead) per function of the send path (WRAPPED) and for the rest of the pass, the statements by kind, and the
CPU per send; with `profile`, a cProfile of CPU time too.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.common import statement_kind  # noqa: E402
from campaigns import lanes, queue, sender  # noqa: E402
from campaigns.campaigns import campaign_create  # noqa: E402
from campaigns.lifecycle import campaign_cancel, campaign_start  # noqa: E402
from campaigns.models import Campaign, Delivery, DeliveryStatus, Template  # noqa: E402
from contacts.models import Contact, ContactTag, Conversation, Segment, Tag  # noqa: E402
from contacts.services import message_states, outbound, outbound_batch  # noqa: E402
from mktx.accounts.crypto import encrypt  # noqa: E402
from mktx.accounts.models import Account  # noqa: E402
from mktx.iam.models import Merchant  # noqa: E402

TEMPLATE = "Hi {{contact.displayName|friend}}, our sale: https://shop.example/sale"


def setup(spec: dict[str, Any]) -> dict[str, Any]:
    tag_name, shops, per_account = spec["tag"], spec["accounts"], bool(spec.get("perAccount"))
    now = timezone.now()
    with transaction.atomic():
        if per_account:
            merchants = Merchant.objects.bulk_create(
                [Merchant(name=f"Bench {tag_name} {shop['username']}") for shop in shops], batch_size=1000
            )
        else:
            merchants = [Merchant.objects.create(name=f"Bench {tag_name}")] * len(shops)
        accounts = Account.objects.bulk_create(
            [
                Account(
                    merchant=merchant,
                    twitter_user_id=shop["id"],
                    username=shop["username"],
                    oauth_token_encrypted=encrypt(shop["oauthToken"]),
                    oauth_token_secret_encrypted=encrypt(shop["oauthTokenSecret"]),
                )
                for merchant, shop in zip(merchants, shops, strict=True)
            ],
            batch_size=1000,
        )
        contacts = Contact.objects.bulk_create(
            [
                Contact(
                    merchant=account.merchant,
                    account=account,
                    twitter_user_id=r["id"],
                    username=r["username"],
                    display_name=r["name"],
                    tag_names=[tag_name],
                    source="inbound_message",
                    conversation_count=1,
                    first_interaction_at=now,
                    last_interaction_at=now,
                )
                for account, shop in zip(accounts, shops, strict=True)
                for r in shop["recipients"]
            ],
            batch_size=2000,
        )
        Conversation.objects.bulk_create(
            [
                Conversation(
                    merchant_id=c.merchant_id, account_id=c.account_id, contact=c, started_at=now, last_message_at=now
                )
                for c in contacts
            ],
            batch_size=2000,
        )
        distinct = list(dict.fromkeys(merchants))
        tags = {t.merchant_id: t for t in Tag.objects.bulk_create([Tag(merchant=m, name=tag_name) for m in distinct])}
        ContactTag.objects.bulk_create(
            [ContactTag(contact=c, tag=tags[c.merchant_id]) for c in contacts], batch_size=2000
        )
        conditions = [{"field": "tags", "operator": "contains", "value": tag_name}]
        segments = Segment.objects.bulk_create(
            [Segment(merchant=m, name=tag_name, conditions=conditions) for m in distinct]
        )
        templates = Template.objects.bulk_create(
            [Template(merchant=m, name=tag_name, content=TEMPLATE) for m in distinct]
        )
    campaigns = [
        campaign_create(
            merchant_id=merchant.pk,
            name=tag_name,
            type="promotional",
            template_id=template.pk,
            segment_ids=[segment.pk],
        )
        for merchant, segment, template in zip(distinct, segments, templates, strict=True)
    ]
    return {"campaigns": [str(c.pk) for c in campaigns]}


def start(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    for campaign in Campaign.objects.filter(pk__in=spec["campaigns"]):
        campaign_start(campaign=campaign)
    return {"started": len(spec["campaigns"]), "seconds": time.perf_counter() - started}


# Where a send's queries and CPU go: these functions are wrapped in this process (module, name), each one's own
# share counted without the wrapped functions it calls. A name a newer sender no longer has is left out.
WRAPPED = (
    (sender, "accounts_send"),
    (sender, "deliveries_claim"),
    (sender, "deliveries_claim_turns"),
    (sender, "_conversations"),
    (sender, "_rendered"),
    (sender, "_batched_send"),
    (sender, "delivery_send"),
    (sender, "message_send"),
    (outbound_batch.OutboundBatch, "prepare"),
    (outbound_batch.OutboundBatch, "send"),
    (outbound_batch.OutboundBatch, "record"),
    (outbound_batch, "send_to_x"),
    (outbound_batch, "contacts_messages_sent"),
    (outbound, "_create_pending"),
    (outbound, "send_to_x"),
    (outbound, "message_mark_sent"),
    (message_states, "contact_interaction_record"),
    (sender, "deliveries_sent"),
    (sender, "deliveries_unclaim"),
    (lanes, "slots_take"),
    (lanes, "slots_release"),
)


class Tally:
    """Queries and CPU counted by where they were spent: in one of WRAPPED (its own part), or in the rest of the
    pass. Queries are read from the connection's query log (debug cursor forced), emptied as it is read: Django
    keeps only its last 9,000 entries."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        self.cpu: dict[str, float] = {}
        self.kinds: Counter[str] = Counter()
        self.depth: list[str] = []
        self.mark = time.process_time()

    def __enter__(self) -> Tally:
        connection.ensure_connection()
        connection.force_debug_cursor = True
        connection.queries_log.clear()
        for module, name in WRAPPED:
            if hasattr(module, name):
                setattr(module, name, self._wrap(name, getattr(module, name)))
        self.mark = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
        connection.force_debug_cursor = False

    def flush(self) -> None:
        spent = time.process_time() - self.mark
        where = self.depth[-1] if self.depth else "pass"
        log = connection.queries_log
        for query in log:
            self.kinds[statement_kind(query["sql"])] += 1
        self.queries[where] += len(log)
        self.cpu[where] = self.cpu.get(where, 0.0) + spent
        log.clear()
        self.mark = time.process_time()

    def idle(self) -> None:
        """What follows (a sleep between passes) is not the sender's."""
        self.flush()

    def resume(self) -> None:
        self.mark = time.process_time()

    def _wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.flush()
            self.depth.append(name)
            self.calls[name] += 1
            try:
                return func(*args, **kwargs)
            finally:
                self.flush()
                self.depth.pop()

        return wrapped


def _sent() -> int:
    return Delivery.objects.filter(status=DeliveryStatus.SENT).count()


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    seconds = float(spec["seconds"])
    profiler = cProfile.Profile(time.process_time) if spec.get("profile") else None  # CPU, not wall time
    before = _sent()
    steps, wall = 0, 0.0
    deadline = time.monotonic() + seconds
    holder = "bench-probe"
    with Tally() as tally:
        while time.monotonic() < deadline:
            wall_at = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            wake = lanes.sender_step(holder=holder)
            if profiler is not None:
                profiler.disable()
            wall += time.perf_counter() - wall_at
            steps += 1
            tally.idle()
            if wake is None:
                break
            delay = (wake - timezone.now()).total_seconds()
            if delay > 0:
                time.sleep(min(delay, 1.0, max(0.0, deadline - time.monotonic())))
            tally.resume()
    sends = _sent() - before
    result: dict[str, Any] = {
        "sends": sends,
        "steps": steps,
        "queries": sum(tally.queries.values()),
        "where": {name: [tally.calls[name], tally.queries[name], tally.cpu[name]] for name in tally.cpu},
        "kinds": dict(tally.kinds.most_common(25)),
        "cpu": sum(tally.cpu.values()),  # the counting's own work left out
        "wall": wall,
    }
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        out.write("\n--- by own time ---\n")
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        result["profile"] = out.getvalue()
    return result


def cancel(spec: dict[str, Any]) -> dict[str, Any]:
    for campaign in Campaign.objects.filter(pk__in=spec["campaigns"]):
        campaign_cancel(campaign=campaign)
    return {"cancelled": len(spec["campaigns"])}


def kick(spec: dict[str, Any]) -> dict[str, Any]:
    """Queue the sender loops (what a start does after its commit), once."""
    queue.sender_kick_now()
    return {"kicked": True}


COMMANDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "kick": kick,
    "setup": setup,
    "start": start,
    "cancel": cancel,
    "probe": probe,
}


def main() -> None:
    command = sys.argv[1]
    result = COMMANDS[command](json.loads(sys.stdin.read() or "{}"))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
