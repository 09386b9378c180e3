"""Every verb, every kind of bad input: exit 2, one error line naming the field, no traceback, the store unchanged.

The cases run in-process through click's runner (the same `_Group.main` the console script runs), against a home
whose store holds one finished run; the store's files are hashed before and after each case. Files live in
tests/data/bad/.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.cost import CostLine
from orchestrator.store import Store

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
LONG = "s" * 100_000
NOT_UTF8 = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of such argv bytes

# (case id, argv, inventory file or None, text the one error line must contain)
CASES: list[tuple[str, list[str], str | None, str]] = [
    # run: files
    ("run -f not UTF-8", ["run", "-f", str(BAD / "run_not_utf8.yaml")], None, "invalid file"),
    ("run -f a directory", ["run", "-f", str(BAD / "a_directory")], None, "not a directory"),
    ("run -f missing", ["run", "-f", str(BAD / "nothing.yaml")], None, "an existing YAML file"),
    ("run -f not a mapping", ["run", "-f", str(BAD / "run_not_mapping.yaml")], None, "a YAML mapping"),
    ("run -f broken YAML", ["run", "-f", str(BAD / "run_bad_yaml.yaml")], None, "a valid YAML file"),
    ("run -f unknown field", ["run", "-f", str(BAD / "run_unknown_field.yaml")], None, "invalid providr"),
    ("run -f epochs a mapping", ["run", "-f", str(BAD / "run_nested_epochs.yaml")], None,
     "invalid params.epochs: received {'a': 1}; accepted: a number, true/false, text, or a list of those"),
    ("run -f price inf", ["run", "-f", str(BAD / "run_inf_price.yaml")], None,
     "invalid machine.price_per_hour: received inf; accepted: a finite number"),
    ("run -f timeout nan", ["run", "-f", str(BAD / "run_nan_timeout.yaml")], None, "invalid timeout_s"),
    ("run -f control characters in name", ["run", "-f", str(BAD / "run_control_name.yaml")], None,
     "invalid name: received 'a\\x07b'"),
    ("run -f count 0", ["run", "-f", str(BAD / "run_zero_count.yaml")], None, "invalid machine.count"),
    # run: suites
    ("run --suite not UTF-8", ["run", "--suite", str(BAD / "suite_not_utf8.yaml")], None, "invalid suite"),
    ("run --suite unknown field", ["run", "--suite", str(BAD / "suite_bad_field.yaml")], None, "colour"),
    ("run --suite 100k characters", ["run", "--suite", LONG], None, "invalid suite: received 'sssss"),
    ("run --suite unknown", ["run", "--suite", "nosuch"], None, "invalid suite: received 'nosuch'"),
    ("run --suite a directory", ["run", "--suite", str(BAD / "a_directory")], None, "invalid suite"),
    # run: flags
    ("run --name not UTF-8", ["run", "--name", NOT_UTF8], None, "invalid --name: received b'\\xff\\xfe'"),
    ("run --name empty", ["run", "--name", ""], None, "invalid name"),
    ("run --name 100k characters", ["run", "--name", LONG], None, "invalid name"),
    ("run --price-per-hour inf", ["run", "--price-per-hour", "inf"], None, "'--price-per-hour': received 'inf'"),
    ("run --price-per-hour nan", ["run", "--price-per-hour", "nan"], None, "'--price-per-hour': received 'nan'"),
    ("run --price-per-hour -1", ["run", "--price-per-hour", "-1"], None, "'--price-per-hour'"),
    ("run --timeout 0", ["run", "--timeout", "0"], None, "'--timeout'"),
    ("run --timeout nan", ["run", "--timeout", "nan"], None, "'--timeout'"),
    ("run --lease-wait inf", ["run", "--provider", "rented", "--lease-wait", "inf"], "inventory.yaml",
     "'--lease-wait'"),
    ("run --set epochs huge", ["run", "--set", "epochs=999999999999999999999999"], None,
     "expected a positive integer (at most 100,000)"),
    ("run --set epochs nan", ["run", "--set", "epochs=nan"], None, "invalid params.epochs: received 'nan'"),
    ("run --set learning_rate inf", ["run", "--set", "learning_rate=inf"], None,
     "invalid params.learning_rate: received 'inf'"),
    ("run --set epochs text", ["run", "--set", "epochs=many"], None, "invalid params.epochs"),
    ("run --set unknown param", ["run", "--set", "nokey=1"], None, "invalid params: received 'nokey'"),
    ("run --set without a key", ["run", "--set", "=3"], None, "invalid --set"),
    ("run --backend unknown", ["run", "--backend", "mxnet"], None, "'--backend'"),
    ("run --count 0", ["run", "--count", "0"], None, "invalid machine.count"),
    ("run --count 99", ["run", "--provider", "rented", "--count", "99"], "inventory.yaml", "invalid machine.count"),
    ("run --provider unknown", ["run", "--provider", "gcp"], None, "invalid provider: received 'gcp'"),
    ("run local --count 2", ["run", "--provider", "local", "--count", "2"], None, "invalid --count"),
    ("run local --host", ["run", "--provider", "local", "--host", "box0"], None, "invalid --host"),
    ("run local --instance-type", ["run", "--provider", "local", "--instance-type", "p5.48xlarge"], None,
     "invalid --instance-type"),
    ("run --allow-cidr everyone", ["run", "--allow-cidr", "0.0.0.0/0"], None, "invalid machine.allow_cidr"),
    ("run --allow-cidr host bits", ["run", "--allow-cidr", "10.0.0.1/24"], None, "invalid machine.allow_cidr"),
    ("run --image not an AMI", ["run", "--image", "ubuntu"], None, "invalid --image: received 'ubuntu'"),
    ("run local --image", ["run", "--provider", "local", "--image", "ami-0123456789abcdef0"], None,
     "invalid --image"),
    ("run local --spot", ["run", "--provider", "local", "--spot"], None, "invalid --spot"),
    ("run --max-price nan", ["run", "--max-price", "nan"], None, "'--max-price'"),
    ("run aws P3 without an image", ["run", "--provider", "aws", "--instance-type", "p3.2xlarge"], None,
     "invalid --image: not set; accepted: an AMI id for p3.2xlarge: the current Deep Learning AMIs do not "
     "support P2 (K80) or P3 (V100)"),
    ("run aws K80 by GPU without an image", ["run", "--provider", "aws", "--gpu", "K80"], None, "p2.xlarge"),
    ("run aws without a type or GPU", ["run", "--provider", "aws"], None,
     "invalid --instance-type"),
    ("run aws unknown type", ["run", "--provider", "aws", "--instance-type", "p9.huge"], None,
     "invalid --instance-type: received 'p9.huge'"),
    ("run aws unknown GPU", ["run", "--provider", "aws", "--gpu", "H900"], None, "invalid --gpu: received 'H900'"),
    ("run aws region without it", ["run", "--provider", "aws", "--gpu", "T4", "--region", "eu-north-1"], None,
     "invalid regions"),
    ("run aws --host", ["run", "--provider", "aws", "--host", "box0"], "inventory.yaml", "invalid --host"),
    ("run aws --profile unknown", ["run", "--provider", "aws", "--instance-type", "g4dn.xlarge", "--profile",
                                   "nosuch-profile-0"], None, "invalid --profile: received 'nosuch-profile-0'"),
    ("run aws --profile with a space", ["run", "--provider", "aws", "--instance-type", "g4dn.xlarge", "--profile",
                                        "a b"], None, "invalid machine.profile: received 'a b'"),
    ("run local --profile", ["run", "--provider", "local", "--profile", "research"], None,
     "invalid --profile: received 'research'; accepted: nothing: the local provider"),
    ("run --nodes 0", ["run", "--provider", "aws", "--instance-type", "g4dn.xlarge", "--nodes", "0"], None,
     "invalid --nodes: received 0"),
    ("run --nodes 2 --count 3", ["run", "--provider", "aws", "--instance-type", "g4dn.xlarge", "--nodes", "2",
                                 "--count", "3"], None, "invalid --count: received 3; accepted: 2"),
    ("run --nodes text", ["run", "--nodes", "two"], None, "'--nodes'"),
    ("run -f environment on local", ["run", "-f", str(BAD / "run_environment_local.yaml")], None,
     "invalid machine.environment: received {'python': '/opt/conda/bin/python'}"),
    ("run -f environment unknown key", ["run", "-f", str(BAD / "run_environment_unknown.yaml")], None,
     "invalid machine.environment.pythn"),
    ("run -f environment newline", ["run", "-f", str(BAD / "run_environment_newline.yaml")], None,
     "invalid machine.environment.python"),
    ("import-terraform not JSON", ["inventory", "import-terraform", str(BAD / "tf_truncated.json"), "--key",
                                   str(BAD / "inventory.yaml")], None, "invalid OUTPUT.json"),
    ("import-terraform no hosts output", ["inventory", "import-terraform", str(BAD / "tf_no_hosts.json"), "--key",
                                          str(BAD / "inventory.yaml")], None,
     "invalid OUTPUT.json: received 'instance_ids'; accepted: `terraform output -json`"),
    ("import-terraform no host key", ["inventory", "import-terraform", str(BAD / "tf_no_host_key.json"), "--key",
                                      str(BAD / "inventory.yaml")], None, "invalid hosts[0].host_key"),
    ("import-terraform bad host key", ["inventory", "import-terraform", str(BAD / "tf_bad_host_key.json"), "--key",
                                       str(BAD / "inventory.yaml")], None,
     "invalid hosts[0].host_key: received 'not a key'"),
    ("import-terraform no boxes", ["inventory", "import-terraform", str(BAD / "tf_empty.json"), "--key",
                                   str(BAD / "inventory.yaml")], None, "invalid hosts: received '[]'"),
    ("import-terraform missing file", ["inventory", "import-terraform", str(BAD / "nothing.json"), "--key",
                                       str(BAD / "inventory.yaml")], None, "invalid OUTPUT.json"),
    ("import-terraform missing key", ["inventory", "import-terraform", str(BAD / "tf_ok.json"), "--key",
                                      str(BAD / "no_key")], None, "invalid --key: received"),
    ("import-terraform into an inventory without --merge",
     ["inventory", "import-terraform", str(BAD / "tf_ok.json"), "--key", str(BAD / "inventory.yaml")],
     "inventory.yaml", "accepted: a path with no inventory yet, or --merge"),
    ("import-terraform key is a directory", ["inventory", "import-terraform", str(BAD / "tf_ok.json"), "--key",
                                             str(BAD / "a_directory")], None, "invalid --key"),
    ("import-terraform --prepare unknown", ["inventory", "import-terraform", str(BAD / "tf_ok.json"), "--key",
                                            str(BAD / "inventory.yaml"), "--prepare", "conda"], None, "'--prepare'"),
    ("sweep missing file", ["sweep", str(BAD / "nothing.yaml"), "--dry-run"], None, "invalid FILE"),
    ("sweep not a mapping", ["sweep", str(BAD / "run_not_mapping.yaml"), "--dry-run"], None, "invalid FILE"),
    ("sweep no machines", ["sweep", str(BAD / "sweep_no_machines.yaml"), "--dry-run"], None,
     "invalid sweep sweep_no_machines.yaml: machines"),
    ("sweep machine without provider", ["sweep", str(BAD / "sweep_no_provider.yaml"), "--dry-run"], None,
     "each machine names its provider"),
    ("sweep empty values", ["sweep", str(BAD / "sweep_empty_values.yaml"), "--dry-run"], None,
     "at least one value for batch_size"),
    ("sweep exclude unknown key", ["sweep", str(BAD / "sweep_bad_exclude.yaml"), "--dry-run"], None,
     "invalid exclude[0]: received 'precision'"),
    ("sweep unknown field", ["sweep", str(BAD / "sweep_unknown_field.yaml"), "--dry-run"], None, "budget"),
    ("sweep unknown suite", ["sweep", str(BAD / "sweep_unknown_suite.yaml"), "--dry-run"], None,
     "invalid suite: received 'nosuch'"),
    ("sweep cell with an unknown type", ["sweep", str(BAD / "sweep_unknown_type.yaml"), "--dry-run"], None,
     "invalid --instance-type: received 'p9.huge'"),
    ("sweep params the payload refuses", ["sweep", str(BAD / "sweep_payload_refuses.yaml"), "--dry-run"], None,
     "epochs=-2): invalid"),
    ("sweep --parallel 0", ["sweep", str(BAD / "sweep_no_machines.yaml"), "--parallel", "0"], None, "'--parallel'"),
    ("sweep --budget -1", ["sweep", str(BAD / "sweep_no_machines.yaml"), "--budget", "-1"], None, "'--budget'"),
    ("sweep --resume, nothing to resume", ["sweep", str(BAD / "sweep_ok.yaml"), "--resume"], None,
     "invalid --resume: received 'ok'; accepted: the name of a campaign that did not complete"),
    ("sweep --retry-failed without --resume", ["sweep", str(BAD / "sweep_ok.yaml"), "--retry-failed"], None,
     "--retry-failed goes with --resume"),
    ("sweep --dry-run --resume", ["sweep", str(BAD / "sweep_ok.yaml"), "--dry-run", "--resume"], None,
     "leave out --resume"),
    ("sweep --parallel 65", ["sweep", str(BAD / "sweep_ok.yaml"), "--parallel", "65"], None, "'--parallel'"),
    ("sweep two suites in one entry", ["sweep", str(BAD / "sweep_two_suites.yaml")], None,
     "invalid sweep sweep_two_suites.yaml: suites"),
    ("campaign status unknown", ["campaign", "status", "nosuch"], None,
     "invalid CAMPAIGN: received 'nosuch'; accepted: a campaign id or name"),
    ("campaign report unknown", ["campaign", "report", "nosuch"], None, "invalid CAMPAIGN: received 'nosuch'"),
    ("campaign report html without -o", ["campaign", "report", "x", "--format", "html"], None, "-o campaign.html"),
    ("campaign report unknown format", ["campaign", "report", "x", "--format", "pdf"], None, "'--format'"),
    ("campaign report -o in a missing directory", ["campaign", "report", "x", "-o", "/nonexistent/dir/c.md"], None,
     "invalid -o"),
    ("down --profile unknown", ["down", "--all", "--profile", "nosuch-profile-0"], None,
     "invalid --profile: received 'nosuch-profile-0'"),
    ("run rented unknown host", ["run", "--provider", "rented", "--host", "nosuchbox"], "inventory.yaml",
     "invalid host: received 'nosuchbox'"),
    ("run rented unknown GPU", ["run", "--provider", "rented", "--gpu", "H100"], "inventory.yaml", "invalid gpu"),
    ("run rented --count 5", ["run", "--provider", "rented", "--count", "5"], "inventory.yaml", "invalid --count"),
    ("run rented a box twice", ["run", "--provider", "rented", "--host", "box0", "--host", "box0"],
     "inventory.yaml", "invalid --host"),
    # inventories
    ("inventory missing", ["run", "--provider", "rented"], "nothing.yaml", "invalid inventory"),
    ("inventory a directory", ["run", "--provider", "rented"], "a_directory", "not a directory"),
    ("inventory not UTF-8", ["run", "--provider", "rented"], "inventory_not_utf8.yaml", "in UTF-8"),
    ("inventory empty", ["inventory", "list"], "inventory_empty.yaml", "a YAML mapping with a hosts: list"),
    ("inventory not a mapping", ["inventory", "list"], "inventory_not_mapping.yaml", "a YAML mapping"),
    ("inventory duplicate names", ["inventory", "list"], "inventory_duplicate.yaml",
     "invalid inventory hosts: received 'box0'; accepted: each host name once"),
    ("inventory no pinned key", ["inventory", "list"], "inventory_no_pin.yaml", "host_key"),
    ("inventory price inf", ["inventory", "list"], "inventory_inf_price.yaml",
     "invalid inventory hosts.0.price.per_hour: received inf"),
    ("inventory port out of range", ["inventory", "list"], "inventory_bad_port.yaml", "hosts.0.port"),
    ("inventory bastion not pinned", ["inventory", "list"], "inventory_proxy_no_pin.yaml", "proxy_jump"),
    ("inventory workdir with a newline", ["inventory", "list"], "inventory_workdir_newline.yaml",
     "invalid inventory hosts.0.workdir: received 'orchestrate\\nrm -rf ~'; accepted: a path of 1 to 1000 characters, "
     "without control characters"),
    ("inventory python with a control character", ["run", "--provider", "rented"], "inventory_python_control.yaml",
     "invalid inventory hosts.0.python: received '/usr/bin/python3\\x1b[2J'"),
    ("inventory workdir empty", ["inventory", "check"], "inventory_workdir_empty.yaml",
     "invalid inventory hosts.0.workdir: received ''"),
    ("import-terraform --python with a newline", ["inventory", "import-terraform", str(BAD / "tf_ok.json"), "--key",
                                                  str(BAD / "inventory.yaml"), "--python", "py\nthon"], None,
     "python: received 'py\\nthon'"),
    ("inventory check unknown box", ["inventory", "check", "--host", "nosuch"], "inventory.yaml",
     "invalid host: received 'nosuch'"),
    # status
    ("status not UTF-8", ["status", NOT_UTF8], None, "invalid RUN: received b'\\xff\\xfe'"),
    ("status --last then not UTF-8", ["status", "--last", "2", NOT_UTF8], None, "invalid RUN: received b'\\xff"),
    ("status empty id", ["status", ""], None, "invalid RUN: received ''"),
    ("status 100k characters", ["status", LONG], None, "invalid RUN"),
    ("status unknown run", ["status", "r-nosuch"], None, "no run with id 'r-nosuch'"),
    ("status --last 0", ["status", "--last", "0"], None, "'--last'"),
    # report
    ("report unknown run", ["report", "r-nosuch"], None, "no run with id 'r-nosuch'"),
    ("report not UTF-8", ["report", "--format", "md", "r-1", NOT_UTF8], None, "invalid RUN: received b'\\xff"),
    ("report empty id", ["report", ""], None, "invalid RUN"),
    ("report --baseline ref-99", ["report", "--references", "--baseline", "ref-99"], None,
     "invalid --baseline: received 'ref-99'"),
    ("report --format unknown", ["report", "--format", "xml"], None, "'--format'"),
    ("report --view unknown", ["report", "--view", "nope"], None, "'--view'"),
    ("report --last 0", ["report", "--last", "0"], None, "'--last'"),
    ("report parquet without -o", ["report", "--format", "parquet"], None, "-o"),
    ("report --all with --last", ["report", "--all", "--last", "1"], None, "--all"),
    ("report -o into a missing directory", ["report", "--format", "csv", "-o", str(BAD / "nowhere" / "r.csv")], None,
     "invalid -o"),
    ("report -o onto a directory", ["report", "--format", "html", "-o", str(BAD / "a_directory")], None,
     "invalid -o"),
    ("report --columns unknown", ["report", "--columns", "run_id,colour"], None, "colour"),
    ("report --spread-bound abc", ["report", "--spread-bound", "abc"], None,
     "'--spread-bound': received 'abc'; accepted: a fraction above 0 and below 1"),
    ("report --spread-bound 0", ["report", "--spread-bound", "0"], None, "'--spread-bound': received '0'"),
    ("report --spread-bound 2", ["report", "--spread-bound", "2"], None, "'--spread-bound': received '2'"),
    ("report --spread-bound 100%", ["report", "--spread-bound", "100%"], None, "'--spread-bound': received '100%'"),
    # down
    ("down nothing named", ["down"], None, "invalid RUN"),
    ("down empty id", ["down", ""], None, "invalid RUN: received ''"),
    ("down unknown run", ["down", "r-nosuch"], None, "no run with id 'r-nosuch'"),
    ("down not UTF-8", ["down", NOT_UTF8], None, "invalid RUN: received b'\\xff\\xfe'"),
    ("down --forget without RUN", ["down", "--forget"], None,
     "invalid --forget: received 'no RUN'; accepted: one or more RUN ids named one by one"),
    ("down --forget --all", ["down", "--all", "--forget"], None, "invalid --forget: received '--all'"),
    ("down --forget with RUN and --all", ["down", "r-20261130-000000-aaaa", "--all", "--forget"], None,
     "invalid --forget: received '--all'"),
    ("down --forget unknown run", ["down", "r-nosuch", "--forget"], None, "no run with id 'r-nosuch'"),
    ("down --forget=yes", ["down", "r-20261130-000000-aaaa", "--forget=yes"], None, "--forget"),
    # logs
    ("logs unknown run", ["logs", "r-nosuch"], None, "no run with id 'r-nosuch'"),
    ("logs empty id", ["logs", ""], None, "invalid RUN"),
    ("logs unknown machine", ["logs", "r-20261130-000000-aaaa", "--machine", "nosuch"], None, "nosuch"),
    # ssh
    ("ssh unknown run", ["ssh", "r-nosuch"], None, "no run with id 'r-nosuch'"),
    ("ssh a run with nothing up", ["ssh", "r-20261130-000000-aaaa"], None,
     "invalid RUN: received 'r-20261130-000000-aaaa'; accepted: a run with a machine still up"),
    ("ssh --node 0", ["ssh", "r-20261130-000000-aaaa", "--node", "0"], None, "'--node'"),
    # catalog
    ("catalog unknown provider", ["catalog", "--provider", "gcp"], None, "invalid --provider: received 'gcp'"),
    ("catalog --max-price nan", ["catalog", "--max-price", "nan"], None, "'--max-price'"),
    ("catalog --max-price -1", ["catalog", "--max-price", "-1"], None, "'--max-price'"),
    ("catalog --sort unknown", ["catalog", "--sort", "cheapest"], None, "'--sort'"),
    ("catalog refresh unknown provider", ["catalog", "refresh", "--provider", "gcp"], None, "'--provider'"),
    # breakeven
    ("breakeven without hours", ["breakeven"], None, "--gpu-hours-per-month"),
    ("breakeven hours inf", ["breakeven", "--gpu-hours-per-month", "inf"], None, "'--gpu-hours-per-month'"),
    ("breakeven hours negative", ["breakeven", "--gpu-hours-per-month", "-5"], None, "'--gpu-hours-per-month'"),
    ("breakeven unknown GPU", ["breakeven", "--gpu-hours-per-month", "10", "--gpu", "H900"], None,
     "invalid --gpu: received 'H900'"),
    ("breakeven purchase nan", ["breakeven", "--gpu-hours-per-month", "10", "--purchase-usd", "nan"], None,
     "'--purchase-usd'"),
    ("breakeven lifetime 0", ["breakeven", "--gpu-hours-per-month", "10", "--purchase-usd", "1000",
                              "--lifetime-years", "0"], None, "'--lifetime-years'"),
    ("breakeven owned GPU alone", ["breakeven", "--gpu-hours-per-month", "10", "--owned-gpu", "T4"], None,
     "invalid --owned-gpu"),
    ("breakeven unknown run", ["breakeven", "--gpu-hours-per-month", "10", "--runs", "r-nosuch"], None,
     "no run with id 'r-nosuch'"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose store holds one finished run, shared by every case (none may change it)."""
    path = tmp_path_factory.mktemp("bad-input") / "home"
    with Store(path) as store:
        store.create_run("r-20261130-000000-aaaa", provider="local", suite="smoke", name="kept", spec={})
        store.finish_run("r-20261130-000000-aaaa", state="succeeded", duration_s=1.0, error=None, log_tail=None,
                         results=None, costs=[])
    return path


