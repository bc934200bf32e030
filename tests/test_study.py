"""Comparing an experiment's runs: the run matrix, summaries and paired differences."""

import importlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from f1lib import Schedule, SharedHeadMLP, TensorData
from f1lib.data.gaussians import gaussian_problem
from f1lib.fingerprint import PACKAGE, STUDY_MODULES, library_fingerprint, study_sources, \
    tensor_digest
from f1lib.study import (Run, batch_key, interval_text, paired_differences, points_text,
                         run_matrix, run_study, run_tag, summarize, tagged_rows, train_together)
from f1lib.training import NonFiniteError

study_module = importlib.import_module("f1lib.study")


def test_the_run_matrix_and_its_labels():
    runs = run_matrix(["paper", "stable"], [1e-3, 1e-1], seeds=2, successor_baseline=True)
    assert len(runs) == 2 * (2 + 4)
    labels = {r.label for r in runs}
    assert labels == {"baseline", "baseline, lr x 0.1", "paper, β=0.001", "paper, β=0.1",
                      "stable, β=0.001", "stable, β=0.1"}
    assert {r.variant for r in runs if r.method == "baseline"} == {"stable"}
    with pytest.raises(ValueError, match="beta = 0"):
        Run("baseline", 1e-3, 0)
    with pytest.raises(ValueError, match="unknown method"):
        Run("adam", 1e-3, 0)
    # a notebook's variants parameter: one or more known variants, each once
    for variants, message in (([], "one or more"), (["paper", "paper"], "each once"),
                              (["baseline"], "unknown variant"), (["adam"], "unknown variant")):
        with pytest.raises(ValueError, match=message):
            run_matrix(variants, [1e-3], seeds=1)


def test_summary_averages_finished_runs_with_a_t_interval():
    history = pd.DataFrame([
        # run, seed, outer, status, acc; only the last outer loop of a finished run counts
        {"run": "baseline", "method": "baseline", "beta": 0.0, "seed": 0, "outer": 1,
         "status": "finished", "acc": 0.1},
        {"run": "baseline", "method": "baseline", "beta": 0.0, "seed": 0, "outer": 2,
         "status": "finished", "acc": 0.8},
        {"run": "baseline", "method": "baseline", "beta": 0.0, "seed": 1, "outer": 2,
         "status": "finished", "acc": 0.9},
        {"run": "paper, β=0.1", "method": "paper", "beta": 0.1, "seed": 0, "outer": 1,
         "status": "diverged at outer loop 2", "acc": 0.5},
    ])
    summary = summarize(history, ("acc",)).set_index("run")
    base = summary.loc["baseline"]
    assert base["runs"] == 2 and base["finished"] == 2
    assert base["acc"] == pytest.approx(0.85)
    half = 12.7062047 * np.std([0.8, 0.9], ddof=1) / np.sqrt(2)  # t(0.975, 1 dof)
    assert base["acc_low"] == pytest.approx(0.85 - half)
    assert base["acc_high"] == pytest.approx(0.85 + half)
    paper = summary.loc["paper, β=0.1"]
    assert paper["finished"] == 0 and np.isnan(paper["acc"])


def test_paired_differences_compare_each_seed_with_its_own_baseline():
    rows = []
    for seed, (base, f1) in enumerate([(0.80, 0.83), (0.90, 0.92), (0.70, 0.74)]):
        rows += [{"run": "baseline", "method": "baseline", "beta": 0.0, "seed": seed, "outer": 1,
                  "status": "finished", "acc": base},
                 {"run": "stable, β=0.001", "method": "stable", "beta": 0.001, "seed": seed,
                  "outer": 1, "status": "finished", "acc": f1}]
    paired = paired_differences(pd.DataFrame(rows), "acc").set_index("method")
    row = paired.loc["stable, β=0.001"]
    diffs = np.array([0.03, 0.02, 0.04])  # seed by seed
    half = 4.30265273 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
    assert row["seeds"] == 3
    assert row["difference"] == pytest.approx(0.03)
    assert row["low"] == pytest.approx(0.03 - half) and row["high"] == pytest.approx(0.03 + half)
    assert row["verdict"] == "helps"
    # unpaired, the seeds' spread (0.70 .. 0.90) would swamp a 3-point gain


