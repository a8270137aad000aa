"""Flags come from TrainConfig's fields: one name per field, older spellings kept, no prefixes."""

import dataclasses

import pytest

from experiments import baseline, cli, sweep
from mnist_jax.config import TrainConfig


def test_every_config_field_has_a_baseline_flag_named_after_it():
    parser = baseline.build_parser()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        assert flag in parser._option_string_actions, flag


def test_new_and_old_spellings_give_the_same_config():
    parser = baseline.build_parser()
    old = cli.config_from_args(parser.parse_args(["--dropout", "0.1", "--hidden", "64,32"]))
    new = cli.config_from_args(
        parser.parse_args(["--dropout-rate", "0.1", "--hidden-sizes", "64,32"])
    )
    assert old == new == TrainConfig(dropout_rate=0.1, hidden_sizes=(64, 32))


def test_defaults_are_the_config_defaults():
    assert cli.config_from_args(baseline.build_parser().parse_args([])) == TrainConfig()


@pytest.mark.parametrize("argv", [["--epoch", "20"], ["--lear", "0.5"], ["--drop", "0.1"]])
def test_abbreviated_flags_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        baseline.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_sweep_takes_lists_of_the_swept_fields_only():
    args = sweep.build_parser().parse_args(
        ["--learning-rate", "1e-3,3e-3", "--dropout-rate", "0.1,0.2", "--hidden", "8:16,16"]
    )
    assert args.learning_rate == [1e-3, 3e-3] and args.dropout_rate == [0.1, 0.2]
    assert args.hidden_sizes == [(8,), (16, 16)]
    assert sweep.build_parser().parse_args(["--epochs", "3"]).epochs == 3
    swept = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata["sweep"]}
    from mnist_jax.sweep.outputs import PER_MEMBER_FIELDS

    assert set(PER_MEMBER_FIELDS) == {"seed"} | swept


def test_resume_refuses_every_run_defining_spelling_and_accepts_data_dir():
    for flag in ("--dropout", "--dropout-rate", "--hidden", "--eval-batch-size=1"):
        if flag.startswith("--eval"):
            cli.refuse_flags_with_resume([flag])  # evaluation chunking changes no result
            continue
        with pytest.raises(cli.ConfigError, match=flag):
            cli.refuse_flags_with_resume([flag, "1"])
    cli.refuse_flags_with_resume(["--data-dir", "/x", "--quiet"])


def test_model_is_a_flag_and_a_sweep_list_with_its_choices_checked(capsys):
    args = sweep.build_parser().parse_args(["--model", "mlp,cnn"])
    assert args.model == ["mlp", "cnn"]
    assert cli.config_from_args(baseline.build_parser().parse_args(["--model", "cnn"])).model == (
        "cnn"
    )
    for parser, value in ((baseline.build_parser(), "rnn"), (sweep.build_parser(), "mlp,rnn")):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["--model", value])
        assert exit_info.value.code == 2
        assert "invalid model 'rnn'" in capsys.readouterr().err


def test_the_cnn_with_hidden_sizes_is_one_line_and_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main(
            baseline.main,
            "python -m experiments.baseline",
            ["--model", "cnn", "--hidden", "64", "--out", str(tmp_path / "run")],
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "hidden_sizes" in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "command, argv, flag",
    [
        (baseline, ["--optimizer", "adam", "--momentum", "0.9"], "--momentum"),  # sgd's default
        (baseline, ["--momentum=0.9"], "--momentum"),
        (baseline, ["--model", "cnn", "--hidden-sizes", "128,128"], "--hidden-sizes"),
        (baseline, ["--schedule", "constant", "--final-lr-fraction", "0"], "--final-lr-fraction"),
        (sweep, ["--optimizer", "adam,adamw", "--momentum", "0.9"], "--momentum"),
    ],
)
def test_a_flag_given_where_it_does_nothing_is_refused_even_at_its_default(
    command, argv, flag, capsys, tmp_path
):
    # TrainConfig sees only values: a default one looks unset, so the command checks its flags.
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main(command.main, "python -m cmd", [*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{flag} does nothing here" in err and not (tmp_path / "out").exists()


def test_a_sweep_flag_that_applies_to_some_of_its_members_is_accepted():
    members_argv = ["--optimizer", "adam,sgd", "--momentum", "0.9", "--seeds", "0"]
    args = sweep.build_parser().parse_args(members_argv)
    members = sweep.expand_members(
        [0], **{name: getattr(args, name) for name in sweep.CONFIG_KEY_FIELDS}
    )
    config = cli.config_from_args(args, **members[0].to_dict())
    cli.refuse_flags_that_do_nothing(members_argv, [m.config(config) for m in members])


def test_a_validation_size_without_holdout_is_refused_and_old_records_still_load(capsys):
    from mnist_jax.config import TrainConfig
    from mnist_jax.errors import ConfigError

    # Found by a hostile pass: it was accepted and did nothing.
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main(baseline.main, "baseline", ["--validation-size", "100", "--epochs", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "only --validation holdout holds examples out" in err
    with pytest.raises(ConfigError, match="only --validation holdout holds examples out"):
        TrainConfig(validation="test", validation_size=100)
    # A record written before the rule (the value did nothing) loads as what trained.
    old = TrainConfig.from_dict({"validation": "test", "validation_size": 100})
    assert old == TrainConfig()
