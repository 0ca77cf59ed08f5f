from tests.instances.conftest import create_instance, customer, customer_client, runtime  # noqa: F401
