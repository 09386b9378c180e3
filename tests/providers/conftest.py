"""The loopback sshd fixtures, for the rented provider's contract tests."""

from tests.integration.conftest import client_key, make_host_key, sshd, sshd_binary  # noqa: F401
