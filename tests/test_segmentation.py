"""SegNet, the segmentation metrics against hand-counted masks, and the sky study."""

import copy
import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from f1lib import Schedule, train
from f1lib.data.sky import CocoStuffSky, ProceduralSky, load_batches, sample_indices, sky_datasets
from f1lib.metrics import per_image_iou, sky_iou, thresholded_iou
from f1lib.models import SegNet
from f1lib.sky_study import SkySet, pack_masks, run_sky_study, train_batch, unpack_masks
from f1lib.study import Run, run_matrix

from test_train import StateProbe, probe_data


# ------------------------------------------------------------------ SegNet
def test_segnet_at_width_1_has_segnets_29_4_million_parameters():
    count = sum(p.numel() for p in SegNet().parameters())
    assert abs(count - 29.4e6) < 0.15e6, count  # SegNet with BN (Badrinarayanan et al. 2017)


@pytest.mark.parametrize("size", [(32, 48), (53, 80), (37, 45)])
def test_segnet_returns_a_map_of_the_inputs_size_and_one_f1_score(size):
    # odd sizes (426 x 640 halves to 213, then 106...) come back exactly through unpooling
    model = SegNet(width=0.125).eval()
    logits, score = model(torch.rand(3, 3, *size))
    assert logits.shape == (3, 2, *size)
    assert score.shape == (3, 1)


def test_segnet_says_when_an_image_is_too_small_for_five_poolings():
    with pytest.raises(ValueError, match="at least 32 x 32"):
        SegNet(width=0.125)(torch.rand(1, 3, 27, 41))


def test_segnet_width_scales_the_channels_and_bad_settings_raise():
    slim = SegNet(width=0.25)
    assert slim.encoder[0][0][0].out_channels == 16 and slim.encoder[4][0][0].out_channels == 128
    with pytest.raises(ValueError, match="width"):
        SegNet(width=0)
    with pytest.raises(ValueError, match="weights"):
        SegNet(weights="coco")
    with pytest.raises(ValueError, match="width 1"):
        SegNet(width=0.5).load_vgg16_bn_encoder()


def test_segnet_computes_the_same_function_in_channels_last_memory_format():
    # in float64, where rounding cannot hide a mistake: pooling indices, unpooling and the
    # head's average must not depend on how the tensors are laid out (the CPU trains in
    # channels_last, f1lib.hardware.channels_last_convolutions)
    torch.manual_seed(0)
    nchw = SegNet(width=0.25).double()
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    images = torch.rand(3, 3, 37, 53, dtype=torch.float64)
    masks = torch.randint(0, 2, (3, 37, 53))
    results = []
    for model, x in ((nchw, images), (nhwc, images.contiguous(memory_format=torch.channels_last))):
        logits, score = model(x)
        (F.cross_entropy(logits, masks) + score.sum()).backward()
        results.append((logits, score, [p.grad for p in model.parameters()]))
    (logits, score, grads), (logits_cl, score_cl, grads_cl) = results
    assert logits_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(logits_cl, logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(score_cl, score, rtol=1e-10, atol=1e-12)
    for grad_cl, grad in zip(grads_cl, grads, strict=True):
        torch.testing.assert_close(grad_cl, grad, rtol=1e-9, atol=1e-12)


def test_imagenet_encoder_computes_what_vgg16_bn_computes_its_biases_folded(monkeypatch):
    # torchvision's VGG16-BN, its biases and norms made non-trivial, stands in for the
    # ImageNet download; SegNet's encoder convolutions have no bias
    import torchvision.models

    torch.manual_seed(0)
    vgg = torchvision.models.vgg16_bn(weights=None)
    with torch.no_grad():
        for m in vgg.features:
            if isinstance(m, torch.nn.Conv2d):
                m.bias.uniform_(-1, 1)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    monkeypatch.setattr(torchvision.models, "vgg16_bn", lambda weights: vgg)
    model = SegNet(weights="imagenet").eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is None for c in convs if c is not model.classifier)
    x = torch.rand(2, 3, 64, 64)
    encoded = x
    with torch.no_grad():
        for block in model.encoder:
            encoded = torch.nn.functional.max_pool2d(block(encoded), 2, 2)
        torch.testing.assert_close(encoded, vgg.eval().features(x), rtol=1e-4, atol=1e-4)


