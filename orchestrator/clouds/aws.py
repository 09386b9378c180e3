"""AWS through boto3: the client factory, its timeouts and retries, and the one map of SDK errors to ours.

boto3 and botocore are imported inside the functions, so importing this module stays cheap and
``orchestrate --help`` never loads them (DESIGN §2). Every AWS failure becomes one
:mod:`orchestrator.errors` family here, once (DESIGN §6): :class:`AuthError` never fails over,
:class:`CapacityError` and :class:`QuotaError` let the lifecycle move to the next placement, and
:class:`SpotRefused` (the spot market said no to the request as a whole) to the next on-demand one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from orchestrator.errors import AuthError, CapacityError, OrchestrateError, ProviderError, QuotaError, SpotRefused

HTTP_TIMEOUT_S = 20.0  # seconds to connect, and to wait for each response (the Azure price API uses it too)
ATTEMPTS = 3  # tries per call, the first included (botocore's total_max_attempts)
# A call made without botocore's retries (RunInstances: a capacity error must fail over at once) is still retried
# when EC2 throttles it: this many tries, waiting a random part of 1, 2, 4, 8, 16 s between them (full jitter, as
# botocore's own ExponentialBackoff does for throttling), so at most 31 s in all.
THROTTLE_TRIES = 6
THROTTLE_BASE_S = 1.0
THROTTLE_CAP_S = 20.0  # botocore's max_backoff
# EC2 answers RequestLimitExceeded when an account's API request rate is exceeded (EC2 API reference, "Request
# throttling"); the others are botocore's names for throttling elsewhere, should EC2 ever send them.
THROTTLING_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException", "EC2ThrottledException"})
_THROTTLE_HINT = ("EC2 limits the rate of API calls per account and region: wait a minute and try again, or start "
                  "fewer runs at once")

T = TypeVar("T")

_AUTH_HINT = ("check the AWS credentials in force (AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) "
              "and that their policy allows {operation}")
_CAPACITY_HINT = "AWS has no capacity for this request there now; another zone, region or instance type may"
_QUOTA_HINT = "ask for a higher limit in the Service Quotas console, or ask for fewer or smaller machines"
_SPOT_HINTS = {
    "SpotMaxPriceTooLow": "raise max_price (or leave it out to pay up to the on-demand price), or run on-demand",
    "MaxSpotInstanceCountExceeded": "ask for a higher spot limit in the Service Quotas console, or run on-demand",
}
_OTHER_HINT = "try again later; if it persists, check the AWS Health Dashboard"

# ClientError codes → our family. Anything else is a ProviderError.
_CODES: dict[str, type[ProviderError]] = {
    **dict.fromkeys((
        "AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
        "AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
        "SignatureDoesNotMatch", "MissingAuthenticationToken", "RequestExpired",
    ), AuthError),
    **dict.fromkeys((
        "InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientReservedInstanceCapacity",
        "InsufficientCapacityOnHost",
    ), CapacityError),
    **dict.fromkeys(_SPOT_HINTS, SpotRefused),  # no spot placement would do: the next on-demand one may
    **dict.fromkeys((
        "VcpuLimitExceeded", "InstanceLimitExceeded", "RequestResourceCountExceeded",
    ), QuotaError),
}


def client(
    service: str,
    *,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    attempts: int = ATTEMPTS,
) -> Any:
    """Returns a botocore client with bounded timeouts and botocore's standard retries.

    Credentials come from boto3's default chain only (environment, shared files, SSO, instance role); an
    endpoint left out is found as boto3 finds it, so ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_EC2`` …) is
    honoured.

    Args:
        service: the botocore service name, e.g. ``ec2`` or ``pricing``.
        region: the region code, e.g. ``us-east-1`` (default: the profile's or ``AWS_DEFAULT_REGION``).
        profile: a named profile of the shared config files (default: ``AWS_PROFILE`` or the default one).
        endpoint_url: another endpoint for the service (tests serve one on 127.0.0.1).
        attempts: tries per call, the first included; 1 turns retries off (see :func:`client_without_retries`).

    Raises:
        AuthError: the profile does not exist or its credentials cannot be loaded.
        ProviderError: no region is configured, or the client cannot be made.
    """
    import botocore.config
    import botocore.session

    config = botocore.config.Config(
        connect_timeout=HTTP_TIMEOUT_S, read_timeout=HTTP_TIMEOUT_S,
        retries={"total_max_attempts": attempts, "mode": "standard"},
    )
    with translating(what=f"AWS {service} client"):
        # A fresh session (a shared one caches credentials for the life of the process), with the process's one
        # loader of API models: a session's own loader parses EC2's model again (~0.3 s of CPU per client).
        session = botocore.session.Session(profile=profile)
        session.register_component("data_loader", _api_models())
        return session.create_client(service, region_name=region, endpoint_url=endpoint_url, config=config)


@cache
def _api_models() -> Any:
    """botocore's loader of the services' API models (read-only files, parsed once per process)."""
    import botocore.loaders

    return botocore.loaders.create_loader()


def client_without_retries(
    service: str, *, region: str | None = None, profile: str | None = None, endpoint_url: str | None = None
) -> Any:
    """Returns a client as :func:`client` does, making exactly one try per call.

    For calls whose failure must fail over at once: EC2 answers ``InsufficientInstanceCapacity`` with HTTP 500,
    which standard retries would repeat against the same zone before the lifecycle could try the next one.
    """
    return client(service, region=region, profile=profile, endpoint_url=endpoint_url, attempts=1)


def throttle_delay_s(retry: int, *, jitter: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the ``retry``-th retry (1-based) of a throttled call: a random part (``jitter()`` in
    [0, 1)) of 1, 2, 4, … s, capped at :data:`THROTTLE_CAP_S`, so that many clients do not retry in step."""
    return jitter() * min(THROTTLE_CAP_S, THROTTLE_BASE_S * 2.0 ** (retry - 1))


def retrying_throttled(
    call: Callable[[], T],
    *,
    what: str,
    sleep: Callable[[float], None],
    tries: int = THROTTLE_TRIES,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Returns ``call()``, retrying it while AWS answers with a throttling code (:data:`THROTTLING_CODES`); any
    other error, a capacity error above all, goes up at once, untouched.

    Args:
        call: one AWS call, made by a client without retries of its own.
        what: who is asked, for the line raised when throttling outlasts the tries, e.g. ``EC2 API in us-east-1``.
        sleep: how to wait between tries (injected in tests).
        tries: tries in all, the first included.
        jitter: a random number in [0, 1) (injected in tests).

    Raises:
        ProviderError: still throttled after ``tries`` tries; the line says how many and how long they took.
    """
    import botocore.exceptions

    if tries < 1:
        raise ValueError(f"tries counts the first try too: 1 or more. Received: tries={tries}")
    waited, attempt = 0.0, 1
    while True:
        try:
            return call()
        except botocore.exceptions.ClientError as error:
            code = (error.response.get("Error") or {}).get("Code")
            if code not in THROTTLING_CODES:
                raise
            if attempt >= tries:
                raise ProviderError(f"{translate(error, what=what)}; still throttled after {tries} tries over "
                                    f"{waited:.0f} s", hint=_THROTTLE_HINT) from None
            delay = throttle_delay_s(attempt, jitter=jitter)
            sleep(delay)
            waited += delay
            attempt += 1


@cache
def _sdk_errors() -> dict[type[Exception], tuple[type[ProviderError], str, str]]:
    """botocore's exception classes → (our family, what the line says, hint); built on first use."""
    import botocore.exceptions as sdk

    credentials = "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (boto3's default chain)"
    network = "check the network, the region and any endpoint URL (AWS_ENDPOINT_URL, --endpoint-url)"
    return {
        sdk.NoCredentialsError: (AuthError, "no AWS credentials found", credentials),
        sdk.PartialCredentialsError: (AuthError, "incomplete AWS credentials", credentials),
        sdk.CredentialRetrievalError: (AuthError, "AWS credentials could not be loaded", credentials),
        sdk.ProfileNotFound: (AuthError, "no such AWS profile", "check AWS_PROFILE and ~/.aws/config"),
        sdk.TokenRetrievalError: (AuthError, "the AWS SSO token could not be loaded", "run `aws sso login`"),
        sdk.SSOError: (AuthError, "AWS SSO failed", "run `aws sso login`"),
        sdk.NoRegionError: (ProviderError, "no AWS region configured", "set AWS_DEFAULT_REGION or name a region"),
        sdk.ConnectTimeoutError: (ProviderError, "timed out connecting", network),
        sdk.ReadTimeoutError: (ProviderError, "timed out waiting for an answer", network),
        sdk.EndpointConnectionError: (ProviderError, "cannot connect", network),
        sdk.ConnectionError: (ProviderError, "cannot connect", network),
        sdk.HTTPClientError: (ProviderError, "the connection failed", network),
        sdk.BotoCoreError: (ProviderError, "the AWS SDK failed", _OTHER_HINT),
    }


def translate(error: Exception, *, what: str) -> OrchestrateError:
    """Returns the :mod:`orchestrator.errors` family for an AWS SDK error, with one line that says what happened.

    A ``ClientError`` is mapped by its code (AWS refused the call); botocore's other errors by the most
    specific class the map names (the call never got an answer). Anything else is a :class:`ProviderError`
    naming the exception's type.

    Args:
        error: what boto3 or botocore raised.
        what: who was asked, as the user knows it, e.g. ``EC2 API in us-east-1``; the line starts with it.

    Returns:
        The error to raise (``raise translate(error, what=…) from None``).
    """
    import botocore.exceptions

    if isinstance(error, botocore.exceptions.ClientError):
        return _refused(error, what=what)
    table = _sdk_errors()
    for cls in type(error).__mro__:  # the most specific class the map names wins
        if cls in table:
            family, summary, hint = table[cls]
            return family(f"{what}: {summary}: {error}", hint=hint)
    return ProviderError(f"{what} failed: {type(error).__name__}: {error}", hint=_OTHER_HINT)


def _refused(error: Any, *, what: str) -> ProviderError:
    """Maps a ClientError (AWS answered, and said no) by its code."""
    response = error.response
    details = response.get("Error") or {}
    code = str(details.get("Code") or "Unknown")
    message = " ".join(str(details.get("Message") or "").split())  # one line, whatever AWS sent
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode", "?")
    operation = str(error.operation_name or "the call")
    line = f"{what} refused {operation}: {code} (HTTP {status})" + (f": {message}" if message else "")
    family = _CODES.get(code, ProviderError)
    if code == "Unsupported" and "availability zone" in message.lower():
        family = CapacityError  # the type is not offered in that zone; another zone may have it
    hints = {AuthError: _AUTH_HINT.format(operation=operation), CapacityError: _CAPACITY_HINT,
             QuotaError: _QUOTA_HINT, SpotRefused: _SPOT_HINTS.get(code, _CAPACITY_HINT)}
    return family(line, hint=hints.get(family, _OTHER_HINT))


@contextmanager
def translating(*, what: str) -> Iterator[None]:
    """Raises botocore's errors inside the block as :func:`translate` maps them; lets every other error through.

    A ``ParamValidationError`` (a request botocore would not send) goes through too: it is a bug here.

    Args:
        what: who is asked inside the block, e.g. ``EC2 API``.
    """
    import botocore.exceptions

    try:
        yield
    except botocore.exceptions.ParamValidationError:
        raise  # our call was malformed: a bug, so a traceback
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise translate(error, what=what) from None
