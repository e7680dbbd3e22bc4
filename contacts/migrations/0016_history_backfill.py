"""The history before migration 0011 (which began to keep conversation events and answered waits) read again from
the Message rows, so that analytics answers for it too:

- each closing gets the conversation's assignee (the one known now: who held it then was not kept);
  a closing before 0011 is known only as the conversation's last one (0011 kept nothing earlier), so a wait from
  before an earlier closing may pair with a reply after its reopening;
- each answered wait of a conversation, as contacts.services.message_states writes them since 0011: the first
  customer DM since the previous answer (or since an opening), answered by the first staff, X-app or bot DM sent
  after it; a closing ends a wait unanswered. Only waits answered before 0011 was applied are written (those after
  it were written as they happened), and none twice.

Conversations are read a batch at a time."""

from datetime import timedelta

from django.db import migrations
from django.db.models import OuterRef, Q, Subquery

BATCH = 2_000
ANSWERS = ("staff", "x_app", "bot")


def assignees(apps, schema_editor):
    Event = apps.get_model("contacts", "ConversationEvent")
    Conversation = apps.get_model("contacts", "Conversation")
    held = Conversation.objects.filter(pk=OuterRef("conversation_id")).values("assigned_to_id")[:1]
    Event.objects.filter(kind="closed", assignee__isnull=True, conversation__assigned_to__isnull=False).update(
        assignee_id=Subquery(held)
    )


def waits(apps, schema_editor):
    from django.db.migrations.recorder import MigrationRecorder

    recorded = (
        MigrationRecorder(schema_editor.connection)
        .migration_qs.filter(app="contacts", name="0011_conversation_history")
        .first()
    )
    if recorded is None:
        return
    cutover = recorded.applied
    Conversation = apps.get_model("contacts", "Conversation")
    Message = apps.get_model("contacts", "Message")
    Event = apps.get_model("contacts", "ConversationEvent")
    Response = apps.get_model("contacts", "ConversationResponse")
    before = Conversation.objects.filter(started_at__lt=cutover).order_by("pk")
    ids = list(before.values_list("pk", flat=True))
    for first in range(0, len(ids), BATCH):
        chunk = ids[first : first + BATCH]
        owners = {
            pk: (m, a)
            for pk, m, a in Conversation.objects.filter(pk__in=chunk).values_list("pk", "merchant_id", "account_id")
        }
        timeline = {}
        messages = Message.objects.filter(conversation_id__in=chunk, created_at__lt=cutover).filter(
            Q(direction="inbound") | Q(direction="outbound", status="sent", origin__in=ANSWERS)
        )
        for cid, direction, origin, sent, created, user in messages.values_list(
            "conversation_id", "direction", "origin", "sent_at", "created_at", "sent_by_id"
        ):
            timeline.setdefault(cid, []).append((sent or created, 1, direction, origin, user))
        for cid, at in Event.objects.filter(conversation_id__in=chunk, kind="closed", at__lt=cutover).values_list(
            "conversation_id", "at"
        ):
            timeline.setdefault(cid, []).append((at, 0, "closed", "", None))
        known = set(Response.objects.filter(conversation_id__in=chunk).values_list("conversation_id", "waited_since"))
        found = []
        for cid, rows in timeline.items():
            waiting = None
            for at, _, what, origin, user in sorted(rows, key=lambda row: (row[0], row[1])):
                if what == "closed":
                    waiting = None
                elif what == "inbound":
                    waiting = waiting or at
                elif waiting is not None:
                    if (cid, waiting) not in known and at < cutover:
                        merchant_id, account_id = owners[cid]
                        found.append(
                            Response(
                                merchant_id=merchant_id,
                                account_id=account_id,
                                conversation_id=cid,
                                waited_since=waiting,
                                answered_at=at,
                                seconds=max(0, int((at - waiting) / timedelta(seconds=1))),
                                responder=origin,
                                user_id=user,
                            )
                        )
                    waiting = None
        Response.objects.bulk_create(found, batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [("contacts", "0015_event_assignee")]

    operations = [
        migrations.RunPython(assignees, migrations.RunPython.noop),
        migrations.RunPython(waits, migrations.RunPython.noop),
    ]