def test_runs_of_one_batch_key_train_together_and_only_unfinished_ones_again(tmp_path):
    runs = run_matrix(["paper", "stable"], [1e-3, 0.1], seeds=2, successor_baseline=True)
    calls = []

    def fake_batch(batch, checkpoint):
        calls.append([run.label + f"/{run.seed}" for run in batch])
        return [[{"run": run.label, "seed": run.seed, "outer": 1}] for run in batch]

    rows = run_study(runs, fake_batch, tmp_path, setting="s")
    # baseline and stable share (variant, lr); the lr x 0.1 baseline and paper train apart
    assert sorted(len(c) for c in calls) == [2, 4, 6]
    assert {batch_key(r) for r in runs} == {("stable", 1.0), ("stable", 0.1), ("paper", 1.0)}
    # rows come back in the order of `runs`, whatever the batching
    assert list(zip(rows["run"], rows["seed"])) == [(r.label, r.seed) for r in runs]

    # one finished run lost: only it trains again, in a batch of its own
    lost = next(r for r in runs if r.method == "stable" and r.seed == 1 and r.beta == 0.1)
    done = sorted(tmp_path.glob("*.json"))
    assert len(done) == len(runs)
    for path in done:
        (row,) = json.loads(path.read_text())
        if (row["run"], row["seed"]) == (lost.label, 1):
            path.unlink()
    calls.clear()
    again = run_study(runs, fake_batch, tmp_path, setting="s")
    assert calls == [[f"{lost.label}/1"]]
    pd.testing.assert_frame_equal(rows, again)
    # another setting reuses nothing
    calls.clear()
    run_study(runs, fake_batch, tmp_path, setting="other")
    assert sum(len(c) for c in calls) == len(runs)


def test_the_library_fingerprint_follows_the_source(tmp_path):
    copy = shutil.copytree(PACKAGE, tmp_path / "f1lib",
                           ignore=shutil.ignore_patterns("__pycache__"))
    assert library_fingerprint(copy) == library_fingerprint()
    (copy / "regularizer.py").write_text((copy / "regularizer.py").read_text() + "\n# edited\n")
    assert library_fingerprint.__wrapped__(copy) != library_fingerprint()



def test_the_fingerprint_skips_the_modules_that_only_present_results(tmp_path):
    copy = shutil.copytree(PACKAGE, tmp_path / "f1lib",
                           ignore=shutil.ignore_patterns("__pycache__"))
    names = {p.relative_to(copy).as_posix() for p in study_sources(copy)}
    assert {"__init__.py", "regularizer.py", "training.py", "checkpoint.py", "tensor_data.py",
            "steps.py", "models.py", "study.py", "fingerprint.py",
            "data/__init__.py", "data/mnist.py", "data/sky_common.py"} <= names
    # the sky runs' data is in their key by its digest: its sources are not
    assert not names & {"plots.py", "ledger.py", "provenance.py", "reproduce.py", "profiles.py",
                        "data/coco_stuff.py", "data/procedural_sky.py"}
    before = library_fingerprint.__wrapped__(copy)
    (copy / "plots.py").write_text((copy / "plots.py").read_text() + "\n# edited\n")
    assert library_fingerprint.__wrapped__(copy) == before
    # data/sky_common.py reaches the runs only through sky_study's import
    shared = copy / "data" / "sky_common.py"
    shared.write_text(shared.read_text() + "\n# e\n")
    assert library_fingerprint.__wrapped__(copy) != before


