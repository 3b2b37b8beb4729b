"""Issue 28, "Configuration" and "Names": what a careless or hostile user tried, each refused
with a message naming the file and the field (exit 2 through the CLI), before any run folder.

- a memory larger than the data set's classes (a phase with no training image: torch.cat
  failed deep inside the run);
- a YAML merge key, which slipped a second value past the repeated-key rule;
- YAML 1.1 integers that read as other numbers than they show (010 is 8, 1:30 is 90);
- a run folder's config.yaml, read as YAML 1.1 (lr: 1e-4 a string), repeated keys accepted,
  a 1 MB file parsed for half a minute before its size was refused;
- names and ids that passed their pattern with a trailing newline (re.match and $).
"""

import time

import pytest
import yaml

from mgrb.store import yamlsafe
from mgrb.data.registry import dataset
from mgrb.config.experiment import config_from_data, load_config, parse_config
from mgrb.data.protocol import memory_shortfall
from mgrb.errors import ConfigError, RunFolderError
from mgrb.store import contracts
from mgrb.store.runfolder import RunFolder
from test_config import GOOD


def _refused(text: str, expected: str, overrides=()):
    with pytest.raises(ConfigError, match=expected) as error:
        parse_config(text, "exp.yaml", list(overrides))
    return str(error.value)


def _cli(*argv) -> int:
    from mgrb.cli import main

    return main([str(arg) for arg in argv])


# -- a memory the data set cannot fill --------------------------------------------------------
@pytest.mark.parametrize("override,key,asks,fix", [
    ("protocol.memory_total=10000000", "protocol.memory_total",
     "memory_total 10000000 over 10 classes keeps 1000000 images per old class and holds out "
     "150000 of them", "lower memory_total to at most 1440"),
    ("protocol.memory_per_class=100000", "protocol.memory_per_class",
     "memory_per_class 100000 keeps 100000 images per old class and holds out 15000 of them",
     "set memory_per_class to at most 144"),
])
def test_a_memory_that_leaves_a_class_no_training_image_is_refused(override, key, asks, fix):
    message = _refused(GOOD, "digits has", [override])
    assert message.startswith(f"--set {key}: {asks} for stage 2, but digits has 144 to 153 "
                              "training images per class: a new class would have no image left "
                              "to train on")
    assert fix in message and message.endswith("(in exp.yaml)")


def test_a_memory_in_the_file_is_blamed_on_its_line():
    text = GOOD.replace("  increment: 1\n", "  increment: 1\n  memory_total: 10000000\n")
    _refused(text, r"^exp.yaml:7: protocol.memory_total: memory_total 10000000 over 10 classes "
                   r".*digits has 144 to 153 training images per class")


def test_a_memory_larger_than_a_class_is_refused_and_one_that_fits_is_not():
    _refused(GOOD, r"keeps 145 images per old class .* a memory cannot keep more images of a "
                   r"class than the class has; lower memory_total to at most 1440",
             ["protocol.memory_total=1450"])
    assert parse_config(GOOD, "exp.yaml", ["protocol.memory_total=1440"]).protocol.memory_total == 1440
    assert parse_config(GOOD, "exp.yaml", ["protocol.memory_per_class=144"])
    cifar = GOOD.replace("name: digits", "name: cifar10").replace("initial: 5", "initial: 5\n  "
                                                                  "memory_total: 100000")
    _refused(cifar, r"exp.yaml:6: protocol.memory_total: .*cifar10 has 5000 training images per "
                    r"class: .*; lower memory_total to at most 50000")


def test_the_memory_rule():
    assert memory_shortfall(5000, 200, 20) is None
    assert memory_shortfall(5000, 5000, 500) is None  # every image kept: joint training
    assert "more images of a class" in memory_shortfall(5000, 5001, 500)
    assert "no image left to train on" in memory_shortfall(5000, 100_000, 5000)


def test_the_digits_count_the_validation_assumes_is_its_smallest_class():
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from mgrb.data.digits import load_digits_data

    counts = torch.bincount(load_digits_data().train_labels)
    assert int(counts.min()) == dataset("digits").train_per_class == 144 and int(counts.max()) == 153


def test_a_memory_too_large_stops_the_cli_before_any_run_folder(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(GOOD)
    out = tmp_path / "runs" / "tiny"
    code = _cli("--experiments-dir", tmp_path, "run", "tiny", "--set",
                "protocol.memory_total=10000000", "--out", out)
    assert code == 2
    assert "digits has 144 to 153 training images per class" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "runs").exists()


