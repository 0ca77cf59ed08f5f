"""The embedded default's Celery beat: run the beat schedule's tasks in this process.

With a broker (REDIS_URL) the real `celery beat` does this; without one, tasks run in process
anyway, so this loop calls them on the same schedule, each job in a thread of its own: a slow
job (DNS checks, backups) never delays another (reconcile), and a job still running is not started
again.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the periodic jobs of CELERY_BEAT_SCHEDULE in process (embedded default, no broker)."

    def handle(self, *args, **options):
        current_app.loader.import_default_modules()  # register the apps' tasks
        schedule = {name: entry for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}
        due = dict.fromkeys(schedule, 0.0)
        running: dict[str, threading.Thread] = {}
        self.stdout.write(f"periodic jobs: {', '.join(schedule)}")
        while True:
            now = time.monotonic()
            for name, entry in schedule.items():
                if now >= due[name] and not (name in running and running[name].is_alive()):
                    due[name] = now + float(entry["schedule"])
                    running[name] = threading.Thread(target=run_job, args=(name, entry["task"]), daemon=True)
                    running[name].start()
            time.sleep(max(0.1, min(due.values()) - time.monotonic()))


def run_job(name: str, task: str) -> None:
    try:
        current_app.tasks[task].apply()
    except Exception:  # one failed pass must not stop the next ones
        logger.exception("periodic job %s failed", name)
    finally:
        close_old_connections()
