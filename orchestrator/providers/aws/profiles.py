"""AWS named profiles: a ``--profile`` that the shared config files do not define is refused at plan time.

Reading the config files is local (no call to AWS); whether the profile's credentials are accepted is only known
when AWS answers, and is an :class:`~orchestrator.errors.AuthError` then.
"""

from __future__ import annotations

from orchestrator.errors import SpecError


def check_profile(profile: str) -> None:
    """Checks that ``profile`` is a profile of the AWS config files (``AWS_CONFIG_FILE``, ``~/.aws/config``, …).

    Raises:
        SpecError: it is not; the line lists the profiles that are.
    """
    import botocore.session

    known = sorted(botocore.session.Session().available_profiles)
    if profile not in known:
        accepted = ("a profile of the AWS config files: " + ", ".join(known) if known
                    else "a profile of the AWS config files, and none is configured (aws configure --profile NAME)")
        raise SpecError("--profile", profile, accepted)
