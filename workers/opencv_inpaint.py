"""Classical baselines from OpenCV: Telea's fast marching and Navier-Stokes inpainting.

They need no weights, run anywhere, and are the methods users compare learned ones against.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from workers.base import InpaintMethod, MethodInputs, MethodOutputs, MethodResources
from workers.registry import register_method


@dataclass(frozen=True)
class OpenCVInpaintConfig:
    """Options of the OpenCV methods."""

    radius: float = 3.0  # neighbourhood radius in pixels that each filled pixel draws from


class _OpenCVInpaint(InpaintMethod):
    Config = OpenCVInpaintConfig
    resources = MethodResources(num_cpus=1.0, num_gpus=0.0, batch_size=8)
    generates_whole_image = False
    flag: int

    def __call__(self, inputs: MethodInputs) -> MethodOutputs:
        generated = []
        for image, hole in zip(inputs.images, inputs.holes):
            mask = hole.astype(np.uint8) * 255
            # OpenCV works in BGR; the algorithms are per-channel, but keep its convention anyway.
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            filled = cv2.inpaint(bgr, mask, self.config.radius, self.flag)
            generated.append(cv2.cvtColor(filled, cv2.COLOR_BGR2RGB))
        return MethodOutputs(generated=generated)


@register_method("telea")
class TeleaInpaint(_OpenCVInpaint):
    """Telea 2004, fast marching method (cv2.INPAINT_TELEA)."""

    description = "OpenCV fast-marching inpainting (Telea 2004); CPU, no weights"
    flag = cv2.INPAINT_TELEA


@register_method("ns")
class NavierStokesInpaint(_OpenCVInpaint):
    """Bertalmio et al. 2001, Navier-Stokes based (cv2.INPAINT_NS)."""

    description = "OpenCV Navier-Stokes inpainting (Bertalmio 2001); CPU, no weights"
    flag = cv2.INPAINT_NS
