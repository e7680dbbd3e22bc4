"""One runner per node type, behind the explicit table `RUNNERS` (as webhooks_app/handlers.py's `HANDLERS`).

A runner gets the step's context and answers an Outcome: go on (by a branch), wait (until a time, or for the
contact's reply), or fail. It never moves the execution itself: automation/engine.py records the outcome. A runner
in `EXTERNAL` calls X and runs outside the step's transaction (engine.py says why); the others run inside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automation.models import Execution, WaitKind
from campaigns.models import Template
from campaigns.send_window import parse_send_window, window_opening, window_timezone
from campaigns.sender import UNCLEAR, campaign_conversation
from campaigns.templating import render
from chatbot.bot import bot_answer, bot_may_answer
from contacts.models import (
    Contact,
    Conversation,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageOrigin,
    MessageStatus,
)
from contacts.segments import compile_conditions
from contacts.services.consent import consent_keyword
from contacts.services.contacts import contact_attributes_merge, contact_tag_remove, contact_tags_add
from contacts.services.conversations import conversation_assign, conversation_assignee_next, conversation_close
from contacts.services.message_states import message_found_at_x, message_mark_lost
from contacts.services.outbound import SendSkipped, message_send
from mktx.accounts.services import AccountCredentialsUnreadable
from mktx.api.errors import ApiError, RateLimited
from mktx.iam.models import User
from mktx.xapi import XError, XForbidden, XInvalidToken, XRateLimited
from mktx.xapi.errors import XBadRequest

RETRY_BACKOFF = (timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=2))  # X 5xx and timeouts: 3 retries
UNCLEAR_RECHECK = timedelta(seconds=30)  # X's DM events could not be read: look again before any resend
UNCLEAR_RECHECKS = 20  # ... this many times (10 minutes), then the step fails (`x_unclear`)
# a pending DM younger than this may still be on its way to X (a call's connect and read timeouts, and a margin):
# nobody looks for it at X, nor sends it again, before
IN_FLIGHT = timedelta(seconds=settings.X_API_CONNECT_TIMEOUT + settings.X_API_READ_TIMEOUT + 5)


@dataclass(frozen=True)
class StepContext:
    execution: Execution
    node: dict[str, Any]
    config: dict[str, Any]
    contact: Contact
    visit: int
    resumed: bool  # the execution waited at this node and its wait is over (a time, or the reply in its state)
    now: datetime
    graph_accounts: list[str] | None = None


@dataclass(frozen=True)
class Outcome:
    kind: str  # "next", "wait" or "fail"
    branch: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    until: datetime | None = None
    waiting_for: str = WaitKind.TIME
    reason: str = ""
    skipped: bool = False
    state: dict[str, Any] | None = None  # the node's state to keep while waiting (None: as it is)

    @classmethod
    def done(cls, detail: dict[str, Any] | None = None, branch: str | None = None) -> Outcome:
        return cls("next", branch=branch, detail=detail or {})

    @classmethod
    def skip(cls, reason: str, **detail: Any) -> Outcome:
        return cls("next", detail={"reason": reason, **detail}, skipped=True)

    @classmethod
    def wait(
        cls,
        until: datetime,
        *,
        waiting_for: str = WaitKind.TIME,
        state: dict[str, Any] | None = None,
        **detail: Any,
    ) -> Outcome:
        return cls("wait", until=until, waiting_for=waiting_for, state=state, detail={"until": _iso(until), **detail})

    @classmethod
    def fail(cls, reason: str, **detail: Any) -> Outcome:
        return cls("fail", reason=reason, detail=detail)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- waits ---------------------------------------------------------------------------------------------------------


def _window_wait(context: StepContext, **detail: Any) -> Outcome | None:
    """Inside the node's `window` (account time zone), None; outside it, a wait until it opens."""
    window = parse_send_window(context.config.get("window"), "window")
    if window is None:
        return None
    opening = window_opening(window, window_timezone(context.contact.account.business_hours), context.now)
    return Outcome.wait(opening, window=True, **detail) if opening > context.now else None


def wait(context: StepContext) -> Outcome:
    config = context.config
    if not context.resumed:
        if "until" in config:
            until = parse_datetime(str(config["until"])) or context.now
            if timezone.is_naive(until):
                until = timezone.make_aware(until, UTC)
        else:
            until = context.now + timedelta(seconds=int(config["duration"]))
        if until > context.now:
            return Outcome.wait(until)
    return _window_wait(context) or Outcome.done()


