"""Models that return (task_output, f1_score), as f1lib.train expects."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FixedFeatures(nn.Module):
    """No task and no learned features: the F1 regularizer sees the inputs.

    With it, Algorithm 1 optimises the LP's own variables only, which is the
    setting where the exact LP (`f1lib.lp.solve_lp`) is the ground truth.

    With `table` (N, d), the run holds its features itself and its inputs are
    dataset indices: `FixedFeatures(x)` on `TensorData(torch.arange(N), ...)` trains
    as `FixedFeatures()` on `TensorData(x, ...)`. A table is a buffer, so runs on
    different problems of one size (and one set of positives) can train stacked
    (f1lib.train_runs), each looking up its own features.
    """

    def __init__(self, table: Tensor | None = None):
        super().__init__()
        if table is not None and (table.dim() != 2 or not table.is_floating_point()):
            raise ValueError(f"table: (N, d) floating-point features, got {table.dtype} of "
                             f"shape {tuple(table.shape)}")
        self.register_buffer("table", table)

    def forward(self, x: Tensor):
        if self.table is None:
            return None, x
        if x.is_floating_point():
            raise TypeError(f"FixedFeatures with a table takes dataset indices, got {x.dtype} "
                            "inputs")
        return None, self.table[x]


class SharedHeadMLP(nn.Module):
    """in -> hidden (ReLU) -> classes, and the F1 features from the same hidden layer.

    The paper's MNIST model (4096 -> 500 -> 10). The paper scores the F1 task as
    w . h_F1 with h_F1 = fc_1(hidden), a one-unit linear head (with bias) on
    the shared layer, and the LP's w a scalar on top: `f1_head=True`, the
    default, returns that head's output and wants `F1Regularizer(positive,
    features=model.f1_features)` with f1_features = 1. With `f1_head=False` the
    500 hidden units themselves are the F1 features and the regularizer's
    (w, b) is the head, trained at the LP's step size eta_w rather than
    through the network's gradient (an alternative the MNIST notebook can run).

    The F1 term reaches the classifier only through the shared hidden layer:
    with no shared layer it could not change the classifier at all.
    """

    def __init__(self, in_features: int = 4096, hidden: int = 500, classes: int = 10,
                 f1_head: bool = True):
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, classes)
        self.f1_head = nn.Linear(hidden, 1) if f1_head else None
        self.f1_features = 1 if f1_head else hidden

    def forward(self, x: Tensor):
        z = self.hidden(x)
        return self.classifier(z), (z if self.f1_head is None else self.f1_head(z))


# VGG16's convolution blocks (Simonyan & Zisserman), SegNet's encoder
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    # no bias: the batch norm subtracts each channel's mean, and a bias with it (in training
    # the batch's mean, in evaluation the running mean, which would hold the bias too), so a
    # bias here changes no output and only costs a gradient reduction and an add per layer and
    # step
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """SegNet (Badrinarayanan et al. 2017) with an F1 head: returns (logits, f1 score).

    Encoder: VGG16's 13 conv3x3 + BN + ReLU layers (the convolutions without a
    bias, which the batch norm would cancel) in 5 blocks, each followed
    by 2x2 max-pooling that keeps its indices. Decoder: the mirror image, each
    block opened by max-unpooling with those indices and the pre-pooling size
    (so odd sizes such as 426 come back exactly), its last conv narrowing to
    the next block's width. A final 3x3 conv maps to `classes`.

    F1 head: one linear unit on the globally averaged last decoder features,
    the layer the segmentation output is read from. The successor's head was
    one linear unit over the whole flattened decoder map (about 17M weights
    at 426 x 640); averaging keeps the head small and independent of the
    image size, and a linear function of the average is what an image's sky
    fraction is, to first order.

    width: multiplies every layer's channels (a slim network for CPU runs).
    weights: None, or "imagenet" to start the encoder from torchvision's
    ImageNet VGG16-BN weights (width 1 only; downloaded by torchvision).
    """

    def __init__(self, classes: int = 2, width: float = 1.0, in_channels: int = 3,
                 weights: str | None = None):
        super().__init__()
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"width must be > 0, got {width!r}")
        if weights not in (None, "imagenet"):
            raise ValueError(f"weights must be None or 'imagenet', got {weights!r}")
        blocks = [tuple(max(1, round(c * width)) for c in block) for block in VGG16_BLOCKS]
        self.encoder = nn.ModuleList()
        c_in = in_channels
        for block in blocks:
            layers = []
            for c_out in block:
                layers.append(_conv_bn_relu(c_in, c_out))
                c_in = c_out
            self.encoder.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList()
        for k in reversed(range(len(blocks))):
            block = blocks[k]
            c_next = blocks[k - 1][-1] if k > 0 else block[0]
            widths = list(block[:-1]) + [c_next]
            layers, c = [], block[-1]
            for c_out in widths:
                layers.append(_conv_bn_relu(c, c_out))
                c = c_out
            self.decoder.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(blocks[0][0], classes, 3, padding=1)
        self.f1_head = nn.Linear(blocks[0][0], 1)
        self.f1_features = 1
        if weights == "imagenet":
            self.load_vgg16_bn_encoder()

    def forward(self, x: Tensor):
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"SegNet pools five times by 2: images need at least 32 x 32 "
                             f"pixels, got {tuple(x.shape[-2:])}")
        pooled = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[-2:]
            x, index = F.max_pool2d(x, 2, 2, return_indices=True)
            pooled.append((index, size))
        for block, (index, size) in zip(self.decoder, reversed(pooled), strict=True):
            x = F.max_unpool2d(x, index, 2, 2, output_size=size)
            x = block(x)
        return self.classifier(x), self.f1_head(x.mean(dim=(2, 3)))

    def load_vgg16_bn_encoder(self) -> None:
        """Copy torchvision's ImageNet VGG16-BN convolutions and BNs into the encoder, each
        convolution's bias folded into the running mean of the batch norm after it."""
        if self.encoder[0][0][0].out_channels != 64:
            raise ValueError("ImageNet VGG16 weights fit width 1 only")
        try:
            from torchvision.models import VGG16_BN_Weights, vgg16_bn

            vgg = vgg16_bn(weights=VGG16_BN_Weights.IMAGENET1K_V1)
        except Exception as err:  # no torchvision, no internet, no cached weights
            raise RuntimeError(
                "could not load torchvision's ImageNet VGG16-BN weights "
                f"({type(err).__name__}: {err}); they download to ~/.cache/torch/hub/checkpoints "
                "(vgg16_bn-6c64b313.pth) where the internet allows; use weights=None to train "
                "from scratch") from err
        # VGG16-BN's features and this encoder: conv, BN, ReLU, 13 times (pools between)
        source = [m for m in vgg.features if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
        with torch.no_grad():
            for (conv, norm), (src_conv, src_norm) in zip(
                    ((layer[0], layer[1]) for block in self.encoder for layer in block),
                    zip(source[0::2], source[1::2]), strict=True):
                conv.weight.copy_(src_conv.weight)
                norm.load_state_dict(src_norm.state_dict())
                # the norm's input lacks the bias now: so does the mean it subtracts
                norm.running_mean -= src_conv.bias
