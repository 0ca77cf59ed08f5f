"""Security tests run against real instances: the instance fixtures, shared."""

from tests.instances.conftest import create_instance, customer, customer_client, runtime  # noqa: F401