def wait_for_reply(context: StepContext) -> Outcome:
    if not context.resumed:
        until = context.now + timedelta(seconds=int(context.config["timeout"]))
        return Outcome.wait(until, waiting_for=WaitKind.REPLY)
    reply = context.execution.state.get("reply")
    if reply:
        return Outcome.done({"messageId": reply.get("messageId"), "text": reply.get("text", "")}, branch="replied")
    return Outcome.done(branch="timeout")


# --- sending -------------------------------------------------------------------------------------------------------


def flow_sends_today(contact: Contact, now: datetime) -> int:
    """Flow DMs to the contact in the last 24 h (the loop guard's MKTX_FLOW_SENDS_PER_CONTACT_DAY)."""
    return (
        Message.objects.filter(
            conversation__contact_id=contact.pk, origin=MessageOrigin.FLOW, created_at__gte=now - timedelta(hours=24)
        )
        .exclude(status=MessageStatus.FAILED)
        .count()
    )


def _key(context: StepContext, attempt: int) -> str:
    node = hashlib.sha1(context.node["id"].encode(), usedforsecurity=False).hexdigest()[:12]
    return f"flow:{context.execution.pk}:{node}:{context.visit}:{attempt}"


def _earlier_landed(context: StepContext, attempt: int) -> Message | None:
    """Before a retry: the earlier attempt whose outcome was unclear that reached X after all (raises XError when X
    cannot tell: never resend blind)."""
    earlier = Message.objects.filter(
        account_id=context.contact.account_id,
        idempotency_key__in=[_key(context, n) for n in range(1, attempt)],
    ).filter(
        Q(status__in=[MessageStatus.SENT, MessageStatus.PENDING])
        | Q(status=MessageStatus.FAILED, error_code__in=UNCLEAR)
    )
    messages = list(earlier.select_related("account", "conversation__contact").order_by("-created_at"))
    in_flight = [m.created_at + IN_FLIGHT for m in messages if m.status == MessageStatus.PENDING]
    if in_flight and max(in_flight) > context.now:
        raise _TooSoon(max(in_flight))
    for message in messages:
        if message.status == MessageStatus.SENT or message_found_at_x(message=message):
            return message
        if message.status == MessageStatus.PENDING:
            message_mark_lost(message=message, detail="the flow step ran again and X does not have it")
    return None


