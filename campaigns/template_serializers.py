"""Input and output shapes of the template endpoints (campaigns/views.py)."""

from __future__ import annotations

from rest_framework import serializers

from campaigns.models import Template, TemplateType
from campaigns.placeholders import Source
from campaigns.template_schema import CardField, OptionsField, VariablesField
from mktx.api.serializers import CamelModelSerializer, CamelSerializer, StrictFieldsMixin


class TemplateOutput(CamelModelSerializer):
    merchant_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = Template
        fields = [
            "id",
            "merchant_id",
            "name",
            "type",
            "content",
            "variables",
            "options",
            "card",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TemplateInput(StrictFieldsMixin, CamelSerializer):
    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=TemplateType.values, default=TemplateType.TEXT)
    content = serializers.CharField(trim_whitespace=False)
    variables = VariablesField(required=False)
    options = OptionsField(required=False)
    card = CardField(required=False)


class TemplateUpdateInput(StrictFieldsMixin, CamelSerializer):
    name = serializers.CharField(max_length=200, required=False)
    type = serializers.ChoiceField(choices=TemplateType.values, required=False)
    content = serializers.CharField(trim_whitespace=False, required=False)
    variables = VariablesField(required=False)
    options = OptionsField(required=False)
    card = CardField(required=False)


class PreviewInput(StrictFieldsMixin, CamelSerializer):
    variables = serializers.DictField(required=False, default=dict)
    contact_id = serializers.UUIDField(required=False, help_text="Render with this contact's own values too")


class PreviewOutput(CamelSerializer):
    """Written from campaigns.templating.Rendered."""

    rendered = serializers.CharField(source="text")
    options = serializers.ListField(child=serializers.DictField())
    image_url = serializers.CharField()
    sources = serializers.DictField(
        child=serializers.ChoiceField(choices=[source.value for source in Source]),
        help_text=(
            "Which source filled each placeholder, in order of use: `variables`, `attribute` (the contact's attribute "
            "of the same key), `profile` (name, displayName, firstName, username), `contact` (an explicit contact.* "
            "placeholder) or `default`. Without contactId only `variables` and `default`."
        ),
    )
