import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mktx.settings")

application = get_asgi_application()

from mktx.api.checks import refuse_to_start_on_errors  # noqa: E402 - needs the apps loaded above

refuse_to_start_on_errors()
