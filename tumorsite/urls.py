from django.contrib import admin
from django.urls import include, path

from clinic.api.dicomweb import StudiesStoreApi
from clinic.health import health_live, health_ready

urlpatterns = [
    # Health (clinic/health.py): liveness, readiness, and /healthz as readiness's alias for the load
    # balancers already pointed at it (it checked the database before readiness existed).
    path("healthz", health_ready, name="healthz"),
    path("healthz/live", health_live, name="healthz-live"),
    path("healthz/ready", health_ready, name="healthz-ready"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("clinic.api.urls")),
    # DICOMweb STOW-RS (PS3.18 section 10.5): a PACS or viewer sends studies in (docs/api.md, "DICOMweb").
    path("dicomweb/studies", StudiesStoreApi.as_view(), name="dicomweb-studies"),
    path("", include("clinic.urls")),
]