def test_missing_imagenet_weights_say_what_to_do(monkeypatch):
    import torchvision.models

    def offline(**kwargs):
        raise OSError("no internet")

    monkeypatch.setattr(torchvision.models, "vgg16_bn", offline)
    with pytest.raises(RuntimeError, match="vgg16_bn-6c64b313.pth.*weights=None"):
        SegNet(weights="imagenet")


# ------------------------------------------------------------------ metrics
def masks(*rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_iou_matches_a_hand_count():
    truth = torch.zeros(2, 4, 4, dtype=torch.bool)
    truth[0, :2] = True  # 8 sky pixels
    pred = torch.zeros(2, 4, 4, dtype=torch.bool)
    pred[0, 0] = True  # 4 of them found
    pred[0, 2, 0] = True  # and 1 false alarm
    iou = sky_iou(pred, truth)
    assert iou["iou_sky"].item() == pytest.approx(4 / 9)  # intersection 4, union 9
    # background: 32 - 9 = 23 pixels in both, 32 - 4 = 28 in either
    assert iou["miou"].item() == pytest.approx((4 / 9 + 23 / 28) / 2)
    # per image: image 1 has no sky and none is predicted: nothing to find, nothing found
    assert per_image_iou(pred, truth).tolist() == pytest.approx([4 / 9, 1.0])
    with pytest.raises(ValueError, match="masks"):
        sky_iou(pred[0], truth)


def test_sky_iou_keeps_an_import_time_widget_warning_out_of_the_notebooks(tmp_path, monkeypatch):
    # a stand-in torchmetrics that warns on import as the real one does where transformers
    # is installed without ipywidgets (its tqdm.auto): the notebooks' output must not show it
    classification = tmp_path / "torchmetrics" / "functional"
    classification.mkdir(parents=True)
    (tmp_path / "torchmetrics" / "__init__.py").write_text("")
    (classification / "__init__.py").write_text("")
    (classification / "classification.py").write_text(
        "import warnings\n"
        "import torch\n"
        "from tqdm import TqdmWarning\n"
        "warnings.warn('IProgress not found. Please update jupyter and ipywidgets.', "
        "TqdmWarning)\n"
        "def multiclass_jaccard_index(pred, target, num_classes, average):\n"
        "    return torch.tensor([0.25, 0.75])\n")
    def loaded():
        return [name for name in sys.modules if name.split(".")[0] == "torchmetrics"]

    for name in loaded():  # the real ones come back after the test
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            iou = sky_iou(masks([[True, False]]), masks([[True, True]]))
    finally:
        for name in loaded():  # the stand-in's go, whatever was loaded before
            del sys.modules[name]
    assert iou["miou"].item() == 0.5  # the stand-in's numbers: it was the one imported
    assert [str(w.message) for w in caught] == []


def test_thresholded_iou_counts_the_thresholds_an_image_clears():
    def image_with_iou(k):  # a 20-pixel sky of which the prediction finds k: IoU k / 20
        truth = torch.zeros(1, 4, 5, dtype=torch.bool).fill_(True)
        pred = torch.zeros(1, 4, 5, dtype=torch.bool)
        pred.view(-1)[:k] = True
        return pred, truth

    # IoU 0.50 clears no threshold of 0.50:0.05:0.95; 0.55 clears 0.50 only (strictly above),
    # 0.60 clears 0.50 and 0.55; 0.95 all but 0.95; 1.0 all ten
    for k, expected in [(10, 0.0), (11, 0.1), (12, 0.2), (19, 0.9), (20, 1.0), (5, 0.0)]:
        assert thresholded_iou(*image_with_iou(k)).item() == pytest.approx(expected), k
    pred = torch.cat([image_with_iou(11)[0], image_with_iou(20)[0]])
    truth = torch.cat([image_with_iou(11)[1], image_with_iou(20)[1]])
    assert thresholded_iou(pred, truth).item() == pytest.approx((0.1 + 1.0) / 2)


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("bf16", [False, True])
def test_bf16_runs_the_model_under_autocast(bf16):
    # under bf16 autocast a float32 product comes out in bf16 (a check that torch 2.2, the
    # oldest torch f1lib declares, can make: its is_autocast_enabled takes no device)
    model = StateProbe(lambda: (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16)
    train(model, probe_data(), None, schedule=Schedule(outer=1, inner=2, batch_size=4),
          progress=False, bf16=bf16)
    assert model.seen == [bf16, bf16]


def tiny_sky(n_train=28, n_test=7, size=(32, 48)):
    train_b = load_batches(ProceduralSky(n_train, size=size))
    test_b = load_batches(ProceduralSky(n_test, size=size, seed=9))
    return SkySet.from_batch(train_b, "cpu"), SkySet.from_batch(test_b, "cpu")


@pytest.mark.parametrize("big, samples, expected", [
    ([0, 0, 1, 0, 1, 1, 0], 4, [2, 4, 0, 1]),  # two big, two small, each in the set's order
    ([0, 0, 1, 0, 1, 1, 0], 3, [2, 4, 0]),  # the odd one is big
    ([0, 1, 0, 0, 0], 4, [1, 0, 2, 3]),  # one big only: small ones fill in
    ([1, 1, 1, 0], 4, [0, 1, 2, 3]),  # one small only: big ones fill in
    ([0, 0], 4, [0, 1]),  # fewer images than samples: all of them
    ([1, 0, 1], 0, []),
])
def test_the_samples_shown_are_half_big_and_half_small(big, samples, expected):
    assert sample_indices(torch.tensor(big, dtype=torch.bool), samples).tolist() == expected
    assert sample_indices(np.array(big, dtype=bool), samples).tolist() == expected  # numpy too
    with pytest.raises(ValueError, match="samples"):
        sample_indices(torch.tensor(big, dtype=torch.bool), -1)


def test_runs_side_by_side_score_their_masks_and_keep_the_samples(monkeypatch):
    import f1lib.sky_study

    train_set, test_set = tiny_sky()
    runs = [Run("baseline", 0.0, 0), Run("paper", 1e-3, 1)]
    predicted, predict = [], f1lib.sky_study.predict

    def recorded(model, images):
        predicted.append(images)
        return predict(model, images)

    monkeypatch.setattr(f1lib.sky_study, "predict", recorded)
    histories = train_batch(runs, train_set, test_set, Schedule(outer=2, inner=2, batch_size=7),
                            width=0.125, samples=3)
    # the samples' masks are predicted for the images that sample_indices picks
    shown = test_set.images[sample_indices(test_set.big, 3)]
    assert sum(torch.equal(images, shown) for images in predicted) == len(runs)
    for run, rows in zip(runs, histories, strict=True):
        assert [(r["run"], r["seed"], r["outer"]) for r in rows] == [(run.label, run.seed, 1),
                                                                      (run.label, run.seed, 2)]
        for key in ("miou", "iou_sky", "thresholded_iou", "miou_small", "head_f1"):
            assert 0 <= rows[-1][key] <= 1, key
        assert "sample_masks" in rows[-1] and "sample_masks" not in rows[0]
        masks = unpack_masks(rows[-1]["sample_masks"], (3, 32, 48))
        assert masks.dtype == torch.bool and masks.shape == (3, 32, 48)
    # each run its own network: other seeds, other masks after training
    assert histories[0][-1]["task_loss"] != histories[1][-1]["task_loss"]


def test_sky_runs_on_the_cpu_hold_images_and_weights_channels_last(monkeypatch):
    import f1lib.sky_study

    train_set, test_set = tiny_sky()
    assert train_set.images.is_contiguous(memory_format=torch.channels_last)
    assert not train_set.images.is_contiguous()  # channels_last is not NCHW at 3 channels
    models = []

    def recorded(runs, make_model, *args, **kwargs):
        def make():
            models.append(make_model())
            return models[-1]
        return train_split(runs, make, *args, **kwargs)

    train_split = f1lib.sky_study.train_split
    monkeypatch.setattr(f1lib.sky_study, "train_split", recorded)
    train_batch([Run("stable", 1e-3, 0)], train_set, test_set,
                Schedule(outer=1, inner=1, batch_size=7), width=0.125, samples=0)
    convolutions = [m.weight for m in models[0].modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convolutions) == 27  # 13 in the encoder, 13 in the decoder, the classifier
    assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
               for w in convolutions)


def test_a_sky_study_resumes_only_on_the_data_its_runs_saw(tmp_path, monkeypatch):
    train_set, test_set = tiny_sky()
    runs, schedule = [Run("stable", 1e-3, 0)], Schedule(outer=1, inner=2, batch_size=7)
    run_sky_study(runs, train_set, test_set, schedule, tmp_path, width=0.125, samples=0)
    trained = []

    def counted(batch, *args, **kwargs):
        trained.extend(batch)
        return train_batch(batch, *args, **kwargs)

    monkeypatch.setattr("f1lib.sky_study.train_batch", counted)
    run_sky_study(runs, train_set, test_set, schedule, tmp_path, width=0.125, samples=0)
    assert trained == []
    # the same number of test scenes, of another seed
    other_test = SkySet.from_batch(load_batches(ProceduralSky(7, size=(32, 48), seed=10)), "cpu")
    run_sky_study(runs, train_set, other_test, schedule, tmp_path, width=0.125, samples=0)
    assert trained == runs


def test_a_sky_study_side_by_side_gives_each_run_the_rows_it_gets_alone(tmp_path, monkeypatch):
    train_set, test_set = tiny_sky()
    # 6 runs in two batches of three, each batch mixing seeds (so minibatch orders differ)
    runs = sorted(run_matrix(["paper", "stable"], [1e-3], seeds=2), key=lambda run: run.method)
    schedule = Schedule(outer=2, inner=2, batch_size=7)
    batches = []

    def counted(batch, *args, **kwargs):
        batches.append(len(batch))
        return train_batch(batch, *args, **kwargs)

    monkeypatch.setattr("f1lib.sky_study.train_batch", counted)
    studies = {together: run_sky_study(runs, train_set, test_set, schedule,
                                       tmp_path / str(together), width=0.125, samples=2,
                                       side_by_side=together) for together in (1, 3)}
    assert batches == [1] * 6 + [3, 3]
    with pytest.raises(ValueError, match="side_by_side: at least one run"):
        run_sky_study(runs, train_set, test_set, schedule, tmp_path / "0", width=0.125,
                      side_by_side=0)
    alone, side = (studies[k].drop(columns="wall_s") for k in (1, 3))
    pd.testing.assert_frame_equal(side, alone)
    assert alone.groupby(["run", "seed"]).task_loss.last().nunique() == len(runs)


def test_packed_masks_round_trip():
    m = torch.rand(3, 7, 9) > 0.5
    assert torch.equal(unpack_masks(pack_masks(m), (3, 7, 9)), m)


# ------------------------------------------------------------------ sources
def test_procedural_is_the_offline_default_and_coco_when_asked_must_be_complete(tmp_path):
    train_ds, test_ds, train_idx, test_idx, text = sky_datasets("auto", (32, 48),
                                                                coco_annotations=tmp_path)
    assert isinstance(train_ds, ProceduralSky) and len(train_idx) == 3654 and len(test_idx) == 500
    assert "synthetic" in text and "auto" in text
    assert train_ds.seed != test_ds.seed  # the test scenes are not training scenes
    with pytest.raises(FileNotFoundError, match="stuff_train2017.json"):
        sky_datasets("coco", coco_annotations=tmp_path)
    with pytest.raises(ValueError, match="unknown sky source"):
        sky_datasets("imagenet")


def test_auto_takes_coco_stuff_when_all_of_it_is_there(tmp_path):
    from coco_files import stuff_file  # a COCO-format stuff file with RLE masks

    path, _ = stuff_file(tmp_path)
    shutil.copy(path, tmp_path / "stuff_train2017.json")
    for split in ("train2017", "val2017"):
        (tmp_path / split).mkdir()
    train_ds, test_ds, train_idx, test_idx, text = sky_datasets(
        "auto", (10, 15), coco_annotations=tmp_path, selection="any")
    assert isinstance(train_ds, CocoStuffSky) and isinstance(test_ds, CocoStuffSky)
    assert len(train_idx) == 2 and "COCO-Stuff" in text


# ------------------------------------------------------------------ the sky notebook
def test_the_sky_notebook_names_the_synthetic_fallback_and_judges_the_proxy_apart_from_coco(
        tmp_path, monkeypatch):
    # "auto" without COCO-Stuff falls back to the procedural scenes with a description that
    # says why COCO-Stuff was not used; the claims must name the synthetic data, and their
    # verdicts say they hold for the proxy, with COCO-Stuff's given apart as not run.
    papermill = pytest.importorskip("papermill")
    book = Path(__file__).resolve().parents[1] / "book"
    monkeypatch.setenv("F1LIB_FIGURES", str(tmp_path / "figures"))
    empty = tmp_path / "no-coco"
    empty.mkdir()
    papermill.execute_notebook(str(book / "sky_segmentation.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"profile": "smoke", "source": "auto",
                                           "coco_annotations": str(empty)},
                               cwd=str(book), progress_bar=False)
    record = json.loads((tmp_path / "figures" / "sky_segmentation.json").read_text())
    assert "COCO-Stuff is not complete" in record["results"]["source"]  # the fallback ran
    claims = record["results"]["claims"]
    assert [c["key"] for c in claims] == ["sky_fig8", "sky_successor"]
    for c in claims:
        assert "procedural scenes" in c["setting"] and "COCO" not in c["setting"], c["setting"]
        assert c["verdict"] == (f"on the procedural proxy: {c['outcome']}; "
                                "on COCO-Stuff: not run here")


def test_figure_8_keeps_the_iou_curves_readable_under_two_seeds_wide_bands():
    from matplotlib.collections import PathCollection, PolyCollection

    from f1lib.plots import segmentation_figure

    rows = [{"run": run, "method": run.split(",")[0], "beta": 0.0, "lr_scale": 1.0,
             "seed": seed, "outer": outer, "status": "finished",
             "miou": 0.9 + 0.005 * outer + (0.04 if seed else -0.04) + (0.01 if "," in run else 0),
             "thresholded_iou": 0.8}
            for run in ("baseline", "stable, β=0.001") for seed in (0, 1) for outer in (1, 2, 3)]
    figure = segmentation_figure(pd.DataFrame(rows), 0.04)
    scores, paired, curves = figure.axes
    low, high = curves.get_ylim()
    # the mean curve, 0.905 to 0.915, fills the axis; two seeds' t-bands reach past 1.3
    assert 1.0 <= high <= 1.01 and 0.85 <= low <= 0.905
    bands = [c for c in curves.collections if isinstance(c, PolyCollection)]
    assert bands and all(0 <= v[:, 1].min() and v[:, 1].max() <= 1
                         for band in bands for v in (p.vertices for p in band.get_paths()))
    # the final mean IoU's interval, 0.915 +- 0.51, is cut at the score's range, not drawn to 1.4
    low, high = scores.get_xlim()
    assert 1.0 <= high <= 1.01 and low < 0.5
    # each seed's paired difference is +1 point: both dots, and the claimed +4 marked
    dots = np.concatenate([c.get_offsets()[:, 0] for c in paired.collections
                           if isinstance(c, PathCollection)])
    assert np.allclose(dots, 1.0)
    assert any(np.allclose(line.get_xdata(), 4) for line in paired.get_lines())