from django.db import migrations


def load(apps, schema_editor):
    from billing.services import plan_catalogue_sync

    plan_catalogue_sync(plan_model=apps.get_model("billing", "Plan"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
