"""Which per-image metrics a run computes: `--lpips` resolved against the installed weights.

Resolved once on the driver, before any work, so a run that asks for LPIPS without its trunk's
weights stops with the command that installs them, and `auto` never half-scores a run: it is
decided for the whole run and recorded in run.json (and in the config hash when LPIPS is on).
"""
from __future__ import annotations

from dataclasses import dataclass

from stages.metrics import LPIPS_BACKBONE_FILES, ScoreConfig
from workers.weights_files import MissingWeightsError, find_weight, require_weight

LPIPS_CHOICES = ("auto", "alex", "vgg", "off")


class ScoringError(ValueError):
    """`--lpips` names an unknown trunk or one whose weights are missing."""


@dataclass(frozen=True)
class ResolvedScoring:
    """The run's metric settings: the `--lpips` value to record, the stage config, and a note."""

    lpips: str  # alex | vgg | off
    config: ScoreConfig
    note: str | None = None  # why LPIPS is off under auto


def resolve_scoring(lpips: str) -> ResolvedScoring:
    """`auto` is alex when its trunk is installed, else off (with a note saying how to enable it)."""
    if lpips not in LPIPS_CHOICES:
        raise ScoringError(f"--lpips must be one of {', '.join(LPIPS_CHOICES)}, not {lpips!r}")
    if lpips == "off":
        return ResolvedScoring("off", ScoreConfig())
    if lpips == "auto":
        found = find_weight(LPIPS_BACKBONE_FILES["alex"])
        if found is None:
            return ResolvedScoring("off", ScoreConfig(), note=(
                f"LPIPS not computed: {LPIPS_BACKBONE_FILES['alex']} is not installed "
                f"(`pipeline weights fetch {LPIPS_BACKBONE_FILES['alex']}`, or --lpips off to silence this)"))
        return ResolvedScoring("alex", ScoreConfig(lpips_net="alex", lpips_backbone=str(found)))
    try:
        path = require_weight(LPIPS_BACKBONE_FILES[lpips])
    except MissingWeightsError as exc:
        raise ScoringError(f"--lpips {lpips} cannot start:\n{exc}") from exc
    return ResolvedScoring(lpips, ScoreConfig(lpips_net=lpips, lpips_backbone=str(path)))
