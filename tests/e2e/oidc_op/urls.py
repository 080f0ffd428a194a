from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("healthz", healthz),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="op_login.html")),
    path("openid/", include("oidc_provider.urls", namespace="oidc_provider")),
]
