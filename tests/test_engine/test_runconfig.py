"""The run configuration: layering, types, ranges, YAML errors with file:line, and --help."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from mllb_core.errors import UserError
from mllb_core.runconfig import (
    ConfigError,
    HelpRequested,
    RunConfig,
    debug_requested,
    help_text,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]


# -- command line: every rule, one ConfigError naming the option ------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    # ranges
    (["--epochs", "0"], r"^--epochs must be >= 1, got 0$"),
    (["--epochs", "-1"], r"^--epochs must be >= 1, got -1$"),
    (["--batch_size", "0"], r"^--batch_size must be >= 1, got 0$"),
    (["--eval_batch_size", "0"], r"^--eval_batch_size must be >= 1, got 0$"),
    (["--grad_accum", "0"], r"^--grad_accum must be >= 1, got 0$"),
    (["--warmup_ratio", "1"], r"^--warmup_ratio must be in \[0, 1\), got 1.0$"),
    (["--warmup_ratio", "2"], r"^--warmup_ratio must be in \[0, 1\), got 2.0$"),
    (["--warmup_ratio", "-0.1"], r"^--warmup_ratio must be in \[0, 1\), got -0.1$"),
    (["--lr", "0"], r"^--lr must be > 0, got 0.0$"),
    (["--lr", "-1e-3"], r"^--lr must be > 0, got -0.001$"),
    (["--lr", "nan"], r"^--lr must be a finite number, got nan$"),
    (["--lr", "inf"], r"^--lr must be a finite number, got inf$"),
    (["--weight_decay", "-0.0001"], r"^--weight_decay must be >= 0, got -0.0001$"),
    (["--momentum", "1"], r"^--momentum must be in \[0, 1\), got 1.0$"),
    (["--momentum", "-0.5"], r"^--momentum must be in \[0, 1\), got -0.5$"),
    (["--grad_clip", "-1"], r"^--grad_clip must be >= 0, got -1.0$"),
    (["--ema_decay", "1"], r"^--ema_decay must be in \[0, 1\), got 1.0$"),
    (["--early_stopping_patience", "-1"], r"^--early_stopping_patience must be >= 0, got -1$"),
    (["--num_workers", "-2"], r"^--num_workers must be >= 0, got -2$"),
    (["--stop_after_epoch", "-1"], r"^--stop_after_epoch must be >= 0, got -1$"),
    # choices
    (["--optimizer", "adagrad"],
     r"^--optimizer must be one of \['adamw', 'adam', 'sgd'\], got 'adagrad'$"),
    (["--scheduler", "steps"], r"^--scheduler must be one of \['onecycle', 'cosine', "
                              r"'linear_warmup', 'constant', 'step'\], got 'steps'$"),
    (["--mixed_precision", "fp8"],
     r"^--mixed_precision must be one of \['no', 'bf16', 'fp16'\], got 'fp8'$"),
    # types: a boolean is not a number, an int refuses 2.5
    (["--epochs", "true"], r"^--epochs expects int, got 'true'$"),
    (["--epochs", "2.5"], r"^--epochs expects int, got '2.5'$"),
    (["--epochs", "ten"], r"^--epochs expects int, got 'ten'$"),
    (["--lr", "true"], r"^--lr expects float, got 'true'$"),
    (["--resume", "maybe"], r"^--resume expects a boolean \(true/false\), got 'maybe'$"),
    (["--leaderboard", "LEADERBOARD.md"],
     r"^--leaderboard expects a boolean .*'LEADERBOARD.md'; --leaderboard is a switch now"),
    (["--task_kwargs", "[1, 2]"], r"^--task_kwargs expects a mapping"),
    (["--task.x", "[1,"], r"^--task.x: cannot parse '\[1,' as YAML"),
    # option syntax
    (["--epoch", "3"], r"^unknown option 'epoch'; valid options: \[.*'epochs'.*"
                       r"did you mean 'epochs'\?$"),
    (["--optim.lr", "1"], r"^unknown option 'optim.lr'"),
    (["--task.", "1"], r"^unknown option 'task.'"),
    (["--lr"], r"^--lr needs a value$"),
    (["--lr", "--epochs", "3"], r"^--lr needs a value$"),
    (["epochs", "3"], r"^unexpected argument 'epochs'; options look like --key value$"),
    (["-e", "3"], r"^unexpected argument '-e'"),
    # sweeps
    (["--seed", "0,x"], r"^--seed expects integers \(comma-separated\), got 'x'$"),
    (["--seed", "1.5"], r"^--seed expects integers \(comma-separated\), got '1.5'$"),
    (["--seed", "-1"], r"^--seed must be in \[0, 2\*\*32\), got -1$"),
    (["--seed", str(2**32)], rf"^--seed must be in \[0, 2\*\*32\), got {2**32}$"),
    (["--seed", "0,1,0"], r"^--seed lists '0' twice$"),
    (["--seed", "01,1"], r"^--seed lists '1' twice$"),
    (["--seed", ","], r"^--seed is empty$"),
    (["--loss", ""], r"^--loss is empty$"),
    (["--loss", "bce,asl@"], r"^--loss expects name or name@preset, got 'asl@'$"),
    (["--loss", "@asl_coco"], r"^--loss expects name or name@preset, got '@asl_coco'$"),
    (["--loss", "a@b@c"], r"^--loss expects name or name@preset, got 'a@b@c'$"),
    (["--loss", "bce,asl,bce"], r"^--loss lists 'bce' twice$"),
    # paths
    (["--output_dir", " "], r"^--output_dir must not be empty$"),
    (["--config", "nope.yaml"], r"^config file 'nope.yaml' not found"),
    (["--config", "synthetic/nope"], r"^config file 'synthetic/nope' not found"),
])
def test_cli_errors_name_the_option(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(argv)


def test_config_error_is_a_user_error_and_carries_the_option() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(["--grad_accum", "0"])
    assert isinstance(info.value, UserError) and info.value.option == "grad_accum"


def test_the_first_error_in_field_order_is_the_one_reported() -> None:
    # ONE message, not a list: epochs is declared before lr
    with pytest.raises(ConfigError, match=r"^--epochs must be >= 1, got 0$"):
        parse_config(["--lr", "0", "--epochs", "0"])


# -- YAML files: the file and the line ----------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("epochs: true\n", r":1: --epochs expects int, got True$"),
    ("lr: 0.1\nepochs: 2.5\n", r":2: --epochs expects int, got 2.5$"),
    ("lr: 0.1\n\nepochs: 0\n", r":3: --epochs must be >= 1, got 0$"),
    ("batch_size: 0\n", r":1: --batch_size must be >= 1, got 0$"),
    ("grad_accum: 0\n", r":1: --grad_accum must be >= 1, got 0$"),
    ("epochs: 3\nwarmup_ratio: 1.5\n", r":2: --warmup_ratio must be in \[0, 1\), got 1.5$"),
    ("lr: -1\n", r":1: --lr must be > 0, got -1.0$"),
    ("lr: .nan\n", r":1: --lr must be a finite number, got nan$"),
    ("optimizer: lion\n", r":1: --optimizer must be one of \['adamw', 'adam', 'sgd'\]"),
    ("resume: maybe\n", r":1: --resume expects a boolean"),
    ("model: null\n", r":1: --model expects str, got None$"),
    ("task: [a, b]\n", r":1: --task expects str, got \['a', 'b'\]$"),
    ("task_kwargs: [1, 2]\n", r":1: --task_kwargs expects a mapping"),
    ("seed: [0, x]\n", r":1: --seed expects integers \(comma-separated\), got 'x'$"),
    ("loss: [bce, bce]\n", r":1: --loss lists 'bce' twice$"),
    ("epochs: 3\nepoks: 3\n", r":2: unknown option 'epoks'; valid options: \[.*'epochs'"),
    ("1: 2\n", r":1: unknown option 1; valid options"),
    ("epochs: 3\nepochs: 4\n", r":2: option 'epochs' given twice \(first on line 1\)$"),
    ("config: other.yaml\n", r":1: config files cannot include other config files"),
    ("- epochs\n- 3\n", r":1: expected a YAML mapping of options \(key: value\), got a sequence$"),
    ("3\n", r":1: expected a YAML mapping of options \(key: value\), got a scalar$"),
    # syntax: FILE:LINE:COL, 1-based; the ':' after "  lr" is the 5th character of line 2
    ("epochs: 3\n  lr: 0.1\n", r":2:5: mapping values are not allowed here$"),
    # the unclosed quote opens at line 2, column 4 (the '"' after "b: ")
    ('a: 1\nb: "x\n', r":3:1: found unexpected end of stream \(while scanning a quoted scalar "
                      r"at 2:4\)$"),
    ("epochs: 3\nlr: *nope\n", r":2:5: found undefined alias 'nope'$"),
    ("epochs: 3\x00\n", r":1: character U\+0000 is not allowed in YAML$"),
])
def test_yaml_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + message):
        parse_config(["--config", str(path)])


def test_non_utf8_yaml_names_file_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    head = b"epochs: 3\nlr: "  # 14 bytes, then an invalid UTF-8 start byte
    path.write_bytes(head + b"\xff\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) +
                       r":2: not UTF-8 text \(byte 0xff at byte offset 14\)$"):
        parse_config(["--config", str(path)])


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a directory, not a YAML file"):
        parse_config(["--config", str(tmp_path)])


def test_command_line_overrides_an_invalid_yaml_value(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("epochs: 0\nlr: 0.1\n")
    assert parse_config(["--config", str(path), "--epochs", "5"]).epochs == 5
    # an invalid command-line value is reported without the file
    with pytest.raises(ConfigError, match=r"^--lr must be > 0, got 0.0$"):
        parse_config(["--config", str(path), "--epochs", "5", "--lr", "0"])


def test_later_config_file_wins_and_keeps_its_line(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("epochs: 4\n")
    b.write_text("# comment\nepochs: 0\n")
    with pytest.raises(ConfigError, match=re.escape(str(b)) + r":2: --epochs must be >= 1"):
        parse_config(["--config", str(a), "--config", str(b)])
    cfg = parse_config(["--config", str(b), "--config", str(a)])
    assert cfg.epochs == 4 and cfg.config == [str(b), str(a)]


# -- what is accepted -----------------------------------------------------------------------------

def test_layers_defaults_files_command_line(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("epochs: 7\nlr: 0.01\nloss_kwargs: {gamma_neg: 3}\n")
    cfg = parse_config(["--config", str(preset), "--lr", "0.5", "--loss", "asl",
                        "--loss.gamma_neg", "2", "--task.missing_rate=0.2", "--resume"])
    assert (cfg.epochs, cfg.lr, cfg.loss, cfg.resume) == (7, 0.5, "asl", True)
    assert cfg.loss_kwargs == {"gamma_neg": 2} and cfg.task_kwargs == {"missing_rate": 0.2}
    assert cfg.batch_size == 128  # untouched default
    assert parse_config(["--config", "synthetic/smoke"]).epochs == 2


def test_every_shipped_config_preset_is_valid() -> None:
    presets = sorted((REPO / "tasks").glob("*/configs/*.yaml"))
    assert presets
    for path in presets:
        parse_config(["--config", f"{path.parent.parent.name}/{path.stem}"])


def test_numbers_and_booleans(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("lr: 1\nweight_decay: 0\nepochs: 3\nresume: yes\n")
    cfg = parse_config(["--config", str(path)])
    assert type(cfg.lr) is float and cfg.lr == 1.0  # a float field accepts an int
    assert type(cfg.weight_decay) is float and cfg.weight_decay == 0.0
    assert type(cfg.epochs) is int and cfg.epochs == 3 and cfg.resume is True
    cfg = parse_config(["--lr", "1e-3", "--epochs", "+4", "--batch-size", "16"])
    assert (cfg.lr, cfg.epochs, cfg.batch_size) == (0.001, 4, 16)
    # range edges that are allowed
    cfg = parse_config(["--warmup_ratio", "0", "--momentum", "0", "--ema_decay", "0.999",
                        "--grad_clip", "0", "--epochs", "1", "--weight_decay", "0"])
    assert (cfg.warmup_ratio, cfg.ema_decay, cfg.epochs) == (0.0, 0.999, 1)


@pytest.mark.parametrize("name", ["resume", "keep_checkpoints", "overwrite", "debug",
                                  "leaderboard", "print_commands"])
def test_switches_default_false_and_work_alone_or_with_a_value(name: str) -> None:
    assert getattr(parse_config([]), name) is False
    assert getattr(parse_config([f"--{name}"]), name) is True
    assert getattr(parse_config([f"--{name}", "--epochs", "3"]), name) is True
    assert getattr(parse_config([f"--{name}=false"]), name) is False
    assert getattr(parse_config([f"--{name}", "true"]), name) is True


def test_save_scores_is_on_by_default_and_can_be_switched_off() -> None:
    # every run can be bootstrapped by the leaderboard unless the user opts out
    assert parse_config([]).save_scores is True
    assert parse_config(["--save_scores=false"]).save_scores is False
    assert parse_config(["--save_scores", "false", "--epochs", "3"]).save_scores is False


def test_yaml_lists_for_sweeps(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("seed: [0, 1, 2]\nloss: [bce, asl@asl_coco]\n")
    cfg = parse_config(["--config", str(path)])
    assert (cfg.seed, cfg.loss) == ("0,1,2", "bce,asl@asl_coco")
    assert len(cfg.cells()) == 6


def test_cells_are_losses_times_seeds_seeds_outermost() -> None:
    cells = parse_config(["--loss", "bce, asl@asl_coco", "--seed", "00,7"]).cells()
    assert [(c.loss, c.seed) for c in cells] == [
        ("bce", "0"), ("asl@asl_coco", "0"), ("bce", "7"), ("asl@asl_coco", "7")]
    assert (cells[1].loss_name, cells[1].loss_preset) == ("asl", "asl_coco")
    assert cells[0].cell_label() == "bce__seed0"


def test_validate_checks_a_directly_built_config() -> None:
    RunConfig().validate()
    RunConfig(lr=1, epochs=2).validate()  # an int is a valid float
    for bad, option in [({"epochs": True}, "epochs"), ({"epochs": 2.0}, "epochs"),
                        ({"lr": "0.1"}, "lr"), ({"resume": 1}, "resume"),
                        ({"batch_size": 0}, "batch_size"), ({"seed": "0,0"}, "seed"),
                        ({"scheduler": "cos"}, "scheduler")]:
        with pytest.raises(ConfigError) as info:
            RunConfig(**bad).validate()
        assert info.value.option == option and str(info.value).startswith(f"--{option} ")


def test_new_fields_and_their_defaults() -> None:
    cfg = RunConfig()
    assert (cfg.keep_checkpoints, cfg.overwrite, cfg.debug, cfg.leaderboard) == (
        False, False, False, False)
    hints = typing.get_type_hints(RunConfig)
    assert all(hints[k] is bool for k in ("keep_checkpoints", "overwrite", "debug",
                                          "leaderboard"))
    data = cfg.to_dict()
    assert data["leaderboard"] is False and data["keep_checkpoints"] is False


# -- --help ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--epochs", "-1", "--help"],
                                  ["--lr", "-h"], ["--nope", "1", "-h"]])
def test_help_anywhere_raises_help_requested(argv: list[str]) -> None:
    with pytest.raises(HelpRequested) as info:
        parse_config(argv)
    assert not isinstance(info.value, UserError)  # the engine exits 0 for it, not 2
    assert info.value.text == help_text()


_TYPE_WORD = {int: "INT", float: "FLOAT", str: "STR", bool: "BOOL"}


def _expected_default(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    return str(value)


def test_help_lists_every_field_with_type_default_and_doc() -> None:
    text = help_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        doc = f.metadata.get("help", "")
        assert doc.strip() and "\n" not in doc, f"{f.name} has no one-line help"
        # the option's block: its usage line up to the next option or section
        match = re.search(rf"^  --{f.name} (.*)\n((?:      .*\n)*)", text, re.MULTILINE)
        assert match, f"--{f.name} missing from --help"
        usage, body = match.group(1), " ".join(match.group(2).split())
        hint = hints[f.name]
        word = {dict: "MAPPING", list: "FILE"}.get(typing.get_origin(hint), None) \
            or _TYPE_WORD[hint]
        assert word in usage, (f.name, usage)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert f"(default: {_expected_default(default)})" in body, (f.name, body)
        assert " ".join(doc.split()) in body, (f.name, body)


def test_help_documents_ranges_choices_and_syntax() -> None:
    text = " ".join(help_text().split())
    for fragment in ["--task.<arg> VALUE", "--model.<arg> VALUE", "--loss.<arg> VALUE",
                     "--config FILE", "one of: adamw, adam, sgd",
                     "one of: onecycle, cosine, linear_warmup, constant",
                     "one of: no, bf16, fp16", "in [0, 1)", "> 0", "synthetic/smoke",
                     "examples:", "python run_task.py --config synthetic/smoke",
                     "accelerate launch"]:
        assert fragment in text, fragment


def test_run_task_help_exits_0_and_prints_the_options() -> None:
    # needs run_task.py to catch HelpRequested (print .text, exit 0)
    proc = subprocess.run([sys.executable, "run_task.py", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for f in dataclasses.fields(RunConfig):
        assert f"--{f.name} " in proc.stdout, f.name


@pytest.mark.parametrize(("argv", "expected"), [
    ([], False), (["--debug"], True), (["--debug", "--epochs", "0"], True),
    (["--epochs", "0", "--debug"], True), (["--debug", "true"], True), (["--debug=yes"], True),
    (["--debug", "false"], False), (["--debug=0"], False), (["--debug", "--debug=no"], False),
    (["--debugx"], False), (["--epochs", "ten", "--debug=on"], True),
])
def test_debug_is_found_even_in_a_malformed_command_line(argv: list[str], expected: bool) -> None:
    assert debug_requested(argv) is expected
    try:  # and it agrees with the parsed config whenever the command line parses
        assert parse_config(argv).debug is expected
    except ConfigError:
        pass
