from rest_framework import serializers

from mktx.accounts.models import Account
from mktx.api.serializers import CamelModelSerializer


class AccountOutput(CamelModelSerializer):
    merchant_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = Account
        fields = ["id", "merchant_id", "twitter_user_id", "username", "display_name", "status", "connected_at"]
        read_only_fields = fields
