from django.apps import AppConfig


class IamConfig(AppConfig):
    name = "mktx.iam"
    label = "iam"
    verbose_name = "Merchants and users"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mktx.iam import schema  # noqa: F401  (registers the OpenAPI security scheme)
