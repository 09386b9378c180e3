from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.spec import build_run_spec, load_suite, parse_assignment, resolve_params


def test_flags_override_the_file_and_params_merge_key_by_key(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("provider: local\nsuite: smoke\nparams: {epochs: 4, batch_size: 16}\ntimeout_s: 100\n")
    spec = build_run_spec(file, {"params": {"epochs": 2}, "timeout_s": 50.0, "provider": None})
    assert spec.params == {"epochs": 2, "batch_size": 16}
    assert spec.timeout_s == 50.0
    assert spec.provider == "local"


@pytest.mark.parametrize(
    ("overrides", "field", "received"),
    [
        ({"provider": "azur"}, "provider", "azur"),
        ({"suite": "nope"}, "suite", "nope"),
        ({"timeout_s": -1}, "timeout_s", -1),
        ({"params": {"epochs": "many"}}, "params.epochs", "many"),
        ({"params": {"epoch": 3}}, "params", "epoch"),
        ({"backend": "theano"}, "backend", "theano"),
        ({"machine": {"count": 0}}, "machine.count", 0),
    ],
)
def test_a_bad_value_names_the_field_the_value_and_what_is_accepted(
    overrides: dict[str, object], field: str, received: object
) -> None:
    with pytest.raises(SpecError) as caught:
        build_run_spec(None, overrides)
    error = caught.value
    assert error.field == field
    assert error.received == received
    message = str(error)
    assert "\n" not in message
    assert field in message and repr(received) in message and "accepted:" in message


def test_an_unknown_field_in_the_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("provider: local\nsuit: smoke\n")
    with pytest.raises(SpecError, match="invalid suit: received 'smoke'; accepted: not a known field"):
        build_run_spec(file, {})


def test_a_missing_or_broken_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="invalid file"):
        build_run_spec(tmp_path / "absent.yaml", {})
    broken = tmp_path / "broken.yaml"
    broken.write_text("provider: [local\n")
    with pytest.raises(SpecError, match="line"):
        build_run_spec(broken, {})


def test_set_values_are_read_as_yaml_scalars() -> None:
    assert parse_assignment("epochs=3") == ("epochs", 3)
    assert parse_assignment("learning_rate=1e-4") == ("learning_rate", 1e-4)
    assert parse_assignment("model=small_cnn") == ("model", "small_cnn")
    with pytest.raises(SpecError, match="key=value"):
        parse_assignment("epochs")


def test_int_params_accept_only_ints_and_float_params_accept_ints() -> None:
    suite = load_suite("smoke")
    assert resolve_params(suite, {"learning_rate": 1})["learning_rate"] == 1.0
    with pytest.raises(SpecError, match="params.epochs"):
        resolve_params(suite, {"epochs": 2.5})
    with pytest.raises(SpecError, match="params.epochs"):
        resolve_params(suite, {"epochs": True})


def test_list_params_accept_lists_and_a_single_value_becomes_a_list(tmp_path: Path) -> None:
    suite_file = tmp_path / "grid.yaml"
    suite_file.write_text(
        "name: grid\ndescription: d\nestimated_duration_s: 1\n"
        "params: {batch_sizes: [32, 64], learning_rates: [0.001], xla: [false, true], epochs: 2}\n"
    )
    suite = load_suite(str(suite_file))
    assert parse_assignment("batch_sizes=[16,32]") == ("batch_sizes", [16, 32])
    assert parse_assignment("learning_rates=[1e-3, 1e-4]") == ("learning_rates", [1e-3, 1e-4])
    params = resolve_params(suite, {"batch_sizes": 128, "learning_rates": [1, 0.5], "xla": [True]})
    assert params["batch_sizes"] == [128]
    assert params["learning_rates"] == [1.0, 0.5]
    with pytest.raises(SpecError, match=r"params.batch_sizes\[1\]: received 'big'"):
        resolve_params(suite, {"batch_sizes": [32, "big"]})
    with pytest.raises(SpecError, match="not a list"):
        resolve_params(suite, {"epochs": [1, 2]})
    assert resolve_params(suite, {"batch_sizes": []})["batch_sizes"] == []  # the payload's check decides
