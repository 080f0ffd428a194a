"""Routes of the operator API under /api/v1/."""

from rest_framework.routers import DefaultRouter

from controlplane.circuits.api import drills, rollouts, views

router = DefaultRouter()
router.register("services", views.ServiceViewSet, basename="service")
router.register("circuits", views.CircuitViewSet, basename="circuit")
router.register(drills.PREFIX, drills.DrillViewSet, basename="drill")
router.register(
    r"circuits/(?P<circuit_id>[0-9]{1,18})/rollouts", rollouts.RolloutViewSet, basename="rollout"
)
router.register("instances", views.InstanceViewSet, basename="instance")
router.register("transitions", views.TransitionViewSet, basename="transition")
router.register("audit", views.AuditEventViewSet, basename="audit")
router.register("teams", views.TeamViewSet, basename="team")
router.register("tokens", views.TokenViewSet, basename="token")

urlpatterns = router.urls
