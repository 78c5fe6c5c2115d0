"""The paper's latent predictor: a ResNet50 that maps a masked face to a W+ starting point (§3).

Owns :class:`LatentEncoder` and its file format ``{"state_dict": ..., "config": {...}}`` (read
with ``weights_only=True``). The trunk is torchvision's ResNet (50 by default, as in the paper;
18/34 allowed for quick experiments and tests) taking 4 channels: the ImageNet-normalised RGB with
the hole zeroed, plus the hole mask. The mask channel is what lets the network tell "unknown"
from "genuinely dark" pixels — without it a zeroed hole looks like a black object to explain.
The head predicts W+ [n_latent, style_dim] as an offset from the generator's mean latent (stored
in the file), zero-initialised so an untrained encoder starts exactly at the mean face.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.inversion_losses import IMAGENET_MEAN, IMAGENET_STD

BACKBONES = ("resnet18", "resnet34", "resnet50")
# torchvision's ImageNet ResNet50 files (V2 and V1 weights); either may initialise the trunk.
RESNET50_FILES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")


def encoder_input_size(generator_size: int) -> int:
    """256, or the generator size when smaller (no point upsampling a 32 px test face)."""
    return min(256, int(generator_size))


class LatentEncoder(nn.Module):
    """Masked image [B,3,H,W] in [-1,1] + hole [B,1,H,W] -> W+ [B, n_latent, style_dim]."""

    def __init__(self, n_latent: int, style_dim: int, input_size: int = 256,
                 backbone: str = "resnet50", latent_avg: Tensor | None = None):
        super().__init__()
        import torchvision

        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        self.config: dict[str, Any] = {"n_latent": int(n_latent), "style_dim": int(style_dim),
                                       "input_size": int(input_size), "backbone": backbone}
        trunk = getattr(torchvision.models, backbone)(weights=None)
        trunk.conv1 = nn.Conv2d(4, 64, kernel_size=7, stride=2, padding=3, bias=False)
        feat = trunk.fc.in_features
        trunk.fc = nn.Identity()
        self.trunk = trunk
        self.head = nn.Linear(feat, n_latent * style_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        avg = torch.zeros(style_dim) if latent_avg is None else latent_avg.reshape(style_dim)
        self.register_buffer("latent_avg", avg.detach().float().clone())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def load_imagenet_trunk(self, state: dict[str, Tensor]) -> None:
        """Initialise from a torchvision ImageNet state dict (transfer learning, as the paper).

        conv1's RGB filters are copied and the mask channel's filters start at zero, so the
        pretrained features are undisturbed at the start; the classifier is dropped.
        """
        own = self.trunk.state_dict()
        new = {k: v for k, v in state.items() if k in own and not k.startswith("fc.")}
        if "conv1.weight" in state:
            w = torch.zeros_like(own["conv1.weight"])
            w[:, :3] = state["conv1.weight"]
            new["conv1.weight"] = w
        missing = [k for k in own if k not in new]
        if missing:
            raise ValueError(f"ImageNet state dict lacks {len(missing)} trunk tensors, "
                             f"e.g. {missing[:3]}")
        self.trunk.load_state_dict(new)

    def prepare(self, image: Tensor, hole: Tensor) -> Tensor:
        """The 4-channel network input at ``input_size`` (bilinear image, nearest mask)."""
        size = self.config["input_size"]
        known = 1 - hole.float()
        x = (image.float() + 1) * 0.5
        x = ((x - self.mean) / self.std) * known  # hole = 0 = the dataset mean colour
        inp = torch.cat([x, hole.float()], dim=1)
        if inp.shape[-1] != size or inp.shape[-2] != size:
            rgb = F.interpolate(inp[:, :3], size=(size, size), mode="bilinear",
                                align_corners=False, antialias=True)
            msk = F.interpolate(inp[:, 3:], size=(size, size), mode="nearest")
            inp = torch.cat([rgb, msk], dim=1)
        return inp

    def forward(self, image: Tensor, hole: Tensor) -> Tensor:
        feats = self.trunk(self.prepare(image, hole))
        offset = self.head(feats).view(-1, self.config["n_latent"], self.config["style_dim"])
        return self.latent_avg + offset

    # ---------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": self.state_dict(), "config": dict(self.config)}, path)
        return path


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> LatentEncoder:
    """Read an encoder file (weights_only); eval mode, frozen."""
    path = Path(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a facefill encoder file (expected state_dict and config)")
    cfg = ckpt["config"]
    enc = LatentEncoder(cfg["n_latent"], cfg["style_dim"], cfg["input_size"],
                        cfg.get("backbone", "resnet50"))
    enc.load_state_dict(ckpt["state_dict"])
    enc.config.update(cfg)
    return enc.to(device).eval().requires_grad_(False)
