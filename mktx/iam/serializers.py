from rest_framework import serializers

from mktx.api.serializers import CamelSerializer, StrictFieldsMixin


class LoginInput(StrictFieldsMixin, CamelSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=256, trim_whitespace=False)


class RefreshInput(StrictFieldsMixin, CamelSerializer):
    refresh_token = serializers.CharField(max_length=4096)


class TokenPairOutput(CamelSerializer):
    access_token = serializers.CharField()
    refresh_token = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")
