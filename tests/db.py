"""The database marker for tests that commit (live servers, workers, threads)."""

import pytest
from django.conf import settings

# Such tests flush the tables after each test. dj-stripe's hundred-odd tables would add seconds to
# every flush and none of these tests touches them, so only the other apps' tables are flushed.
# Django then re-creates what post_migrate makes (content types, the default site) before each test;
# tests/conftest.py loads the plans.
FLUSHED_APPS = [app for app in settings.INSTALLED_APPS if app != "djstripe"]

committing_db = pytest.mark.django_db(transaction=True, available_apps=FLUSHED_APPS)
