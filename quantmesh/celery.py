import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantmesh.settings.base")

app = Celery("quantmesh")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from quantmesh.logs import connect_celery_signals  # noqa: E402 (after the app: it registers on Celery's signals)

connect_celery_signals()
