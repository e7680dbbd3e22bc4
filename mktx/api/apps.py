from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "mktx.api"
    label = "api"
    verbose_name = "API conventions"

    def ready(self) -> None:
        from mktx.api import checks  # noqa: F401  (registers the system checks)
