"""Run a method over a stage batch: skip failed rows, isolate a row that breaks the method.

When a batch call raises, the rows are retried one at a time so only the bad row becomes an error
row; the others still get their result.

Methods with a `native_size` get images much larger than it crop by crop (`stages/crops.py`): each
crop is one input of the method call, and the crops' results are pasted back into a full-size
`generated` image (the input outside the crops), so fusion works at full resolution.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from stages.batch import EMPTY_IMAGE, Batch, batch_len, has_pixels, is_ok, take_rows, to_column
from stages.crops import Box, needs_crops, paste_crops, plan_crops, prepare_crop
from workers.base import InpaintMethod, MethodInputs, MethodOutputs
from workers.registry import get_method


def pick_device(num_gpus: float) -> str:
    """'cuda' when the method asked for a GPU and this process sees one, else 'cpu'."""
    if num_gpus <= 0:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class MethodRunner:
    """Callable over stage batches; holds one set-up method instance (one per actor)."""

    def __init__(self, method_name: str, config: Any, device: str | None = None) -> None:
        cls = get_method(method_name)
        self.method: InpaintMethod = cls(config)
        self.device = device or pick_device(cls.resources.num_gpus)
        self.method.setup(self.device)

    def _run(self, batch: Batch, rows: list[int]) -> MethodOutputs:
        inputs = MethodInputs(
            ids=[str(batch["id"][i]) for i in rows],
            images=[np.asarray(batch["image"][i]) for i in rows],
            holes=[np.asarray(batch["hole"][i]).astype(bool) for i in rows],
        )
        outputs = self._call(inputs)
        for k, generated in enumerate(outputs.generated):
            expected = inputs.images[outputs.source[k]].shape
            if not has_pixels(generated) or generated.shape != expected or generated.dtype != np.uint8:
                raise ValueError(f"method returned {getattr(generated, 'shape', None)} "
                                 f"{getattr(generated, 'dtype', None)}, expected {expected} uint8")
        return outputs

    def _call(self, inputs: MethodInputs) -> MethodOutputs:
        """The method on `inputs`, crop by crop for images much larger than its native size."""
        native = getattr(self.method, "native_size", None)
        plans: list[list[Box] | None] = []
        ids, images, holes, owners = [], [], [], []  # owners: (input index, crop index or None)
        for k, (image, hole) in enumerate(zip(inputs.images, inputs.holes)):
            h, w = hole.shape
            boxes = plan_crops(hole, native) if needs_crops(h, w, native) else None
            if not boxes or boxes == [(0, 0, w, h)]:
                boxes = None
            plans.append(boxes)
            for j, box in enumerate(boxes or [None]):
                crop, crop_hole = (image, hole) if box is None else prepare_crop(image, hole, box, native)
                ids.append(inputs.ids[k])
                images.append(crop)
                holes.append(crop_hole)
                owners.append((k, None if box is None else j))
        if all(plan is None for plan in plans):
            return self.method(inputs)
        sub = MethodInputs(ids=ids, images=images, holes=holes)
        outs = self.method(sub)
        for g, s in zip(outs.generated, outs.source):
            if not has_pixels(g) or g.shape != images[s].shape or g.dtype != np.uint8:
                raise ValueError(f"method returned {getattr(g, 'shape', None)} {getattr(g, 'dtype', None)} "
                                 f"for a crop, expected {images[s].shape} uint8")
        # (input, variant) -> crop index -> output index
        found: dict[tuple[int, int], dict[int | None, int]] = {}
        for o, (s, v) in enumerate(zip(outs.source, outs.variant)):
            k, j = owners[s]
            found.setdefault((k, v), {})[j] = o
        result = MethodOutputs(generated=[], source=[], variant=[],
                               extras={key: [] for key in outs.extras})
        for (k, v), by_crop in sorted(found.items()):
            boxes = plans[k]
            if boxes is None:
                first = by_crop[None]
                result.generated.append(outs.generated[first])
                picked = [first]
            else:
                if len(by_crop) != len(boxes):
                    raise ValueError(f"method returned variant {v} for {len(by_crop)} of {len(boxes)} crops")
                picked = [by_crop[j] for j in range(len(boxes))]
                result.generated.append(paste_crops(inputs.images[k], boxes,
                                                    [outs.generated[o] for o in picked]))
            result.source.append(k)
            result.variant.append(v)
            for key, column in outs.extras.items():  # per image: mean of floats over crops, else the first
                values = [column[o] for o in picked]
                floats = all(isinstance(x, (float, np.floating)) for x in values)
                result.extras[key].append(float(np.mean(values)) if floats and len(values) > 1 else values[0])
        return result

    def _run_isolating(self, batch: Batch, rows: list[int]) -> tuple[list[tuple[int, int, np.ndarray, dict]], dict[int, str]]:
        """(input row, variant, generated, extras) per output, and errors by input row."""
        try:
            outs = self._run(batch, rows)
            return [(rows[s], v, g, {k: col[j] for k, col in outs.extras.items()})
                    for j, (s, v, g) in enumerate(zip(outs.source, outs.variant, outs.generated))], {}
        except Exception as exc:
            if len(rows) == 1:
                return [], {rows[0]: f"inpaint ({self.method.name}): {type(exc).__name__}: {exc}"}
        results, errors = [], {}
        for row in rows:
            got, err = self._run_isolating(batch, [row])
            results += got
            errors.update(err)
        return results, errors

    def __call__(self, batch: Batch) -> Batch:
        """Adds `generated` and `variant` (and any method extras); one output row per variant."""
        start = time.perf_counter()
        n = batch_len(batch)
        good = [i for i in range(n) if is_ok(batch, i)]
        produced, errors = self._run_isolating(batch, good) if good else ([], {})
        elapsed = (time.perf_counter() - start) / max(1, len(good))

        order, generated, variants, extras = [], [], [], []
        by_row: dict[int, list[tuple[int, np.ndarray, dict]]] = {}
        for row, variant, image, extra in produced:
            by_row.setdefault(row, []).append((variant, image, extra))
        for i in range(n):
            for variant, image, extra in by_row.get(i, [(0, EMPTY_IMAGE, {})]):
                order.append(i)
                generated.append(image)
                variants.append(variant)
                extras.append(extra)
        out = take_rows(batch, order)
        statuses, messages = list(out["status"]), list(out["error"])
        for k, i in enumerate(order):
            if i in errors:
                statuses[k], messages[k] = "error", errors[i]
        out.update(generated=to_column(generated), variant=to_column(variants),
                   status=to_column(statuses), error=to_column(messages),
                   t_inpaint=to_column([elapsed if i in good else 0.0 for i in order]))
        for key in sorted({key for extra in extras for key in extra}):
            out[key] = to_column([extra.get(key) for extra in extras])
        return out
