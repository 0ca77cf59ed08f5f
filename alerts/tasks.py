"""Thin Celery tasks of alerts."""

from celery import shared_task

from . import services


@shared_task(bind=True, acks_late=True, max_retries=5)
def deliver(self, alert_id: int) -> None:
    try:
        services.alert_deliver(alert_id=alert_id, final_attempt=self.request.retries >= self.max_retries)
    except services.DeliveryFailed as error:
        if self.request.is_eager:
            # No broker (the embedded default): try again in process, without waiting.
            deliver.apply(args=(alert_id,), retries=self.request.retries + 1)
            return
        raise self.retry(exc=error, countdown=min(300, 5 * 2**self.request.retries)) from None


@shared_task(acks_late=True)
def instance_events_alert(event_ids: list[int]) -> None:
    services.alerts_for_instance_events(event_ids=event_ids)


@shared_task
def watch() -> int:
    return services.instances_watch()