def _digest(home: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(home.iterdir()) if path.is_file() and not path.name.endswith("-shm")}


@pytest.mark.parametrize(("argv", "inventory", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    home: Path, argv: list[str], inventory: str | None, expected: str
) -> None:
    _one_line_exit_2(home, argv, expected, ORCHESTRATE_INVENTORY=str(BAD / inventory) if inventory
                     else str(home / "no-inventory.yaml"))


AZURE_SIZE = ["run", "--provider", "azure", "--instance-type", "Standard_NC4as_T4_v3"]
GUID = "00000000-0000-0000-0000-000000000000"
AZURE_CASES = [
    ("no subscription", {}, AZURE_SIZE, "invalid AZURE_SUBSCRIPTION_ID: not set"),
    ("subscription not a GUID", {"AZURE_SUBSCRIPTION_ID": "prod"}, AZURE_SIZE,
     "invalid AZURE_SUBSCRIPTION_ID: received 'prod'"),
    ("unknown cloud", {"AZURE_SUBSCRIPTION_ID": GUID, "ORCHESTRATE_AZURE_CLOUD": "Mars"}, AZURE_SIZE,
     "invalid ORCHESTRATE_AZURE_CLOUD: received 'Mars'; accepted: AzureCloud, AzureUSGovernment"),
    ("plain HTTP off this computer", {"AZURE_SUBSCRIPTION_ID": GUID, "ORCHESTRATE_AZURE_CLOUD": "http://10.0.0.1"},
     AZURE_SIZE, "invalid ORCHESTRATE_AZURE_CLOUD: received 'http://10.0.0.1'"),
    ("an AMI on azure", {"AZURE_SUBSCRIPTION_ID": GUID}, [*AZURE_SIZE, "--image", "ami-12345678"],
     "invalid --image: received 'ami-12345678'; accepted: azure: publisher:offer:sku:version"),
    ("an Azure image on aws", {}, ["run", "--provider", "aws", "--instance-type", "g4dn.xlarge", "--image",
                                   "a:b:c:d"], "invalid --image: received 'a:b:c:d'; accepted: aws: an AMI id"),
    ("--profile on azure", {"AZURE_SUBSCRIPTION_ID": GUID}, [*AZURE_SIZE, "--profile", "research"],
     "invalid --profile: received 'research'; accepted: nothing: the azure provider"),
    ("unknown size", {"AZURE_SUBSCRIPTION_ID": GUID}, ["run", "--provider", "azure", "--instance-type", "NC6"],
     "invalid --instance-type: received 'NC6'; accepted: an available azure type"),
]


@pytest.mark.parametrize(("env", "argv", "expected"), [case[1:] for case in AZURE_CASES],
                         ids=[case[0] for case in AZURE_CASES])
def test_azure_settings_and_flags_are_refused_at_plan_time(
    home: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], argv: list[str], expected: str
) -> None:
    for name in ("AZURE_SUBSCRIPTION_ID", "ORCHESTRATE_AZURE_CLOUD"):
        monkeypatch.delenv(name, raising=False)
    _one_line_exit_2(home, argv, expected, **env)


