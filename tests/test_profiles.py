"""Profiles: 'auto' resolution, overrides and the errors papermill would not give."""

import pytest
import torch

from f1lib.profiles import PROFILES, profile_config, resolve_profile


def test_auto_follows_the_environment_then_the_hardware(monkeypatch):
    monkeypatch.setenv("F1LIB_PROFILE", "smoke")
    assert resolve_profile("auto") == "smoke"
    monkeypatch.delenv("F1LIB_PROFILE")
    assert resolve_profile("auto") == ("paper" if torch.cuda.is_available() else "quick")
    monkeypatch.setenv("F1LIB_PROFILE", "quick")
    assert resolve_profile("paper") == "paper"  # an explicit name wins


def test_profiles_layer_over_the_defaults_and_overrides_win():
    name, config = profile_config("lp_bound", "smoke", outer=7, seeds=None)
    assert name == "smoke"
    assert config["outer"] == 7  # override
    assert config["seeds"] == PROFILES["lp_bound"]["smoke"]["seeds"]  # None: profile's value
    assert config["batch_size"] == PROFILES["lp_bound"]["defaults"]["batch_size"]
    _, paper = profile_config("lp_bound", "paper")
    assert paper["inner"] == 600  # the paper's 40 x 600
    assert paper["outer"] == 40


def test_bad_profiles_and_values_raise(monkeypatch):
    with pytest.raises(ValueError, match="unknown profile"):
        profile_config("lp_bound", "fast")
    monkeypatch.setenv("F1LIB_PROFILE", "huge")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        resolve_profile("auto")
    with pytest.raises(ValueError, match="unknown parameter"):
        profile_config("lp_bound", "smoke", epochs=3)
    with pytest.raises(ValueError, match="must be int"):
        profile_config("lp_bound", "smoke", outer=2.5)
    with pytest.raises(ValueError, match="must be int"):
        profile_config("lp_bound", "smoke", seeds=True)
    with pytest.raises(ValueError, match=">= 1"):
        profile_config("lp_bound", "smoke", inner=0)
    with pytest.raises(ValueError, match=">= 0"):  # 0: the library's choice
        profile_config("sky_segmentation", "smoke", side_by_side=-1)
    with pytest.raises(ValueError, match="no profiles"):
        profile_config("nonexistent", "smoke")
    for size in ([32], [16, 16], [64, 96.0], [64, 96, 3]):  # one side, too small, not ints
        with pytest.raises(ValueError, match=r"'size' must be \[height, width\]"):
            profile_config("sky_histogram", "smoke", size=size)
    assert profile_config("sky_histogram", "smoke", size=[32, 48])[1]["size"] == [32, 48]
    for betas in ([-1e-3], [float("inf")], [], ["0.1"]):  # refused before any run trains
        with pytest.raises(ValueError, match="'betas' must be finite numbers >= 0"):
            profile_config("mnist", "smoke", betas=betas)
    with pytest.raises(ValueError, match="'lr' must be finite"):
        profile_config("mnist", "smoke", lr=float("inf"))


def test_the_mnist_paper_profile_is_the_seeds_schedule_and_sweep():
    _, paper = profile_config("mnist", "paper")
    schedule = (paper["outer"], paper["inner"], paper["batch_size"], paper["lr"])
    assert schedule == (40, 600, 100, 0.01)
    assert paper["betas"] == [1e-4, 1e-3, 1e-2, 1e-1] and paper["seeds"] == 5
    assert paper["n_train_digits"] == 0  # every digit of the source
    with pytest.raises(ValueError, match="must be float"):
        profile_config("mnist", "smoke", lr="fast")


def test_the_segmentation_paper_profile_is_the_seeds_schedule():
    _, paper = profile_config("sky_segmentation", "paper")
    assert (paper["outer"], paper["inner"], paper["batch_size"], paper["lr"]) == (40, 600, 7, 0.01)
    assert 1e-3 in paper["betas"] and paper["seeds"] >= 2 and paper["width"] == 1.0
    _, quick = profile_config("sky_segmentation", "quick")
    assert quick["source"] == "procedural"  # offline


def test_every_notebook_has_every_profile():
    from f1lib.profiles import PROFILE_NAMES

    for notebook in PROFILES:
        for name in PROFILE_NAMES:
            resolved, config = profile_config(notebook, name)
            assert resolved == name and config, (notebook, name)


def test_the_sky_chapters_deciding_profiles_pair_at_least_five_seeds_offline():
    # the paired intervals decide +4 points only with several seeds; cpu runs without a GPU
    for name in ("cpu", "paper"):
        _, config = profile_config("sky_segmentation", name)
        assert config["seeds"] >= 5 and config["betas"] == [1e-3], name
    _, cpu = profile_config("sky_segmentation", "cpu")
    assert cpu["source"] == "procedural" and cpu["size"] == [64, 96]