# -- merge keys --------------------------------------------------------------------------------
def test_a_merge_key_is_refused_in_an_experiment_file():
    _refused(GOOD + "train:\n  <<: {epochs: 9999}\n  epochs: 2\n",
             r"^exp.yaml:10: train: merge keys \(<<\) are not accepted")
    _refused(GOOD + "<<: {name: other}\n", r"^exp.yaml:9: merge keys \(<<\) are not accepted")
    _refused(GOOD + "train: {!!merge x: {epochs: 1}}\n", r"^exp.yaml:9: train: merge keys")


def test_a_merge_key_is_refused_in_a_set_value():
    _refused(GOOD, r"--set train.milestones: cannot read value .*merge keys \(<<\) are not "
                   r"accepted", ["train.milestones=[{<<: {a: 1}}]"])


def test_a_quoted_double_less_than_is_an_ordinary_key():
    _refused(GOOD + "'<<': 1\n", r"exp.yaml:9: <<: unknown key")


# -- integers that are not what they show -----------------------------------------------------
@pytest.mark.parametrize("value,expected", [
    ("010", r"train.epochs: 010 has a leading zero: YAML 1.1 reads it as an octal number \(8\) "
            r"and YAML 1.2 as a decimal one; write it without the zero, or quote it"),
    ("1:30", r"train.epochs: 1:30 is a base-60 number in YAML 1.1 \(90\) and a string in YAML "
             r"1.2; write the number itself"),
    ("0_12", r"train.epochs: 0_12 has a leading zero"),
    ("-07", r"train.epochs: -07 has a leading zero"),
])
def test_octal_and_base_60_integers_are_refused_naming_file_line_and_key(value, expected):
    _refused(GOOD + f"train:\n  epochs: {value}\n", "^exp.yaml:10: " + expected)


def test_octal_and_base_60_numbers_are_refused_in_lists_floats_and_set_values():
    _refused(GOOD + "train:\n  milestones: [5, 010]\n",
             r"^exp.yaml:10: train.milestones\[1\]: 010 has a leading zero")
    _refused(GOOD + "train:\n  lr: 1:30.5\n", r"^exp.yaml:10: train.lr: 1:30.5 is a base-60 "
                                             r"number in YAML 1.1 \(90.5\)")
    _refused(GOOD, r"^--set train.epochs: cannot read value '010': 010 has a leading zero",
             ["train.epochs=010"])


def test_numbers_that_mean_what_they_show_still_read():
    config = parse_config(GOOD + "train:\n  epochs: 0x0A\n  batch_size: 1_000\n"
                                 "  warmup_epochs: 0\n  lr: 00.5\n  milestones: [0b11]\n",
                          "exp.yaml")
    assert (config.train.epochs, config.train.batch_size, config.train.warmup_epochs,
            config.train.lr, config.train.milestones) == (10, 1000, 0, 0.5, (3,))
    assert parse_config(GOOD + "description: '010'\n", "exp.yaml").description == "010"