def _one_line_exit_2(home: Path, argv: list[str], expected: str, **extra_env: str) -> None:
    """One error line holding ``expected``, exit 2, no traceback, and the home exactly as it was."""
    before = _digest(home)
    env = {"ORCHESTRATE_HOME": str(home), "COLUMNS": "200", **extra_env}
    result = CliRunner().invoke(cli, argv, env=env, catch_exceptions=True)
    output = result.output  # stdout and stderr, as a terminal shows them
    assert result.exit_code == 2, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a crash
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert expected in errors[0], output
    assert len(errors[0]) < 600  # one line a person reads, not a file echoed back
    assert _digest(home) == before
    assert not (home / "no-inventory.yaml").exists()
    assert not (home / "azure.yaml").exists()


def test_the_corpus_covers_every_verb_and_sixty_cases() -> None:
    verbs = {case[1][0] for case in CASES}
    assert verbs >= {"run", "status", "report", "down", "logs", "ssh", "inventory", "catalog", "breakeven", "sweep",
                     "campaign"}
    assert len(CASES) >= 60
    assert os.path.isdir(BAD / "a_directory")


def test_status_json_stays_json_when_an_old_store_holds_an_infinite_cost(tmp_path: Path) -> None:
    import json

    home = tmp_path / "home"
    with Store(home) as store:
        store.create_run("r-20261130-000000-bbbb", provider="local", suite="smoke", name=None, spec={})
        store.finish_run("r-20261130-000000-bbbb", state="succeeded", duration_s=1.0, error=None, log_tail=None,
                         results=None, costs=[CostLine(component="compute", seconds=1.0, billed_seconds=1.0,
                                                       price_per_hour=float("inf"), amount_usd=float("inf"),
                                                       rule="per_second", machine_id="localhost")])
    result = CliRunner().invoke(cli, ["status", "--json"], env={"ORCHESTRATE_HOME": str(home)})
    assert result.exit_code == 0, result.output

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    [run] = json.loads(result.output, parse_constant=refuse)
    assert run["cost_usd"] is None
