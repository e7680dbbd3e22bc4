from rest_framework.routers import SimpleRouter

from mktx.accounts.views import AccountViewSet

router = SimpleRouter(trailing_slash=False)
router.register("accounts", AccountViewSet, basename="account")
