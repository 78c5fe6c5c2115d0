"""Where facefill finds weight files, and the error that says how to get a missing one.

Owns :func:`weights_home`, :func:`find_weight`, :func:`require_weight` and
:func:`require_weights`. Nothing here downloads: workers run without network, so every weight
file (generators, encoders, the torchvision VGG16 / AlexNet / ResNet50 ImageNet backbones) must be
placed in ``$FACEFILL_HOME/weights`` beforehand (default ``~/.cache/facefill/weights``), or already
sit in torchvision's own cache (``$TORCH_HOME/hub/checkpoints``), which is accepted too.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# torchvision's download addresses, quoted in the error so users can fetch files by hand.
TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"
TORCHVISION_FILES = ("vgg16-397923af.pth", "alexnet-owt-7be5be79.pth", "resnet50-11ad3fa6.pth",
                     "resnet50-0676ba61.pth")
TORCHVISION_URLS: dict[str, str] = {name: TORCHVISION_BASE_URL + name for name in TORCHVISION_FILES}


class MissingWeightsError(FileNotFoundError):
    """One or more weight files are absent; the message says where we looked and how to fix it."""

    def __init__(self, missing: list[str], searched: list[Path]):
        self.missing = list(missing)
        self.searched = list(searched)
        super().__init__(self._message())

    def _message(self) -> str:
        folder = self.searched[0] if self.searched else weights_home() / "weights"
        lines = [f"missing weight file(s): {', '.join(self.missing)}",
                 f"looked in: {', '.join(str(p) for p in self.searched)}"]
        for name in self.missing:
            if _is_explicit_path(name):
                lines.append(f"  {name}: the path given does not exist")
                continue
            how = (f"  {name}: run `pipeline weights import {name} /path/to/{name}` "
                   f"or copy it into {folder}")
            if name in TORCHVISION_URLS:
                how += f" (torchvision download: {TORCHVISION_URLS[name]})"
            lines.append(how)
        return "\n".join(lines)


def weights_home() -> Path:
    """``$FACEFILL_HOME`` or ``~/.cache/facefill``; weight files live in its ``weights/`` folder."""
    home = os.environ.get("FACEFILL_HOME")
    return Path(home).expanduser() if home else Path("~/.cache/facefill").expanduser()


def weights_dir() -> Path:
    """The folder weight files are looked up in first."""
    return weights_home() / "weights"


def torch_checkpoints_dir() -> Path:
    """torchvision's download cache (``torch.hub.get_dir()/checkpoints``), read but never written.

    Worked out as torch.hub does, without importing torch, so the CLI stays quick to start.
    """
    if os.environ.get("TORCH_HOME"):
        hub = Path(os.environ["TORCH_HOME"]).expanduser() / "hub"
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
        hub = Path(cache).expanduser() / "torch" / "hub"
    return hub / "checkpoints"


def search_dirs() -> list[Path]:
    return [weights_dir(), torch_checkpoints_dir()]


def _is_explicit_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith("~")


def find_weight(name: str) -> Path | None:
    """The file for ``name``: an existing path as given, else a file of that name in the folders."""
    given = Path(name).expanduser()
    if given.is_file():
        return given
    if _is_explicit_path(name):
        return None
    for folder in search_dirs():
        if (folder / name).is_file():
            return folder / name
    return None


def require_weights(names: Iterable[str]) -> dict[str, Path]:
    """Resolve every name; one :class:`MissingWeightsError` lists all that are missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in dict.fromkeys(names):  # de-duplicated, order kept
        path = find_weight(name)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise MissingWeightsError(missing, search_dirs())
    return found


def require_weight(name: str) -> Path:
    """The path of one weight file, or :class:`MissingWeightsError` saying how to get it."""
    return require_weights([name])[name]
