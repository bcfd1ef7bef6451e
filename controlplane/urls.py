from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from api.metrics import metrics_view
from controlplane.views import healthz, login_rate_limited

# The admin's own login form is limited like the dashboard's.
admin.site.login = login_rate_limited(admin.site.login)  # type: ignore[method-assign,assignment]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("django-rq/", include("django_rq.urls")),
    path("metrics", metrics_view, name="metrics"),
    path(
        "login/",
        login_rate_limited(auth_views.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include("api.urls")),
    path("", include("dashboard.urls")),
]

# Unknown URLs and crashes under /api/ answer JSON in the API's error shape.
handler404 = "controlplane.views.not_found"
handler500 = "controlplane.views.server_error"
