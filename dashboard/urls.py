"""Routes of the dashboard pages (mounted at the site root)."""

from django.urls import path

from dashboard import alert_setup, rollouts, signin, versions, views

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
    path("circuits/<int:circuit_id>/config/diff", versions.config_diff_page, name="config_diff"),
    path("circuits/<int:circuit_id>/drills", views.circuit_drill, name="drill"),
    path(
        "circuits/<int:circuit_id>/drills/<int:drill_id>/end",
        views.circuit_drill_end,
        name="drill_end",
    ),
    path("circuits/<int:circuit_id>/shadow", views.circuit_shadow, name="shadow"),
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
    path("alerts/rules/", alert_setup.alert_setup, name="alert_setup"),
    path("alerts/rules/new", alert_setup.rule_new, name="rule_new"),
    path("alerts/rules/<int:rule_id>/", alert_setup.rule_edit, name="rule_edit"),
    path("alerts/rules/<int:rule_id>/delete", alert_setup.rule_delete, name="rule_delete"),
    path("alerts/channels/new", alert_setup.channel_new, name="channel_new"),
    path("alerts/channels/<int:channel_id>/", alert_setup.channel_edit, name="channel_edit"),
    path(
        "alerts/channels/<int:channel_id>/delete",
        alert_setup.channel_delete,
        name="channel_delete",
    ),
    path("alerts/channels/<int:channel_id>/test", alert_setup.channel_test, name="channel_test"),
    path("tokens/", views.api_tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke", views.api_token_revoke, name="token_revoke"),
]