def test_an_octal_integer_in_a_file_exits_2_through_the_cli(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(GOOD + "train:\n  epochs: 010\n")
    assert _cli("run", path, "--out", tmp_path / "run") == 2
    assert f"{path}:10: train.epochs: 010 has a leading zero" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# -- a run folder's config.yaml ---------------------------------------------------------------
def _stored(tmp_path, text: str) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    (folder.path / "config.yaml").write_text(text)
    return folder


def _good_stored() -> str:
    return yaml.safe_dump(parse_config(GOOD, "exp.yaml").to_dict(), sort_keys=False)


def test_config_yaml_reads_floats_as_yaml_1_2(tmp_path):
    text = _good_stored().replace("  lr: 0.001\n", "  lr: 1e-4\n")
    assert "  lr: 1e-4\n" in text
    folder = _stored(tmp_path, text)
    assert config_from_data(folder.stored_config(), "config.yaml").train.lr == 1e-4


def test_a_repeated_key_in_config_yaml_is_refused_naming_both_lines(tmp_path):
    text = _good_stored().replace("  epochs: 12\n", "  epochs: 2\n  epochs: 9999\n")
    line = text.splitlines().index("  epochs: 2") + 1
    folder = _stored(tmp_path, text)
    with pytest.raises(RunFolderError, match=rf"config.yaml:{line + 1}: train.epochs: given twice "
                                             rf"\(first on line {line}\)"):
        folder.stored_config()


@pytest.mark.parametrize("change,expected", [
    (("  epochs: 12\n", "  epochs: 010\n"), r"train.epochs: 010 has a leading zero"),
    (("  epochs: 12\n", "  <<: {epochs: 9999}\n  epochs: 12\n"), r"train: merge keys \(<<\)"),
    (("name: tiny\n", "name: &n tiny\n"), r"anchors and aliases"),
])
def test_config_yaml_refuses_what_experiment_files_refuse(tmp_path, change, expected):
    folder = _stored(tmp_path, _good_stored().replace(*change))
    with pytest.raises(RunFolderError, match=r"config.yaml:\d+: " + expected):
        folder.stored_config()


def test_resume_of_a_config_yaml_with_a_repeated_key_exits_2(tmp_path, capsys):
    folder = _stored(tmp_path, _good_stored().replace("  epochs: 12\n", "  epochs: 2\n  epochs: 9999\n"))
    assert _cli("resume", folder.path) == 2
    err = capsys.readouterr().err
    assert "train.epochs: given twice (first on line" in err and "Traceback" not in err


def test_a_large_config_yaml_is_refused_before_the_parser_sees_it(tmp_path, monkeypatch):
    folder = _stored(tmp_path, "a: [" + "[1,[2,[3]]]," * 90_000 + "]\n")  # about 1 MB
    parsed = []
    monkeypatch.setattr(yamlsafe.ExperimentLoader, "__init__",
                        lambda *args, **kwargs: parsed.append(1))
    start = time.monotonic()
    with pytest.raises(RunFolderError, match=r"config.yaml: larger than 300000 bytes"):
        folder.stored_config()
    assert time.monotonic() - start < 1 and not parsed


def test_what_the_run_writes_in_config_yaml_reads_back_the_same(tmp_path):
    # strings that YAML 1.2 reads as numbers are quoted; the largest experiment file's
    # configuration fits the limit, whatever its characters become in safe_dump's escapes
    config = parse_config(GOOD + "description: '1e-4'\nprovenance: '010'\nreported:\n  source: "
                          "'1:30'\n", "exp.yaml").to_dict()
    assert config["description"] == "1e-4"
    folder = RunFolder(tmp_path / "run")
    folder.prepare(config)
    assert "description: '1e-4'" in (folder.path / "config.yaml").read_text()
    assert folder.stored_config() == config
    folder.prepare(config)  # the same configuration: resumes, nothing differs

    room = yamlsafe.MAX_CHARS - len(GOOD) - 20
    largest = GOOD + "description: \"" + "\U0001F600\t" * (room // 5) + "\"\n"
    assert len(largest.encode()) <= yamlsafe.MAX_CHARS
    big = load_config(_write(tmp_path / "big.yaml", largest)).to_dict()
    other = RunFolder(tmp_path / "big")
    other.prepare(big)
    assert other.stored_config() == big


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# -- names and ids with a trailing newline ----------------------------------------------------
def test_an_experiment_name_with_a_trailing_newline_is_refused(tmp_path):
    _refused(GOOD.replace("name: tiny", 'name: "x\\n"'), r"exp.yaml:1: name: 'x\\n' may hold only")
    stored = _good_stored().replace("name: tiny", 'name: "x\\n"')
    data = _stored(tmp_path, stored).stored_config()
    with pytest.raises(ConfigError, match=r"config.yaml: name: 'x\\n' may hold only"):
        config_from_data(data, "config.yaml")


@pytest.mark.parametrize("pattern,good", [
    (contracts.NAME_PATTERN, "x"), (contracts.SLURM_JOB_ID, "12"), (contracts.SLURM_JOB_ID, "12_3"),
    (contracts.EVENT_KIND, "epoch"),
])
def test_contract_patterns_refuse_a_trailing_newline(pattern, good):
    check = contracts.text(pattern=pattern)
    assert check(good) is None
    assert check(good + "\n") is not None


def test_results_and_slurm_records_with_a_trailing_newline_are_refused(tmp_path):
    slurm = {"job_id": "12\n", "job_name": "x", "cluster": "c", "submitted": 1.0,
             "submitit_folder": "f", "log": "l"}
    with pytest.raises(contracts.RunFileError, match=r"job_id.*not a Slurm job id"):
        contracts.check("slurm", slurm, tmp_path / "slurm.json")
    assert contracts.check("slurm", dict(slurm, job_id="12_3"), tmp_path / "slurm.json")
    problem = contracts.RESULTS_CONTRACT({"experiment": "x\n"})
    assert problem and "experiment" in problem


def test_launcher_settings_refuse_a_trailing_newline():
    from artifact.core.settings import Settings

    assert Settings(image="mgrb-artifact:0.1.0", shm_size="16g").problems() == []
    problems = Settings(image="mgrb-artifact:0.1.0\n", shm_size="16g\n").problems()
    assert any(p.startswith("Docker image:") for p in problems)
    assert any(p.startswith("shared memory:") for p in problems)
