"""The record's one schema: versioned with its digest, enforced when a record is written and read,
and an older record still resumes while an unknown one is refused in one line."""

import copy
import hashlib
import json

import pytest

from gluon_bn import cli
from gluon_bn.errors import UsageError
from gluon_bn.reliability import schema
from gluon_bn.reliability.record import load_record, save_record

#: Each format's schema digest. A changed schema needs a new FORMAT and a new line here (and READABLE
#: says whether the old records still load).
DIGESTS = {"gluon-bn-record/2": "c1d560003ae1103f3acb73a10b905c2bf630b7e37a6f7d447ba04db494196e6b"}

EPOCH = {"epoch": 1, "loss": 0.5, "train_acc": 0.8, "test_acc": 0.79, "time": 3.2}
RECORD = {
    "format": schema.FORMAT,
    "command": "reproduce",
    "config": {"lr": 1.0},
    "environment": {
        "python": "3.11.7",
        "platform": "Linux",
        "machine": "x86_64",
        "cpu": "a CPU",
        "cpu_count": 2,
        "context": "cpu(0)",
        "devices": 1,
        "packages": {"mxnet": "1.9.1"},
        "threads": {"operator_threads": 2, "python_thread": 1},
    },
    "data": {"directory": "/usr/share/datasets/fashion-mnist", "release": "current"},
    "complete": True,
    "wall_time": 4.0,
    "results": {"scratch": {"history": [EPOCH], "first_bn": {"gamma": [1.0], "beta": [0.0]}, "wall_time": 3.9}},
}


def test_the_schema_changes_only_with_its_format_version():
    digest = hashlib.sha256(json.dumps(schema.SCHEMA, sort_keys=True).encode()).hexdigest()
    assert DIGESTS.get(schema.FORMAT) == digest, (
        f"the record schema changed: give it a new FORMAT (now {schema.FORMAT}), add its digest {digest} to "
        "DIGESTS, and say in READABLE whether records of the old format still load"
    )
    assert schema.FORMAT not in schema.READABLE


def test_a_record_that_follows_the_schema_passes():
    schema.validate(RECORD)


@pytest.mark.parametrize(
    "break_it, where",
    [
        (lambda r: r.pop("complete"), "the top level: 'complete' is a required property"),
        (lambda r: r["results"]["scratch"]["history"][0].update(loss="low"), "results/scratch/history/0/loss"),
        (lambda r: r.update(command="train"), "command"),
        (lambda r: r.update(comment="extra"), "Additional properties are not allowed"),
        (lambda r: r.update(command="compare"), "at results: "),
        (lambda r: r["environment"]["threads"].pop("python_thread"), "environment/threads"),
    ],
)
def test_a_record_off_the_schema_is_named_where_it_is_off(break_it, where):
    record = copy.deepcopy(RECORD)
    break_it(record)
    with pytest.raises(ValueError, match="not a gluon-bn-record/2 record at") as err:
        schema.validate(record)
    assert where in str(err.value)


def test_save_record_refuses_a_record_off_the_schema_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "reproduce.json"
    fields = {k: RECORD[k] for k in ("environment", "data")}
    save_record(path, "reproduce", RECORD["config"], RECORD["results"], complete=True, wall_time=4.0, **fields)
    before = path.read_text()
    assert load_record(path) == RECORD
    with pytest.raises(ValueError, match="results/scratch"):
        save_record(
            path, "reproduce", RECORD["config"], {"scratch": {"history": []}}, complete=True, wall_time=4.0, **fields
        )
    assert path.read_text() == before


def test_an_unknown_format_is_refused_in_one_line(tmp_path, capsys, real_data_dir):
    path = tmp_path / "exercise-no-bias.json"
    path.write_text(json.dumps({**RECORD, "format": "gluon-bn-record/0"}))
    with pytest.raises(UsageError, match="is not a record this gluon-bn reads"):
        load_record(path)
    status = cli.main(["exercise", "no-bias", "--resume", "--quick", "--ctx", "cpu", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "format 'gluon-bn-record/0'" in err[0] and "move it away, or choose another --out" in err[0]


@pytest.mark.usefixtures("figures_closed")
def test_an_exercise_record_of_format_1_still_resumes(tmp_path, capsys, real_data_dir):
    args = ["exercise", "no-bias", "--quick", "--seeds", "1", "--ctx", "cpu", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    path = tmp_path / "exercise-no-bias.json"
    old = json.loads(path.read_text())
    old["format"] = "gluon-bn-record/1"
    path.write_text(json.dumps(old))
    capsys.readouterr()
    assert cli.main([*args, "--resume"]) == 0
    assert "== " not in capsys.readouterr().out  # every run was kept, none trained again
    new = load_record(path)
    assert new["format"] == schema.FORMAT and new["results"]["runs"] == old["results"]["runs"]
    assert new["wall_time"] >= old["wall_time"]  # the seconds of the runs it kept count too
