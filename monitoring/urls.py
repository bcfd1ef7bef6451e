from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from controlplane.views import login_rate_limited

urlpatterns = [
    path(
        "login/",
        login_rate_limited(auth_views.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include("monitoring.api.urls")),
    path("", include("monitoring.dashboard.urls")),
]
