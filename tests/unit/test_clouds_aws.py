"""orchestrator.clouds.aws: the client factory (endpoint, region, timeouts, retries) and the SDK error map."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.exceptions
import pytest

from orchestrator.clouds import aws
from orchestrator.errors import (
    AuthError,
    CapacityError,
    OrchestrateError,
    ProviderError,
    QuotaError,
    SpotRefused,
)

FAMILIES: dict[str, type[ProviderError]] = {
    **dict.fromkeys(("AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "ExpiredToken", "AccessDenied",
                     "AccessDeniedException", "UnrecognizedClientException", "SignatureDoesNotMatch"), AuthError),
    **dict.fromkeys(("InsufficientInstanceCapacity", "InsufficientHostCapacity"), CapacityError),
    **dict.fromkeys(("SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded"), SpotRefused),
    **dict.fromkeys(("VcpuLimitExceeded", "InstanceLimitExceeded"), QuotaError),
    **dict.fromkeys(("InvalidAMIID.NotFound", "RequestLimitExceeded", "InternalError"), ProviderError),
}


def _client_error(code: str, message: str = "AWS says no", status: int = 400,
                  operation: str = "RunInstances") -> botocore.exceptions.ClientError:
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, operation)


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials in the environment and no files or instance metadata to find others in."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_EC2", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("code", "family"), FAMILIES.items())
def test_each_client_error_code_maps_to_its_family_in_one_line_naming_the_code_and_the_caller(
    code: str, family: type[ProviderError]
) -> None:
    error = aws.translate(_client_error(code, "first line\n  second line"), what="EC2 API in us-east-1")
    assert type(error) is family
    assert str(error) == f"EC2 API in us-east-1 refused RunInstances: {code} (HTTP 400): first line second line"
    assert error.hint


def test_unsupported_is_a_capacity_error_only_when_the_zone_is_the_reason() -> None:
    in_zone = _client_error("Unsupported", "Your requested instance type (p3.2xlarge) is not supported in your "
                                           "requested Availability Zone (us-east-1e).")
    assert isinstance(aws.translate(in_zone, what="EC2 API"), CapacityError)
    elsewhere = aws.translate(_client_error("Unsupported", "The requested configuration is not supported."),
                              what="EC2 API")
    assert type(elsewhere) is ProviderError


def test_the_auth_hint_names_the_refused_operation() -> None:
    error = aws.translate(_client_error("UnauthorizedOperation", operation="DescribeInstances"), what="EC2 API")
    assert error.hint and "DescribeInstances" in error.hint and "AWS_PROFILE" in error.hint


@pytest.mark.parametrize(
    ("error", "family", "words"),
    [
        (botocore.exceptions.NoCredentialsError(), AuthError, "no AWS credentials found"),
        (botocore.exceptions.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), AuthError,
         "incomplete AWS credentials"),
        (botocore.exceptions.ProfileNotFound(profile="gpu-lab"), AuthError, "gpu-lab"),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"), ProviderError,
         "cannot connect"),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://10.0.0.1/"), ProviderError,
         "timed out connecting"),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://10.0.0.1/"), ProviderError,
         "timed out waiting"),
        (botocore.exceptions.NoRegionError(), ProviderError, "no AWS region configured"),
        (botocore.exceptions.WaiterError(name="InstanceRunning", reason="gave up", last_response={}),
         ProviderError, "the AWS SDK failed"),
    ],
)
def test_sdk_errors_without_an_answer_are_one_line_with_a_hint(
    error: Exception, family: type[ProviderError], words: str
) -> None:
    translated = aws.translate(error, what="AWS Price List API")
    assert type(translated) is family
    assert str(translated).startswith("AWS Price List API: ") and words in str(translated)
    assert "\n" not in str(translated) and translated.hint
    if family is AuthError and "credentials" in words:
        assert "AWS_ACCESS_KEY_ID" in translated.hint


def test_translating_raises_our_error_and_lets_other_errors_through() -> None:
    quota = pytest.raises(QuotaError, match="EC2 API refused RunInstances: VcpuLimitExceeded")
    with quota, aws.translating(what="EC2 API"):
        raise _client_error("VcpuLimitExceeded")
    with pytest.raises(KeyError), aws.translating(what="EC2 API"):
        raise KeyError("a bug of ours")
    # A request botocore would not send is a bug of ours too.
    with pytest.raises(botocore.exceptions.ParamValidationError), aws.translating(what="EC2 API"):
        raise botocore.exceptions.ParamValidationError(report="Missing required parameter")
    assert issubclass(QuotaError, OrchestrateError)


@pytest.mark.usefixtures("fake_credentials")
def test_client_uses_the_given_region_endpoint_timeouts_and_standard_retries() -> None:
    ec2 = aws.client("ec2", region="eu-west-1", endpoint_url="http://127.0.0.1:4566")
    assert ec2.meta.region_name == "eu-west-1"
    assert ec2.meta.endpoint_url == "http://127.0.0.1:4566"
    config = ec2.meta.config
    assert (config.connect_timeout, config.read_timeout) == (aws.HTTP_TIMEOUT_S, aws.HTTP_TIMEOUT_S)
    assert config.retries == {"total_max_attempts": aws.ATTEMPTS, "mode": "standard"}
    assert aws.client_without_retries("ec2", region="eu-west-1").meta.config.retries["total_max_attempts"] == 1


@pytest.mark.usefixtures("fake_credentials")
def test_client_honours_aws_endpoint_url_and_the_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    ec2 = aws.client("ec2")
    assert (ec2.meta.endpoint_url, ec2.meta.region_name) == ("http://127.0.0.1:5000", "ap-southeast-2")
    assert aws.client("ec2", endpoint_url="http://127.0.0.1:6000").meta.endpoint_url == "http://127.0.0.1:6000"


@pytest.mark.usefixtures("fake_credentials")
def test_a_client_without_a_region_or_with_an_unknown_profile_is_our_error() -> None:
    with pytest.raises(ProviderError, match="no AWS region configured"):
        aws.client("ec2")
    with pytest.raises(AuthError, match="no-such-profile"):
        aws.client("ec2", region="us-east-1", profile="no-such-profile")


class _NoCapacity(BaseHTTPRequestHandler):
    """An EC2 endpoint that answers every call InsufficientInstanceCapacity (HTTP 500, which botocore retries)."""

    calls = 0

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).calls += 1
        body = (b"<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do not "
                b"have sufficient p3.2xlarge capacity in the Availability Zone you requested (us-east-1a)."
                b"</Message></Error></Errors><RequestID>r-1</RequestID></Response>")
        self.send_response(500)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def no_capacity_endpoint() -> Iterator[str]:
    _NoCapacity.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoCapacity)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.usefixtures("fake_credentials")
def test_without_retries_a_capacity_error_comes_back_after_one_call(no_capacity_endpoint: str) -> None:
    ec2 = aws.client_without_retries("ec2", region="us-east-1", endpoint_url=no_capacity_endpoint)
    capacity = pytest.raises(CapacityError, match="refused RunInstances: InsufficientInstanceCapacity")
    with capacity, aws.translating(what="EC2 API in us-east-1"):
        ec2.run_instances(ImageId="ami-12345678", InstanceType="p3.2xlarge", MinCount=1, MaxCount=1)
    assert _NoCapacity.calls == 1
    retrying = aws.client("ec2", region="us-east-1", endpoint_url=no_capacity_endpoint, attempts=2)
    with pytest.raises(CapacityError), aws.translating(what="EC2 API in us-east-1"):
        retrying.run_instances(ImageId="ami-12345678", InstanceType="p3.2xlarge", MinCount=1, MaxCount=1)
    assert _NoCapacity.calls == 3  # the standard retry mode tried the same zone again


def test_importing_the_module_does_not_import_boto3_or_botocore() -> None:
    probe = ("import sys\nimport orchestrator.clouds.aws\nimport orchestrator.catalog.refresh\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore'}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
