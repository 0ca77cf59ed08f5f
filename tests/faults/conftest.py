"""Fault injection runs real instances: the instance tests' runtime fixtures."""

from tests.instances.conftest import create_instance, customer, customer_client, runtime  # noqa: F401
