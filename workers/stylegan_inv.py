"""``stylegan-inv``: He et al. 2022 — encoder-initialised StyleGAN2 W+ inversion of the known region.

Owns the registered method: each input is resized to the generator's size, a ResNet encoder (or
the mean latent) gives the starting W+, :func:`workers.inversion.invert` fits W+ to the known pixels
with the paper's loss, optional §4.5 variants edit the final latent, and the rendered faces are
resized back. The method returns whole generated images; the pipeline Poisson-fuses them.
Inputs of any size or aspect are resized to the generator's square (area down, bicubic up; the
hole nearest-neighbour with any pixel the hole bled into also excluded) and back again. Images more
than twice the generator's size are first cut into crops around the holes by the runner
(`native_size`, set in `setup`; see `stages/crops.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from workers.base import InpaintMethod, MethodInputs, MethodOutputs, MethodResources
from workers.inversion import CHECKPOINT_MODES, InversionConfig, invert
from workers.inversion_losses import LossConfig, load_inversion_loss, required_loss_weights
from workers.latent_edit import make_variants, parse_layers, resolve_directions
from workers.registry import register_method
from workers.weights_files import MissingWeightsError, require_weights


@dataclass(frozen=True)
class StyleGANInvConfig:
    """Options of ``stylegan-inv`` (``--method-opt key=value``)."""

    generator: str = "stylegan2-ffhq-1024.pt"  # StyleGAN2 checkpoint: path, or name in weights folder
    encoder: str = ""  # encoder file from `pipeline train-encoder`; "" = start from the mean latent
    iterations: int = 100  # Adam steps on W+ (the paper's loss converges after ~80)
    lr: float = 0.01  # Adam step size on W+ (Image2StyleGAN's; the paper gives none)
    lambda_vgg: float = 0.4  # λ1, VGG16 feature L1
    lambda_logcosh: float = 1.5  # λ2, Log-Cosh on grey levels
    lambda_msssim: float = 100.0  # λ3, 1 - MS-SSIM
    lambda_lpips: float = 100.0  # λ4, LPIPS
    lpips_net: str = "vgg"  # LPIPS trunk: "vgg" or "alex"
    perceptual_size: int = 256  # VGG/LPIPS see images downsampled to at most this size
    variants: int = 1  # K outputs per input: variant 0 is the inversion, 1..K-1 edits (eq. 12)
    edit_strength: float = 3.0  # |Coef| of eq. 12 (distance in W along unit SeFa directions)
    directions: str = "sefa"  # "sefa" or comma-separated .npy files of [D] or [k, D] directions
    num_directions: int = 5  # k SeFa directions to cycle through
    edit_layers: str = "all"  # W+ layers edited (and factorised by SeFa): "all", "a-b" or "i,j"
    seed: int = 0  # seeds the optimisation
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    # Recompute the generator's activations in backward: "auto" (when the batch's would take
    # over half the free memory), "on" or "off"; the results are the same either way.
    checkpoint: str = "auto"


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area when shrinking (no aliasing), bicubic when enlarging."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if width <= w and height <= h else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interp)


def _to_generator_size(image: np.ndarray, hole: np.ndarray, size: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Image in [-1,1] [3,S,S] and known mask [1,S,S]; a resized pixel counts as known only if no
    hole pixel contributed to it (the zeroed hole would otherwise darken the target's border)."""
    img = _resize(image, size, size).astype(np.float32) / 127.5 - 1
    spill = _resize(hole.astype(np.float32), size, size)
    known = (np.abs(spill) < 1e-3).astype(np.float32)
    return img.transpose(2, 0, 1), known[None]


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3,S,S] in [-1,1] -> [S,S,3] uint8."""
    x = ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return x.permute(1, 2, 0).cpu().numpy()


@register_method("stylegan-inv")
class StyleGANInversion(InpaintMethod):
    """ResNet-predicted W+ refined by the paper's loss on the known region (He et al. 2022)."""

    Config = StyleGANInvConfig
    # On CPU the work is compute-bound and a batch costs more per image than one image alone
    # (bench/stylegan_inv_bench.py: 1.62 vs 1.91 s/iteration/image at 256 px, batch 1 vs 4).
    resources = MethodResources(num_cpus=1, num_gpus=1, batch_size=4, cpu_batch_size=1)
    generates_whole_image = True
    description = ("StyleGAN2 W+ inversion of the known region, encoder-initialised, with "
                   "VGG+LogCosh+MS-SSIM+LPIPS loss and latent-edit variants (He et al. 2022)")

    # ---------------------------------------------------------------- weights
    @classmethod
    def required_weights(cls, config: StyleGANInvConfig | None = None) -> list[str]:
        """Weight files (names in the weights folder, or paths) this configuration needs."""
        config = config or cls.Config()
        names = [config.generator] + ([config.encoder] if config.encoder else [])
        return list(dict.fromkeys(names + required_loss_weights(cls._loss_config(config))))

    @classmethod
    def missing_weights(cls, config: StyleGANInvConfig) -> list[str]:
        """Checked on the driver before any work: one message naming every missing file."""
        try:
            require_weights(cls.required_weights(config))
        except MissingWeightsError as exc:
            return [str(exc)]
        return []

    @staticmethod
    def _loss_config(config: StyleGANInvConfig) -> LossConfig:
        return LossConfig(lambda_vgg=config.lambda_vgg, lambda_logcosh=config.lambda_logcosh,
                          lambda_msssim=config.lambda_msssim, lambda_lpips=config.lambda_lpips,
                          lpips_net=config.lpips_net, perceptual_size=config.perceptual_size)

    def setup(self, device: str) -> None:
        """Check every weight file first (one error lists all missing), then load them."""
        from workers.nets.encoder import load_encoder
        from workers.nets.stylegan2 import load_generator

        cfg = self.config
        if cfg.variants < 1 or cfg.iterations < 0:
            raise ValueError("variants must be >= 1 and iterations >= 0")
        if cfg.checkpoint not in CHECKPOINT_MODES:
            raise ValueError(f"checkpoint must be one of {CHECKPOINT_MODES}, "
                             f"got {cfg.checkpoint!r}")
        files = require_weights(self.required_weights(cfg))
        self.device = torch.device(device)
        self.generator = load_generator(files[cfg.generator], self.device)
        self.native_size = self.generator.size  # larger images are repaired crop by crop
        self.encoder = load_encoder(files[cfg.encoder], self.device) if cfg.encoder else None
        if self.encoder is not None:
            ec = self.encoder.config
            if (ec["n_latent"], ec["style_dim"]) != (self.generator.n_latent,
                                                      self.generator.style_dim):
                raise ValueError(f"encoder {cfg.encoder} predicts W+ "
                                 f"[{ec['n_latent']}, {ec['style_dim']}] but the generator "
                                 f"needs [{self.generator.n_latent}, {self.generator.style_dim}]")
        self.loss = load_inversion_loss(self._loss_config(cfg), self.device)
        self.edit_layers = parse_layers(cfg.edit_layers, self.generator.n_latent)
        self.directions = None
        if cfg.variants > 1:
            self.directions = resolve_directions(self.generator, cfg.directions,
                                                 cfg.num_directions, cfg.edit_layers)

    # ---------------------------------------------------------------- inference
    def _initial_wplus(self, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        g = self.generator
        if self.encoder is None:
            return g.mean_latent()[None, None].expand(target.shape[0], g.n_latent, -1).clone()
        with torch.no_grad():
            return self.encoder(target * known, 1 - known).float()

    def __call__(self, inputs: MethodInputs) -> MethodOutputs:
        cfg = self.config
        if not hasattr(self, "generator"):
            self.setup("cuda" if torch.cuda.is_available() else "cpu")
        g, size = self.generator, self.generator.size
        pairs = [_to_generator_size(im, h, size) for im, h in zip(inputs.images, inputs.holes)]
        target = torch.from_numpy(np.stack([p[0] for p in pairs])).to(self.device)
        known = torch.from_numpy(np.stack([p[1] for p in pairs])).to(self.device)
        init = self._initial_wplus(target, known)
        inv_cfg = InversionConfig(iterations=cfg.iterations, lr=cfg.lr, seed=cfg.seed,
                                  amp=cfg.amp, checkpoint=cfg.checkpoint)
        wplus, generated, history = invert(g, target, known, init, self.loss, inv_cfg)

        out = MethodOutputs(generated=[], extras={"final_loss": [], "initial_loss": [],
                                                  "iterations": [], "edit_coef": []})
        use_amp = cfg.amp and self.device.type == "cuda"
        for i, image in enumerate(inputs.images):
            h, w = image.shape[:2]
            latents, coefs = make_variants(wplus[i], self.directions, cfg.variants,
                                           cfg.edit_strength, self.edit_layers)
            faces = [generated[i]]
            if len(latents) > 1:
                with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                     enabled=use_amp):
                    faces += list(g.synthesis(latents[1:], noise_mode="const").float())
            for v, (face, coef) in enumerate(zip(faces, coefs)):
                out.generated.append(_resize(_to_uint8(face), w, h))
                out.source.append(i)
                out.variant.append(v)
                out.extras["final_loss"].append(float(history[-1, i]))
                out.extras["initial_loss"].append(float(history[0, i]))
                out.extras["iterations"].append(int(cfg.iterations))
                out.extras["edit_coef"].append(float(coef))
        return out
