import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mktx.settings")

application = get_wsgi_application()

from mktx.api.checks import refuse_to_start_on_errors  # noqa: E402 - needs the apps loaded above

refuse_to_start_on_errors()
