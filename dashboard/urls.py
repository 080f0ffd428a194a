"""Routes of the dashboard pages (mounted at the site root)."""

from django.urls import path

from dashboard import signin, views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("login/", signin.LoginView.as_view(), name="login"),
    path("logout/", signin.LogoutView.as_view(), name="logout"),
    path("oidc/authenticate/", signin.SSOStartView.as_view(), name="oidc_start"),
    path("oidc/callback/", signin.SSOCallbackView.as_view(), name="oidc_callback"),
    path("circuits/<int:circuit_id>/", views.circuit_detail, name="circuit"),
    path("circuits/<int:circuit_id>/override", views.circuit_override, name="override"),
    path("circuits/<int:circuit_id>/config", views.circuit_config, name="config"),
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
