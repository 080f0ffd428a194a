"""Routes of the dashboard pages (mounted at the site root)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard import rollouts, views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="dashboard/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("circuits/<int:circuit_id>/", views.circuit_detail, name="circuit"),
    path("circuits/<int:circuit_id>/override", views.circuit_override, name="override"),
    path("circuits/<int:circuit_id>/config", views.circuit_config, name="config"),
    path("circuits/<int:circuit_id>/rollouts/start", rollouts.rollout_start, name="rollout_start"),
    path(
        "circuits/<int:circuit_id>/rollouts/<int:rollout_id>/promote",
        rollouts.rollout_promote,
        name="rollout_promote",
    ),
    path(
        "circuits/<int:circuit_id>/rollouts/<int:rollout_id>/rollback",
        rollouts.rollout_rollback,
        name="rollout_rollback",
    ),
    path(
        "circuits/<int:circuit_id>/rollouts/groups", rollouts.rollout_groups, name="rollout_groups"
    ),
    path("search/", views.search, name="search"),
    path("services/", views.services, name="services"),
    path("instances/", views.instances, name="instances"),
    path("audit/", views.audit, name="audit"),
    path("incidents/", views.incidents, name="incidents"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/<int:alert_id>/ack", views.alert_ack, name="alert_ack"),
    path("alerts/silence", views.silence_create, name="silence_create"),
    path("silences/<int:silence_id>/end", views.silence_end, name="silence_end"),
    path("tokens/", views.api_tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke", views.api_token_revoke, name="token_revoke"),
]
