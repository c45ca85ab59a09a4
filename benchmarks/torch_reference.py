"""Plain PyTorch (eager) reference of the GeWu-Lab audio-visual model and its training step.

Two from-scratch ResNet-18 trunks (audio: 1 input channel, visual: 3, frames
folded into the batch), global average pooling (over time too for the clip),
concatenation and a Linear head — the OGM-GE ``concat`` model — trained with
softmax cross-entropy and SGD (momentum 0.9, weight decay 1e-4), initialised as
the official ``weight_init`` (Kaiming-normal fan_out convs, BatchNorm 1/0,
Xavier-normal Linear with zero bias).

Module and attribute names mirror :mod:`jaxmm.models.resnet` (``conv``, ``bn``,
``blocks.<i>.conv1`` ... ``shortcut_bn``) so weights can be copied across by path.

Usage::

    model = build_torch_av_model(6).to(device)
    opt = make_torch_optimizer(model, lr=1e-3)
    loss = torch_train_step(model, opt, {"audio": a, "visual": v, "label": y})
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

_STAGE_WIDTHS = (64, 128, 256, 512)
_BLOCKS_PER_STAGE = 2


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Conv2d:
    """Bias-free convolution padded by ``kernel // 2``."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual (1x1 conv-BN shortcut when the shape changes).

    Args:
      in_ch: input channels.
      out_ch: output channels.
      stride: stride of the first convolution and of the shortcut.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = _conv(in_ch, out_ch, 3, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = _conv(out_ch, out_ch, 3, 1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if stride != 1 or in_ch != out_ch:
            self.shortcut_conv = _conv(in_ch, out_ch, 1, stride)
            self.shortcut_bn = nn.BatchNorm2d(out_ch)
        else:
            self.shortcut_conv = None
            self.shortcut_bn = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[N, in_ch, H, W]`` to ``[N, out_ch, H / stride, W / stride]``."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x))
        return F.relu(y + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 trunk (NCHW) without pooling or classifier.

    Args:
      in_channels: input image channels.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = _conv(in_channels, _STAGE_WIDTHS[0], 7, 2)
        self.bn = nn.BatchNorm2d(_STAGE_WIDTHS[0])
        blocks = []
        width = _STAGE_WIDTHS[0]
        for stage, out_width in enumerate(_STAGE_WIDTHS):
            for index in range(_BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(width, out_width, 2 if stage > 0 and index == 0 else 1))
                width = out_width
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[N, in_channels, H, W]`` to the feature map ``[N, 512, ~H/32, ~W/32]``."""
        x = F.relu(self.bn(self.conv(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        for block in self.blocks:
            x = block(x)
        return x


class AVClassifier(nn.Module):
    """Audio ResNet-18 + visual ResNet-18 + concatenation + Linear head.

    Args:
      num_classes: number of output logits.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.audio_net = ResNet18(1)
        self.visual_net = ResNet18(3)
        self.head = nn.Linear(2 * _STAGE_WIDTHS[-1], num_classes)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` from audio ``[B, 1, F, T]`` and a clip ``[B, 3, T, H, W]``."""
        a = self.audio_net(audio).mean(dim=(2, 3))
        batch, channels, frames, height, width = visual.shape
        frames_in_batch = visual.transpose(1, 2).reshape(batch * frames, channels, height, width)
        v = self.visual_net(frames_in_batch)
        v = v.reshape(batch, frames, *v.shape[1:]).mean(dim=(1, 3, 4))
        return self.head(torch.cat([a, v], dim=1))


def _weight_init(module: nn.Module) -> None:
    """The official GeWu-Lab ``weight_init`` for one module."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_torch_av_model(num_classes: int, *, seed: int = 0) -> AVClassifier:
    """Builds the reference model on the CPU, initialised as the official code does.

    Args:
      num_classes: number of classes (6 for CREMA-D).
      seed: torch seed for the initialisation.

    Returns:
      The model in training mode; move it with ``.to(device)``.
    """
    torch.manual_seed(seed)
    model = AVClassifier(num_classes)
    model.apply(_weight_init)
    return model.train()


def make_torch_optimizer(model: nn.Module, lr: float = 1e-3) -> torch.optim.SGD:
    """SGD with momentum 0.9 and weight decay 1e-4 over all parameters (the protocol's optimiser)."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)


def torch_train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batch: Mapping[str, torch.Tensor],
    *,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """One training step: forward, mean softmax cross-entropy, backward, optimiser step.

    Args:
      model: an :class:`AVClassifier` (in training mode).
      opt: its optimiser, e.g. from :func:`make_torch_optimizer`.
      batch: ``audio`` ``[B, 1, F, T]``, ``visual`` ``[B, 3, T, H, W]``, ``label`` ``[B]`` int64.
      amp_dtype: ``torch.bfloat16`` runs the forward under autocast (mixed precision);
        ``None`` runs it in float32.

    Returns:
      The loss, a scalar tensor on the model's device (not synchronised).
    """
    opt.zero_grad(set_to_none=True)
    device_type = batch["audio"].device.type
    with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits = model(batch["audio"], batch["visual"])
    loss = F.cross_entropy(logits.float(), batch["label"])
    loss.backward()
    opt.step()
    return loss.detach()
