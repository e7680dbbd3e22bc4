from rest_framework.routers import SimpleRouter

from automation.views import FlowViewSet

router = SimpleRouter(trailing_slash=False)
router.register("automation/flows", FlowViewSet, basename="flow")