class _TooSoon(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__(f"an earlier try may be in flight until {until}")
        self.until = until


def _content(context: StepContext) -> tuple[str, str]:
    """(text, message type) of the node for this contact; InvalidInput when a placeholder has no value."""
    config = context.config
    template: Any
    if config.get("templateId"):
        template = Template.objects.filter(pk=config["templateId"], merchant_id=context.contact.merchant_id).first()
        if template is None:
            raise _Refused("template_deleted", "the node's template no longer exists")
    else:
        template = SimpleNamespace(content=config.get("content", ""), options=[], card={}, type="text")
    rendered = render(template, variables=config.get("variables") or {}, contact=context.contact)
    return rendered.text, str(template.type)


class _Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def send_message(context: StepContext) -> Outcome:
    config, contact, state = context.config, context.contact, context.execution.state
    delay = int(config.get("delay") or 0)
    if delay and not context.resumed:
        return Outcome.wait(context.now + timedelta(seconds=delay), delay=delay)
    if contact.opted_out:
        return Outcome.skip("opted_out")
    attempt = int(state.get("attempt", 1)) if context.resumed else 1
    if attempt > 1:
        try:
            landed = _earlier_landed(context, attempt)
        except _TooSoon as soon:  # the earlier try may still be on its way to X: never look (nor resend) before
            return Outcome.wait(soon.until, state=state, reason="x_unclear")
        except (XInvalidToken, AccountCredentialsUnreadable) as exc:
            return Outcome.fail("account_inactive", error=exc.message)
        except XError as exc:
            rechecks = int(state.get("rechecks", 0)) + 1
            if rechecks > UNCLEAR_RECHECKS:
                return Outcome.fail("x_unclear", error=exc.message)
            until = context.now + UNCLEAR_RECHECK
            return Outcome.wait(until, state={**state, "rechecks": rechecks}, reason="x_unclear", error=exc.message)
        if landed is not None:
            return Outcome.done({"messageId": str(landed.pk), "attempts": attempt - 1})
        if state.get("spent"):  # the last retry's 5xx or timeout had not reached X either
            return Outcome.fail(f"x_error: {state.get('error', '')}", attempts=attempt - 1)
    key = _key(context, attempt)
    already = Message.objects.filter(account_id=contact.account_id, idempotency_key=key).first()
    if already is None and flow_sends_today(contact, context.now) >= settings.MKTX_FLOW_SENDS_PER_CONTACT_DAY:
        return Outcome.fail("flow_sends_per_contact_day", limit=settings.MKTX_FLOW_SENDS_PER_CONTACT_DAY)
    try:
        text, message_type = _content(context)
    except _Refused as exc:
        return Outcome.fail(exc.reason, error=exc.message)
    except ApiError as exc:  # a placeholder no source fills: never sent with a raw {{...}}
        return Outcome.fail("placeholder_missing", error=exc.message, field=exc.details.get("field"))
    try:
        message = message_send(
            conversation=campaign_conversation(contact),
            content=text,
            origin=MessageOrigin.FLOW,
            message_type=message_type,
            marketing=True,
            idempotency_key=key,
            metadata={"flowId": str(context.execution.flow_id), "executionId": str(context.execution.pk)},
        )
    except ApiError as exc:
        return _refused(context, exc, attempt)
    if message.status == MessageStatus.SENT:
        return Outcome.done({"messageId": str(message.pk), "attempts": attempt})
    if message.status == MessageStatus.FAILED and message.error_code not in UNCLEAR:
        return Outcome.fail("x_rejected", messageId=str(message.pk), error=message.error_detail)
    # the key answered a DM whose send has no known outcome (a worker stopped mid-send, or one still sending):
    # look at X once it can no longer be in flight, then resend if X does not have it
    until = max(context.now, message.created_at + IN_FLIGHT)
    return Outcome.wait(until, state={"attempt": attempt + 1}, reason="unclear", messageId=str(message.pk))


def _refused(context: StepContext, exc: ApiError, attempt: int) -> Outcome:
    now = context.now
    cause = exc.__cause__
    if isinstance(exc, SendSkipped):
        if exc.reason == "opted_out":
            return Outcome.skip("opted_out")
        return Outcome.fail(exc.reason, error=exc.message)
    if isinstance(exc, RateLimited) and cause is None:  # a cap of the rolling 24 h: wait for it, do not fail
        reset = parse_datetime(str(exc.details.get("resetAt", ""))) or now + timedelta(hours=1)
        return Outcome.wait(reset, state={"attempt": attempt}, reason=str(exc.details.get("reason", "daily_quota")))
    if isinstance(cause, XRateLimited):
        reset = cause.reset_at or now + timedelta(minutes=15)
        return Outcome.wait(reset + timedelta(seconds=1), state={"attempt": attempt + 1}, reason="x_rate_limit")
    if isinstance(cause, XInvalidToken):
        return Outcome.fail("account_inactive", error=cause.message)
    if isinstance(cause, XForbidden):
        return Outcome.fail(f"{cause.reason}: {cause.message}", code=cause.code)
    if isinstance(cause, XBadRequest) or not isinstance(cause, XError):
        return Outcome.fail(f"rejected: {exc.message}")
    if attempt > len(RETRY_BACKOFF):  # 5xx, timeouts, X unreachable: three retries, then a last look at X (a 5xx or
        # a timeout can come after X sent the DM; found by bench/chaos.py x-faults for campaigns): failed if not there
        state = {"attempt": attempt + 1, "spent": True, "error": cause.message}
        return Outcome.wait(now + UNCLEAR_RECHECK, state=state, reason="x_error", error=cause.message)
    until = now + RETRY_BACKOFF[attempt - 1]
    return Outcome.wait(until, state={"attempt": attempt + 1}, reason="x_error", error=cause.message)


def ai_reply(context: StepContext) -> Outcome:
    """The chatbot answers the contact's last DM (the same engine and policy as its auto-reply), under the same key
    as the auto-reply of that DM (one answer, whoever gives it). Where the bot may not speak (the conversation handed
    to people or assigned), or when the last DM was a consent word, nothing is sent: the `escalated` branch."""
    conversation = (
        Conversation.objects.select_related("account", "contact")
        .filter(contact_id=context.contact.pk, status=ConversationStatus.OPEN)
        .first()
    )
    if conversation is None:
        return Outcome.skip("no_open_conversation")
    last = (
        Message.objects.filter(conversation=conversation, direction=MessageDirection.INBOUND)
        .order_by("-created_at")
        .first()
    )
    if last is None:
        return Outcome.skip("no_message_to_answer")
    if consent_keyword(last.content, conversation.account) is not None:
        return Outcome.skip("consent_word")
    if not bot_may_answer(conversation):
        return Outcome.done({"reason": "handed_to_people"}, branch="escalated")
    answer = bot_answer(
        conversation=conversation, text=last.content, send=True, auto=True, idempotency_key=f"bot:{last.pk}"
    )
    sent = str(answer.sent.pk) if answer.sent else None
    detail = {"intent": answer.intent, "engine": answer.engine, "messageId": sent}
    return Outcome.done(detail, branch="escalated" if answer.requires_escalation else "answered")


# --- contact and conversation actions ---------------------------------------------------------------------------


def condition(context: StepContext) -> Outcome:
    contact = context.contact
    matches = compile_conditions(merchant_id=contact.merchant_id, conditions=context.config["conditions"])
    result = Contact.objects.filter(matches, pk=contact.pk).exists()
    return Outcome.done(branch="true" if result else "false")


def split(context: StepContext) -> Outcome:
    """Sticky per contact: a hash of flow and contact picks a point in [0, 1) of the cumulated weights."""
    weights: dict[str, float] = context.config["weights"]
    seed = f"{context.execution.flow_id}:{context.contact.pk}".encode()
    point = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") / 2**64 * sum(weights.values())
    for key, weight in weights.items():
        point -= weight
        if point < 0:
            return Outcome.done(branch=key)
    return Outcome.done(branch=list(weights)[-1])


def add_tag(context: StepContext) -> Outcome:
    tags = contact_tags_add(contact=context.contact, tags=context.config["tags"])
    return Outcome.done({"tags": list(context.config["tags"]), "contactTags": tags})


def remove_tag(context: StepContext) -> Outcome:
    for tag in context.config["tags"]:
        contact_tag_remove(contact=context.contact, tag_name=tag)
    return Outcome.done({"tags": list(context.config["tags"])})


def update_attributes(context: StepContext) -> Outcome:
    contact_attributes_merge(contact=context.contact, changes=context.config["attributes"])
    return Outcome.done({"attributes": sorted(context.config["attributes"])})


def _open_conversation(contact: Contact) -> Conversation | None:
    return Conversation.objects.filter(contact_id=contact.pk, status=ConversationStatus.OPEN).first()


def assign_conversation(context: StepContext) -> Outcome:
    conversation = _open_conversation(context.contact)
    if conversation is None:
        return Outcome.skip("no_open_conversation")
    user_id = context.config.get("userId") or conversation_assignee_next(merchant_id=context.contact.merchant_id)
    if user_id is None:
        return Outcome.skip("no_staff")
    if not User.objects.filter(pk=user_id, merchant_id=context.contact.merchant_id, is_active=True).exists():
        return Outcome.fail("user_gone", userId=str(user_id))
    conversation_assign(conversation=conversation, user_id=user_id)
    return Outcome.done({"conversationId": str(conversation.pk), "userId": str(user_id)})


def close_conversation(context: StepContext) -> Outcome:
    conversation = _open_conversation(context.contact)
    if conversation is None:
        return Outcome.skip("no_open_conversation")
    conversation_close(conversation=conversation, reason=str(context.config.get("reason") or ""))
    return Outcome.done({"conversationId": str(conversation.pk)})


def end(context: StepContext) -> Outcome:
    return Outcome.done()


RUNNERS = {
    "send_message": send_message,
    "wait": wait,
    "condition": condition,
    "wait_for_reply": wait_for_reply,
    "add_tag": add_tag,
    "remove_tag": remove_tag,
    "update_attributes": update_attributes,
    "assign_conversation": assign_conversation,
    "close_conversation": close_conversation,
    "split": split,
    "ai_reply": ai_reply,
    "end": end,
}
EXTERNAL = frozenset({"send_message", "ai_reply"})
