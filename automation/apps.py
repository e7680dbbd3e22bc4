from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # the events `contacts` and `campaigns` tell through contacts/hooks.py (they may not import automation)
        from automation import triggers
        from automation.selectors import flows_using_template
        from campaigns.hooks import template_users_register
        from contacts.hooks import hooks_register

        hooks_register(
            contact_created=triggers.contact_created,
            tags_added=triggers.tags_added,
            campaign_replied=triggers.campaign_replied,
        )
        template_users_register(name="flows", check=flows_using_template)