def test_the_study_sources_follow_relative_imports_through_packages(tmp_path):
    files = {"__init__.py": "", "a.py": "from .sub.b import x\nimport os\n",
             "sub/__init__.py": "", "sub/b.py": "from ..c import x\n",
             "c.py": "x = 1\n", "d.py": "from . import a\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    found = {p.relative_to(tmp_path).as_posix() for p in study_sources(tmp_path, ("a",))}
    assert found == {"__init__.py", "a.py", "sub/__init__.py", "sub/b.py", "c.py"}


def test_every_module_that_keeps_runs_is_a_root_of_the_fingerprint():
    callers = {p.stem for p in PACKAGE.rglob("*.py") if p.name != "study.py"
               and ("run_study(" in p.read_text() or "run_split_study(" in p.read_text())}
    assert callers == set(STUDY_MODULES)


def test_runs_that_other_code_finished_train_again(tmp_path, monkeypatch):
    runs = run_matrix(["stable"], [1e-3], seeds=2)
    calls = []

    def fake_batch(batch, checkpoint):
        calls.append(len(batch))
        return [[{"outer": 1}] for _ in batch]

    run_study(runs, fake_batch, tmp_path, setting="s")
    run_study(runs, fake_batch, tmp_path, setting="s")
    assert calls == [len(runs)]  # the same code reuses every run
    monkeypatch.setattr(study_module, "library_fingerprint", lambda: "other code")
    run_study(runs, fake_batch, tmp_path, setting="s")
    assert calls == [len(runs), len(runs)]


def test_one_at_a_time_when_asked(tmp_path):
    runs = run_matrix(["stable"], [1e-3, 0.1], seeds=2)
    calls = []

    def fake_batch(batch, checkpoint):
        calls.append(len(batch))
        return [[{"outer": 1}] for _ in batch]

    run_study(runs, fake_batch, tmp_path, setting=None, max_together=1)
    assert calls == [1] * len(runs)
    with pytest.raises(ValueError, match="max_together"):
        run_study(runs, fake_batch, tmp_path, setting=None, max_together=0)


class Interrupt(Exception):
    pass


def test_batches_of_at_most_max_together_runs_and_a_resumed_study_forms_the_same_batch(
        tmp_path):
    # the sky study's grouping: every method of one learning rate, three runs at a time
    runs = run_matrix(["paper", "stable"], [1e-3], seeds=3)  # 9 runs, 3 methods x 3 seeds
    calls, checkpoints, stop = [], [], [2]

    def fake_batch(batch, checkpoint):
        calls.append([(run.method, run.seed) for run in batch])
        checkpoints.append(checkpoint.name)
        if len(calls) == stop[0]:
            raise Interrupt
        return [[{"method": run.method, "seed": run.seed, "outer": 1}] for run in batch]

    with pytest.raises(Interrupt):
        run_study(runs, fake_batch, tmp_path, setting="s", group_by=lambda run: run.lr_scale,
                  max_together=3)
    # in the order of `runs`: seed 0's three methods, then seed 1's (stopped there)
    assert calls == [[("baseline", 0), ("paper", 0), ("stable", 0)],
                     [("baseline", 1), ("paper", 1), ("stable", 1)]]
    stop[0] = 0
    run_study(runs, fake_batch, tmp_path, setting="s", group_by=lambda run: run.lr_scale,
              max_together=3)
    # the interrupted batch again, with its checkpoint's name, then the last
    assert calls[2:] == [[("baseline", 1), ("paper", 1), ("stable", 1)],
                         [("baseline", 2), ("paper", 2), ("stable", 2)]]
    assert checkpoints[2] == checkpoints[1]

    # two runs lost, from the first batch and the last: the runs left train as one batch
    done = {path.name for path in tmp_path.glob("*.json")}
    assert len(done) == len(runs)
    for path in tmp_path.glob("*.json"):
        (row,) = json.loads(path.read_text())
        if (row["method"], row["seed"]) in {("baseline", 0), ("stable", 2)}:
            path.unlink()
    calls.clear()
    run_study(runs, fake_batch, tmp_path, setting="s", group_by=lambda run: run.lr_scale,
              max_together=3)
    assert [len(batch) for batch in calls] == [2]


def test_summary_rows_print_as_intervals_and_points():
    summary_row = {"acc": 0.83801, "acc_low": 0.829, "acc_high": 0.847}
    assert interval_text(summary_row, "acc") == "0.8380 [0.8290, 0.8470]"
    assert interval_text({**summary_row, "acc_low": float("nan")}, "acc", 2) == "0.84"
    paired_row = {"difference": -0.0003, "low": -0.0011, "high": 0.0004}
    assert points_text(paired_row) == "-0.03 [-0.11, +0.04] points"


def test_tagged_rows_keep_a_diverged_runs_rows_and_mark_it():
    tag = {"run": "paper, β=0.1", "seed": 2}
    rows = [{"outer": 1, "acc": 0.5}, {"outer": 2, "acc": 0.6}]
    diverged = tagged_rows(tag, NonFiniteError("nan", history=rows, outer=3), 1.234)
    assert [(r["outer"], r["status"], r["wall_s"], r["seed"]) for r in diverged] == [
        (1, "diverged at outer loop 3", 1.23, 2), (2, "diverged at outer loop 3", 1.23, 2)]
    finished = tagged_rows(tag, rows, 0.5)
    assert [r["status"] for r in finished] == ["finished", "finished"]
    assert finished[1]["acc"] == 0.6 and finished[1]["run"] == "paper, β=0.1"
    (empty,) = tagged_rows(tag, NonFiniteError("nan", outer=1), 0.1)
    assert empty["outer"] == 0 and empty["status"] == "diverged at outer loop 1"
    assert run_tag(Run("stable", 0.1, 4)) == {"run": "stable, β=0.1", "method": "stable",
                                             "beta": 0.1, "seed": 4, "lr_scale": 1.0,
                                             "variant": "stable"}


def test_a_resumed_batch_keeps_its_checkpoint_interval_and_the_time_before_the_interruption(
        tmp_path, monkeypatch):
    now = [0.0]
    for module in ("f1lib.training", "f1lib.study"):  # one clock for the trainer and the study
        monkeypatch.setattr(importlib.import_module(module), "monotonic", lambda: now[0])
    x, positive = gaussian_problem(n=60, separation=3.0, offset=1.0, seed=0)
    data = TensorData(x.float(), positive.long(), positive)
    runs = [Run("stable", 1e-3, 0), Run("stable", 0.1, 1)]
    schedule = Schedule(outer=6, inner=3, batch_size=16)
    ckpt = tmp_path / "batch.ckpt"
    evaluations = []

    def evaluation(_regularizer):
        def evaluate(_model):  # two runs: an outer loop takes 25 s
            now[0] += 12.5
            evaluations.append(torch.load(ckpt, weights_only=False)["outer"]
                               if ckpt.exists() else None)
            if len(evaluations) == 9:  # in outer loop 5
                raise Interrupt
            return {}
        return evaluate

    def make_model():
        return SharedHeadMLP(in_features=2, hidden=8, classes=2)

    with pytest.raises(Interrupt):
        train_together(runs, make_model, data, schedule, evaluation, ckpt)
    # the study's default interval (60 s): written after outer loop 3, at 75 s, and not
    # after loop 4, 25 s later (every loop's write would leave loop 4 in the file)
    assert evaluations[::2] == [None, None, None, 3, 3]
    rows, _ = train_together(runs, make_model, data, schedule, evaluation, ckpt)
    # 75 s up to the checkpoint, then outer loops 4 to 6 again: 75 s, shared by two runs;
    # the 25 s of loop 4 and the part of loop 5 trained before the interruption are lost
    assert [run_rows[-1]["wall_s"] for run_rows in rows] == [75.0, 75.0]
    assert [len(run_rows) for run_rows in rows] == [6, 6]


def test_the_data_digest_follows_every_value_dtype_and_shape():
    torch.manual_seed(0)
    data = torch.rand(50, 8, 8)
    assert tensor_digest(data) == tensor_digest(data.clone())
    assert tensor_digest(data.mT) == tensor_digest(data.mT.contiguous())  # the values, not strides
    # one ulp in the last element, read in chunks of 100 bytes or all at once
    nudged = data.clone()
    nudged[-1, -1, -1] = torch.nextafter(nudged[-1, -1, -1], torch.tensor(2.0))
    assert tensor_digest(nudged) != tensor_digest(data)
    assert tensor_digest(nudged, chunk_bytes=100) != tensor_digest(data, chunk_bytes=100)
    assert tensor_digest(data, chunk_bytes=100) == tensor_digest(data)
    # the same bytes as another shape or dtype, or twice, are other data
    assert tensor_digest(data.view(50, 64)) != tensor_digest(data)
    assert tensor_digest(data.view(torch.int32)) != tensor_digest(data)
    assert tensor_digest(data, data) != tensor_digest(data)
    assert tensor_digest(torch.zeros(4, dtype=torch.bool)) != \
        tensor_digest(torch.zeros(4, dtype=torch.uint8))


def test_stacked_runs_share_a_batch_key_and_runs_side_by_side_a_learning_rate():
    x, positive = gaussian_problem(n=40, separation=3.0, offset=1.0, seed=0)
    data = TensorData(x.float(), positive.long(), positive)
    schedule = Schedule(outer=2, inner=3, batch_size=8)

    def make_model():
        return SharedHeadMLP(in_features=2, hidden=8, classes=2)

    def evaluation(_regularizer):
        return lambda _model: {}

    mixed = [Run("baseline", 0.0, 0), Run("paper", 0.1, 1)]
    with pytest.raises(ValueError, match="different variants or learning rates cannot train "
                                         "together stacked"):
        train_together(mixed, make_model, data, schedule, evaluation)
    rows, models = train_together(mixed, make_model, data, schedule, evaluation, stack=False)
    assert [(r[-1]["run"], r[-1]["seed"], r[-1]["outer"]) for r in rows] == [
        ("baseline", 0, 2), ("paper, β=0.1", 1, 2)]
    assert len(models) == 2 and models[0] is not models[1]
    slower = [Run("baseline", 0.0, 0), Run("baseline", 0.0, 0, lr_scale=0.1)]
    with pytest.raises(ValueError, match="different learning rates cannot train together side"):
        train_together(slower, make_model, data, schedule, evaluation, stack=False)
