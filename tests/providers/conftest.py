"""The loopback sshd fixtures, for the rented and aws providers' contract tests, and moto for the aws one."""

from tests.fakes.aws import moto_aws  # noqa: F401
from tests.integration.conftest import client_key, make_host_key, sshd, sshd_binary  # noqa: F401
