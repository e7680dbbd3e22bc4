from rest_framework.routers import SimpleRouter

from campaigns.views import TemplateViewSet

router = SimpleRouter(trailing_slash=False)
router.register("templates", TemplateViewSet, basename="template")
