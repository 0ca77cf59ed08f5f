"""The Site record names the product: allauth puts it in every e-mail's subject and body. Django creates
it as "example.com" (after each migrate or flush); a record still at that default is renamed."""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.contrib.sites.models import Site

PRODUCT_NAME = "QuantMesh Cloud"


def site_name_the_product(**kwargs) -> None:
    domain = urlparse(settings.QM_PUBLIC_URL).netloc or "quantmesh.cloud"
    Site.objects.filter(pk=settings.SITE_ID, domain="example.com").update(domain=domain, name=PRODUCT_NAME)
