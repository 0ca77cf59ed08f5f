import pytest

from alerts.services import alert_settings_update
from tests.billing.conftest import client_for, stripe_billing, stripe_server  # noqa: F401
from tests.instances.conftest import create_instance, customer, customer_client, runtime  # noqa: F401

from .telegram_server import TelegramServer

TOKEN = "123456:TEST-bot-token-do-not-leak"


@pytest.fixture
def telegram(settings):
    server = TelegramServer(TOKEN)
    settings.QM_TELEGRAM_BOT_TOKEN = TOKEN
    settings.QM_TELEGRAM_API_URL = server.url
    yield server
    server.close()


@pytest.fixture
def both_channels(telegram):
    """Make `user` want every alert by e-mail and on Telegram."""

    def enable(user):
        from alerts.models import AlertKind

        return alert_settings_update(
            user=user,
            email_enabled=True,
            telegram_enabled=True,
            telegram_chat_id="424242",
            events=list(AlertKind.values),
        )

    return enable
