"""The command line: one flag per config field, generated from the dataclass, applied over the
config file and the preset; bad values exit with status 2 and lakelab's message; progress
does not flood a log. Nothing here trains."""

import argparse
import dataclasses
import inspect
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from lakelab.cli import build_parser, lake_config, lm_config, main, progress_bar
from lakelab.cli_config import add_field_flags, field_docs, flag_name
from lakelab.lm.config import PRESETS as LM_PRESETS
from lakelab.lm.config import LMConfig
from lakelab.mlp.config import PRESETS as LAKE_PRESETS
from lakelab.mlp.config import LakeConfig

CONFIGS = [("lake", LakeConfig), ("lm", LMConfig)]


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def help_text(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping inside a docstring
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def docstrings_by_regex(cls: type) -> dict[str, str]:
    """Each field's docstring, read another way than lakelab's ``ast`` walk: the triple-quoted
    string on the line after ``name: type = ...``, whitespace collapsed."""
    found = re.findall(r'^    (\w+): [^\n]*\n    """(.*?)"""', inspect.getsource(cls), re.M | re.S)
    return {name: " ".join(doc.split()) for name, doc in found}


def help_entries(text: str) -> dict[str, str]:
    """Each option's entry of a help text, by its first flag, whitespace collapsed."""
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("  -"):
            entries[line.split()[0].rstrip(",")] = [line]
        elif line.startswith("    ") and entries:
            entries[next(reversed(entries))].append(line)
    return {flag: " ".join(" ".join(lines).split()) for flag, lines in entries.items()}


@pytest.mark.parametrize(("command", "cls"), CONFIGS)
def test_help_lists_every_field_with_its_docstring(command, cls, capsys, monkeypatch):
    names = [f.name for f in dataclasses.fields(cls)]
    docs = docstrings_by_regex(cls)
    assert sorted(docs) == sorted(names)  # every field is documented
    assert {name: " ".join(doc.split()) for name, doc in field_docs(cls).items()} == docs
    entries = help_entries(help_text(command, capsys, monkeypatch))
    for name in names:
        entry = entries.get(flag_name(name))
        assert entry is not None, f"{flag_name(name)} missing from `lakelab {command} --help`"
        first_words = " ".join(docs[name].split()[:4])
        assert first_words in entry, (first_words, entry)
        assert "(default: " in entry


def test_help_quotes_the_docstrings_literally(capsys, monkeypatch):
    text = help_text("lake", capsys, monkeypatch)
    assert 'Number of demonstrations in "demos" mode. (default: 256)' in text
    assert "--slippery, --no-slippery" in text
    assert "--preset quick: --optimum-steps 400 --n-demos 64" in text  # the epilog
    text = help_text("lm", capsys, monkeypatch)
    assert "--corpus-mix FLOAT FLOAT FLOAT" in text
    assert "Shares of optimal, avoiding and random plans" in text


def test_each_kind_of_flag_reaches_the_lake_config():
    args = parse(
        *("lake", "--slippery", "--n-demos", "8", "--success-rate", "0.5"),
        *("--hparams", '{"dpo": {"beta": 0.5}}', "--methods", "sft", "dpo", "--lake", "4x4"),
    )
    config = lake_config(args)
    assert config.slippery is True
    assert config.n_demos == 8
    assert config.success_rate == 0.5
    assert config.hparams == {"dpo": {"beta": 0.5}}
    assert config.methods == ("sft", "dpo")
    assert config.lake == "4x4"
    assert config.steps == LAKE_PRESETS["paper"].steps  # not given: the preset's
    assert lake_config(parse("lake", "--slippery", "--no-slippery")).slippery is False
    assert lake_config(parse("lake", "--seeds", "3")).seeds == 3


def test_each_kind_of_flag_reaches_the_lm_config():
    args = parse(
        *("lm", "--preset", "quick", "--corpus-mix", "0.2", "0.5", "0.3", "--model", "nano"),
        *("--methods", "sft", "dpo", "--hparams", '{"dpo": {"beta": 0.5}}', "--align-lr", "0.01"),
    )
    config = lm_config(args)
    assert config.corpus_mix == (0.2, 0.5, 0.3)
    assert config.model == "nano"
    assert config.methods == ("sft", "dpo")
    assert config.hparams == {"dpo": {"beta": 0.5}}
    assert config.align_lr == 0.01
    assert config.n_train == LM_PRESETS["quick"].n_train


def test_flags_override_the_config_file_which_overrides_the_preset(tmp_path):
    file = tmp_path / "lake.json"
    file.write_text(json.dumps({"steps": 20, "lr": 0.05, "methods": ["sft"]}))
    config = lake_config(parse("lake", "--preset", "quick", "--config", str(file), "--lr", "0.1"))
    assert (config.lr, config.steps, config.methods) == (0.1, 20, ("sft",))
    assert config.seeds == LAKE_PRESETS["quick"].seeds != LakeConfig().seeds
    file = tmp_path / "lm.json"
    file.write_text(json.dumps({"align_steps": 7, "align_lr": 0.05, "corpus_mix": [0, 0.5, 0.5]}))
    args = parse("lm", "--preset", "quick", "--config", str(file), "--align-lr", "0.1")
    config = lm_config(args)
    assert (config.align_lr, config.align_steps, config.corpus_mix) == (0.1, 7, (0.0, 0.5, 0.5))
    assert config.n_train == LM_PRESETS["quick"].n_train != LMConfig().n_train


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lake", "--gamma", "1.5"], r"gamma must be in [0, 1), got 1.5"),
        (["lake", "--hparams", '{"dpo": '], "--hparams must be a JSON object"),
        (["lake", "--hparams", "[1]"], "--hparams must be a JSON object, got list"),
        (["lake", "--hparams", '{"ipo": {}}', "--methods", "sft"], "not among methods"),
        (["lm", "--corpus-mix", "0.5", "0.5", "0.5"], "corpus_mix must sum to 1"),
        (["lm", "--hparams", "nope"], "lakelab lm: error: --hparams must be a JSON object"),
    ],
)
def test_bad_values_exit_2_with_lakelab_message(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_lm_config_file_rejects_unknown_fields_naming_them(tmp_path, capsys):
    file = tmp_path / "lm.json"
    file.write_text(json.dumps({"align_steps": 7, "epochs": 3}))
    assert main(["lm", "--config", str(file), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown config fields ['epochs']" in err
    assert "'align_steps'" in err and "'corpus_mix'" in err  # the valid ones are listed
    file.write_text(json.dumps({"hparams": [1]}))
    assert main(["lm", "--config", str(file), "--out", str(tmp_path / "run")]) == 2
    assert "hparams must be a dict of dicts, got [1]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lm", "--lm-unknown"], "unrecognized arguments: --lm-unknown"),
        (["lake", "--n-demos", "many"], "argument --n-demos: invalid int value: 'many'"),
        (["lm", "--corpus-mix", "0.5", "0.5"], "argument --corpus-mix: expected 3 arguments"),
        (["lake", "--n-demo", "8"], "unrecognized arguments: --n-demo"),  # no abbreviations
    ],
)
def test_what_argparse_cannot_parse_exits_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_the_generator_on_a_small_dataclass():
    @dataclass(frozen=True)
    class Toy:
        on: bool = True
        """A switch."""
        sizes: tuple[int, int] = (1, 2)
        """Two sizes, 100% ints."""
        names: tuple[str, ...] = ("a",)

    parser = argparse.ArgumentParser()
    add_field_flags(parser, Toy)
    args = parser.parse_args(["--no-on", "--sizes", "3", "4"])
    assert (args.on, args.sizes) == (False, [3, 4])
    assert not hasattr(args, "names")  # not given: absent, so it does not override
    assert field_docs(Toy) == {"on": "A switch.", "sizes": "Two sizes, 100% ints."}
    assert "100% ints. (default: 1 2)" in parser.format_help()

    @dataclass(frozen=True)
    class Odd:
        ids: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="field 'ids': no command-line form"):
        add_field_flags(argparse.ArgumentParser(), Odd)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_few_lines_when_stderr_is_not_a_terminal(monkeypatch):
    log = io.StringIO()  # isatty() is False, like a log file or a pipe
    monkeypatch.setattr(sys, "stderr", log)
    with progress_bar("fine-tuning", "step", quiet=False) as progress:
        for done in range(1001):
            progress(done, 1000)
    lines = log.getvalue().splitlines()
    assert 2 <= len(lines) <= 11
    assert lines[0].startswith("fine-tuning: 0/1000 steps (0%")
    assert lines[-1].startswith("fine-tuning: 1000/1000 steps (100%")
    assert "\r" not in log.getvalue()


def test_progress_draws_a_bar_on_a_terminal_and_nothing_when_quiet():
    terminal = FakeTerminal()
    with progress_bar("training", "step", quiet=False, stream=terminal) as progress:
        for done in range(51):
            progress(done, 50)
    assert "\r" in terminal.getvalue() and "50/50" in terminal.getvalue()  # tqdm redraws
    silent = FakeTerminal()
    with progress_bar("training", "step", quiet=True, stream=silent) as progress:
        progress(1, 2)
    assert silent.getvalue() == ""


@pytest.mark.slow  # a subprocess
def test_solve_runs_without_importing_torch(tmp_path):
    code = (
        "import sys\nfrom lakelab.cli import main\n"
        f"assert main(['solve', '--tau', '0.1', '--out', {str(tmp_path)!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'lakelab solve imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "soft-optimal (tau=0.1, gamma=0.95)" in done.stdout
