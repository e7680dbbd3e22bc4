"""`POST /campaigns/{id}/test`: the rendered message sent at once to a few of the merchant's contacts, marked as a
test (message metadata `test: true`) and left out of the metrics (no delivery is recorded)."""

from __future__ import annotations

import uuid
from typing import Any

from campaigns.models import Campaign, DeliveryStatus
from campaigns.sender import campaign_conversation
from campaigns.templating import render
from contacts.models import Contact, MessageOrigin
from contacts.services.outbound import Attachment, SendSkipped, message_send
from mktx.api.errors import ApiError, InvalidInput, NotFoundError


def campaign_test_send(
    *, campaign: Campaign, contact_ids: list[uuid.UUID], variables: dict[str, Any]
) -> list[dict[str, Any]]:
    """One result per contact (Python names; TestSendOutput answers them): `sent` (with the message id),
    `skipped` or `failed` with the reason."""
    contacts = {
        c.pk: c
        for c in Contact.objects.filter(merchant_id=campaign.merchant_id, pk__in=contact_ids).select_related("account")
    }
    for i, contact_id in enumerate(contact_ids):
        if contact_id not in contacts:
            raise NotFoundError("Contact not found", details={"field": f"contactIds[{i}]", "id": str(contact_id)})
    if campaign.template is None:
        raise InvalidInput("templateId", "the campaign's template was deleted")
    values = {**campaign.variables, **variables}
    template = campaign.template
    # every message is rendered before any is sent: a placeholder without a value is a 400 and nothing goes out
    renders = {contact_id: render(template, variables=values, contact=contacts[contact_id]) for contact_id in contacts}
    results: list[dict[str, Any]] = []
    for contact_id in dict.fromkeys(contact_ids):
        contact = contacts[contact_id]
        result: dict[str, Any] = {"contact_id": contact_id}
        try:
            rendered = renders[contact_id]
            message = message_send(
                conversation=campaign_conversation(contact),
                content=rendered.text,
                origin=MessageOrigin.CAMPAIGN,
                message_type=template.type,
                attachments=[Attachment(rendered.image_url)] if rendered.image_url else [],
                marketing=True,
                metadata={"campaignId": str(campaign.pk), "test": True},
            )
        except SendSkipped as exc:
            result.update(status=DeliveryStatus.SKIPPED, reason=exc.reason, detail=exc.message)
        except ApiError as exc:
            result.update(status=DeliveryStatus.FAILED, reason=str(exc.code), detail=exc.message)
        else:
            result.update(status=DeliveryStatus.SENT, message_id=message.pk, dm_event_id=message.twitter_message_id)
        results.append(result)
    return results
