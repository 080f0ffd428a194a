"""Routes of the alerts API under /api/v1/."""

from rest_framework.routers import DefaultRouter

from controlplane.alerts.api import views

router = DefaultRouter()
router.register("alerts", views.AlertViewSet, basename="alert")
router.register("alert-rules", views.AlertRuleViewSet, basename="alert-rule")
router.register("silences", views.SilenceViewSet, basename="silence")
router.register("channels", views.ChannelViewSet, basename="channel")

urlpatterns = router.urls
