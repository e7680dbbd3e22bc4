from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "mktx.accounts"
    label = "accounts"
    verbose_name = "Connected X accounts"
