from rest_framework.routers import SimpleRouter

from campaigns.campaign_views import CampaignViewSet
from campaigns.views import TemplateViewSet

router = SimpleRouter(trailing_slash=False)
router.register("templates", TemplateViewSet, basename="template")
router.register("campaigns", CampaignViewSet, basename="campaign")
