import django_filters

from mktx.accounts.models import Account, AccountStatus


class AccountFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=AccountStatus.choices)

    class Meta:
        model = Account
        fields = ["status"]
