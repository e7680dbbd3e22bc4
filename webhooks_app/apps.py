from django.apps import AppConfig


class WebhooksAppConfig(AppConfig):
    name = "webhooks_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Erasing a contact must also redact it from the raw events stored here; contacts cannot import this app,
        # so the erasure calls us through its hook registry.
        from contacts.erasure import erasure_hook_register
        from webhooks_app.redaction import raw_events_redact

        erasure_hook_register("webhooks_app.raw_events", raw_events_redact)
