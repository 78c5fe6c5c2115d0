"""Distribution metrics of a finished run: FID and KID per mask-ratio bucket (and over all rows).

Owns :class:`FidConfig`, :func:`bucket_fid_kid` and the helpers behind it. PSNR/SSIM/L1 are scored
per row during the run (``stages.metrics``); FID and KID compare *sets* of images, so they can only
be computed afterwards, from the results folder, which is why they live here and not in a stage.

What is compared: for each bucket, the ``ok`` outputs against the ground truths of the *same rows*
(joined by id from the manifest named in ``OUT/run.json``; rows without a ground truth are left out
and counted as ``no_ground_truth``). Features come from torch-fidelity's InceptionV3
(``inception-v3-compat``, the 2048-d pool features, which resizes to 299x299 itself with the
TF1-compatible bilinear filter), loaded from the local weight file
``weights-inception-2015-12-05-6726825d.pth`` so nothing is ever downloaded. The metric formulas are
torch-fidelity's own (``fid_statistics_to_metric``, ``kid_features_to_metric``). Instead of one
``calculate_metrics`` call per bucket, each image's features are extracted once and then reused by
every bucket it belongs to and by "all" (half the Inception work), and images are batched by size
so sets of mixed sizes need no resizing of ours. torch-fidelity's file cache is never used, so
nothing is written outside OUT (nothing at all, in fact). Ray is never imported.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from manifests import schema
from manifests.io import read_manifest
from pipeline.outputs import output_uri
from pipeline.fid_intervals import BootstrapConfig, bootstrap_fid_kid
from pipeline.results_store import ResultsStore
from stages.imageio import decode_image, read_bytes
from workers.weights_files import require_weight

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
FEATURE_EXTRACTOR = "inception-v3-compat"
ALL = "all"
NO_GROUND_TRUTH = "no_ground_truth"


@dataclass(frozen=True)
class FidConfig:
    """How FID/KID are computed.

    - ``device``: "cpu", "cuda" or "auto" (cuda when available). torch-fidelity itself defaults to
      CUDA, so the choice is always passed explicitly.
    - ``kid_subset_size``: torch-fidelity's default 1000, but a bucket with n < 1000 images uses
      ``min(1000, n)`` (torch-fidelity refuses subsets larger than the set); the size used is reported.
    - ``min_images_warning``: buckets smaller than this get a warning. FID is biased upward for small
      sets (noticeably below ~2048 images, the feature dimension: the covariance is rank-deficient),
      so such values are only comparable between runs with the same number of images per bucket.
      KID is unbiased but its std grows as n shrinks.
    """

    device: str = "auto"
    batch_size: int = 32
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    min_images_warning: int = 50
    feature_layer: str = "2048"
    rng_seed: int = 2020
    bootstrap: BootstrapConfig = BootstrapConfig()  # 95% intervals of FID and KID (pipeline.fid_intervals)

    def use_cuda(self) -> bool:
        """Resolve ``device`` to torch-fidelity's ``cuda`` flag."""
        if self.device == "auto":
            return torch.cuda.is_available()
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu, cuda or auto, not {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda requested but torch sees no CUDA device")
        return self.device == "cuda"


def kid_subset_size_for(n: int, config: FidConfig) -> int:
    """KID subset size for a set of n images: the configured size, capped at n."""
    return max(1, min(config.kid_subset_size, n))


def inception_extractor(config: FidConfig, weights_path: Path | None = None) -> torch.nn.Module:
    """torch-fidelity's InceptionV3 from the local weight file (MissingWeightsError when absent)."""
    from torch_fidelity.utils import create_feature_extractor

    path = weights_path or require_weight(INCEPTION_WEIGHTS)
    return create_feature_extractor(FEATURE_EXTRACTOR, [config.feature_layer], cuda=config.use_cuda(),
                                    feature_extractor_weights_path=str(path), verbose=False)


def load_uint8_chw(uri: str) -> torch.Tensor:
    """An image file as the ``uint8 [3,H,W]`` tensor torch-fidelity expects."""
    array = decode_image(read_bytes(uri), uri)  # [H,W,3] uint8 RGB
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def extract_features(uris: list[str], extractor: torch.nn.Module, config: FidConfig) -> dict[str, torch.Tensor]:
    """Feature vector per distinct uri, images batched by size so no resize of ours is needed."""
    cuda = config.use_cuda()
    by_size: dict[tuple[int, ...], list[tuple[str, torch.Tensor]]] = defaultdict(list)
    features: dict[str, torch.Tensor] = {}

    def flush(items: list[tuple[str, torch.Tensor]]) -> None:
        batch = torch.stack([tensor for _, tensor in items])
        if cuda:
            batch = batch.cuda(non_blocking=True)
        with torch.no_grad():
            (out,) = extractor(batch)
        for (uri, _), row in zip(items, out.detach().cpu()):
            features[uri] = row

    for uri in dict.fromkeys(uris):
        tensor = load_uint8_chw(uri)
        group = by_size[tuple(tensor.shape)]
        group.append((uri, tensor))
        if len(group) >= config.batch_size:
            flush(group)
            group.clear()
    for group in by_size.values():
        if group:
            flush(group)
    return features


def fid_kid_from_features(feats1: torch.Tensor, feats2: torch.Tensor, config: FidConfig) -> dict:
    """FID and KID (mean, std) of two ``[n,D]`` feature sets with torch-fidelity's formulas."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    n = min(len(feats1), len(feats2))
    fid = fid_statistics_to_metric(fid_features_to_statistics(feats1), fid_features_to_statistics(feats2),
                                   verbose=False)[KEY_METRIC_FID]
    subset = kid_subset_size_for(n, config)
    kid = kid_features_to_metric(feats1, feats2, kid_subsets=config.kid_subsets, kid_subset_size=subset,
                                 rng_seed=config.rng_seed, verbose=False)
    return {"fid": float(fid), "kid_mean": float(kid[KEY_METRIC_KID_MEAN]),
            "kid_std": float(kid[KEY_METRIC_KID_STD]), "kid_subset_size": subset}


def _pairs(out: Path) -> tuple[dict[str, list[tuple[str, str]]], int]:
    """Per bucket, (output uri, gt uri) of the ok rows; and how many ok rows had no ground truth."""
    table = ResultsStore(out / "results").read(columns=[schema.ID, schema.STATUS, schema.OUTPUT, schema.BUCKET])
    if table is None:
        raise FileNotFoundError(f"{out / 'results'}: no results parts")
    run_json = out / "run.json"
    if not run_json.exists():
        raise FileNotFoundError(f"{run_json}: missing (it names the manifest the ground truths come from)")
    manifest_path = Path(json.loads(run_json.read_text())["config"]["manifest"])
    if not manifest_path.is_absolute():
        manifest_path = (out / manifest_path) if (out / manifest_path).exists() else manifest_path
    manifest = read_manifest(manifest_path)
    gts: dict[str, str] = {}
    if schema.GT in manifest.column_names:
        for id_, gt in zip(manifest[schema.ID].to_pylist(), manifest[schema.GT].to_pylist()):
            if gt:
                gts[id_] = gt
    pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    no_gt = 0
    rows = table.to_pylist()
    for row in rows:
        if row[schema.STATUS] != schema.STATUS_OK or not row[schema.OUTPUT]:
            continue
        gt = gts.get(row[schema.ID])
        if gt is None:
            no_gt += 1
            continue
        pair = (output_uri(out, row[schema.OUTPUT]), gt)
        pairs[ALL].append(pair)
        pairs[row[schema.BUCKET] or "unknown"].append(pair)
    return pairs, no_gt


def bucket_fid_kid(out: Path, config: FidConfig = FidConfig()) -> dict[str, dict]:
    """FID/KID of ok outputs vs ground truths per bucket and for "all".

    Each value: ``{"n", "fid", "kid_mean", "kid_std", "kid_subset_size", "warning"}`` and the 95%
    intervals ``fid_low/fid_high/kid_low/kid_high`` (metrics None when n < 2). The key ``"no_ground_truth"`` maps to ``{"n": count}`` of ok rows left out for
    lack of a ground truth. Raises MissingWeightsError before reading any image when the Inception
    weight file is absent.
    """
    out = Path(out)
    weights = require_weight(INCEPTION_WEIGHTS)
    config.use_cuda()  # fail early on a bad device
    pairs, no_gt = _pairs(out)
    sized = {bucket: items for bucket, items in pairs.items() if len(items) >= 2}
    features: dict[str, torch.Tensor] = {}
    if sized:
        extractor = inception_extractor(config, weights)
        uris = [uri for items in sized.values() for pair in items for uri in pair]
        features = extract_features(uris, extractor, config)
    report: dict[str, dict] = {}
    ordered = ([ALL] if ALL in pairs else []) + sorted(b for b in pairs if b != ALL)
    for bucket in ordered:
        items = pairs[bucket]
        n = len(items)
        entry: dict = {"n": n, "fid": None, "kid_mean": None, "kid_std": None, "kid_subset_size": None,
                       "warning": None}
        if n < 2:
            entry["warning"] = f"{n} image(s): FID/KID need at least 2"
        else:
            outputs = torch.stack([features[o] for o, _ in items])
            truths = torch.stack([features[g] for _, g in items])
            entry.update(fid_kid_from_features(outputs, truths, config))
            entry.update(bootstrap_fid_kid(outputs.numpy(), truths.numpy(), entry["fid"], entry["kid_mean"],
                                           config.bootstrap))
            if n < config.min_images_warning:
                entry["warning"] = (f"only {n} images (< {config.min_images_warning}): FID is biased upward "
                                    f"for small sets; compare only with runs of the same size")
        report[bucket] = entry
    report[NO_GROUND_TRUTH] = {"n": no_gt}
    return report
