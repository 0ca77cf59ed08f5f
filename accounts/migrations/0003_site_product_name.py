"""The Site record names the product (allauth puts it in e-mail subjects and bodies): not example.com."""

from urllib.parse import urlparse

from django.conf import settings
from django.db import migrations


def name_the_site(apps, schema_editor):
    Site = apps.get_model("sites", "Site")
    domain = urlparse(settings.QM_PUBLIC_URL).netloc or "quantmesh.cloud"
    Site.objects.update_or_create(pk=settings.SITE_ID, defaults={"domain": domain, "name": "QuantMesh Cloud"})


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_token_guessing_event"), ("sites", "0002_alter_domain_unique")]
    operations = [migrations.RunPython(name_the_site, migrations.RunPython.noop)]
