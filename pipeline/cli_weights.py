"""`pipeline weights list|fetch|import|path`: install and inspect the checkpoints facefill uses.

Cheap to import (typer and the standard library only, no torch): it is loaded with the CLI.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from pipeline import weights_registry as wr

weights_app = typer.Typer(
    help="Weight files (checkpoints): list, download, import a local copy, print the path.\n\n"
    "Files live in $FACEFILL_HOME/weights (default ~/.cache/facefill/weights); torchvision's cache "
    f"($TORCH_HOME/hub/checkpoints) is read too. Set {wr.MIRROR_ENV} to download from a mirror.\n\n"
    "Example:\n\n"
    "  pipeline weights list --verify",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _usage_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _failure(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _checked_name(name: str) -> str:
    try:
        wr.WeightSpec(name=name, url=None)
    except ValueError as exc:
        _usage_error(str(exc))
    return name


def _registry_spec(name: str) -> wr.WeightSpec:
    if name not in wr.REGISTRY:
        _usage_error(f"'{name}' is not in the registry; known: {', '.join(wr.REGISTRY)} "
                     f"(other files: `pipeline weights import {name} PATH`)")
    return wr.REGISTRY[name]


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _size_text(spec: wr.WeightSpec, path: Optional[Path]) -> str:
    if spec.size is not None:
        return _human(spec.size)
    if path is not None:
        return _human(path.stat().st_size)
    if spec.approx_mb is not None:
        return f"~{spec.approx_mb:.0f} MB"
    return "?"


@weights_app.command("list")
def list_weights(
    verify: bool = typer.Option(False, "--verify", help="Hash every present file and compare it with "
                                "its checksum (slow for large files); without it only existence and "
                                "known sizes are checked."),
) -> None:
    """Table of every registered checkpoint: name, what uses it, size, status, how it is checked.

    Status: missing | present (not hashed) | verified | verified (prefix) | verified (recorded
    sha256) | present (no checksum) | checksum mismatch. Exit 1 when a file fails its check.

    Example:

      pipeline weights list --verify
    """
    rows = [("NAME", "USED BY", "SIZE", "STATUS", "CHECK")]
    problems = 0
    for spec in wr.REGISTRY.values():
        path = wr.locate(spec.name)
        if verify and path is not None:
            result = wr.verify(path, spec)
            status = result.status
        else:
            status = wr.quick_status(path, spec)
        if status == "checksum mismatch":
            problems += 1
        if path is not None and path.parent != wr.weights_dir():
            status += " (torch cache)"
        rows.append((spec.name, spec.used_by, _size_text(spec, path), status, spec.check))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    typer.echo(f"\nfolder: {wr.weights_dir()}")
    typer.echo("sha256 prefix: only the first hex digits of the sha256 are known (torchvision's file "
               "names); they are what is verified, as torchvision does.")
    typer.echo("unverified: no published checksum; the sha256 of the installed file is recorded in "
               "NAME.sha256 so later changes are detected.")
    if not verify:
        typer.echo("present = not hashed; `pipeline weights list --verify` checks checksums.")
    if problems:
        raise typer.Exit(1)


class _ProgressBar:
    """A typer progress bar on stderr, opened once the total size is known."""

    def __init__(self, label: str):
        self.label = label
        self.bar = None
        self.shown = 0

    def __call__(self, done: int, total: Optional[int]) -> None:
        if self.bar is None:
            if total is None:
                return
            self.bar = typer.progressbar(length=total, label=f"{self.label} ({_human(total)})",
                                         file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@weights_app.command("fetch")
def fetch_weights(
    names: Optional[List[str]] = typer.Argument(None, metavar="NAME...", help="Registry names (see `pipeline weights list`)."),
    all_: bool = typer.Option(False, "--all", help="Every entry that has a download source."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file that fails its checksum."),
    timeout: float = typer.Option(wr.DEFAULT_TIMEOUT, help="Seconds to wait for a connection or data."),
) -> None:
    """Download checkpoints into the weights folder, with a progress bar.

    An interrupted download is kept as NAME.part and resumed (HTTP Range) by running the command
    again; the file is renamed into place only after its checksum matched (a mismatching download
    is deleted). A file already present and verified is left alone. Downloads come from the
    registry's address, or from the mirror in $FACEFILL_WEIGHTS_BASE_URL (URL prefix; the file
    name is kept), e.g. for air-gapped sites.

    Example:

      pipeline weights fetch vgg16-397923af.pth alexnet-owt-7be5be79.pth
    """
    if all_:
        specs = [s for s in wr.REGISTRY.values() if wr.source_url(s)]
    elif names:
        specs = [_registry_spec(name) for name in names]
    else:
        _usage_error("name the files to fetch (see `pipeline weights list`) or pass --all")
    failed = 0
    for spec in specs:
        bar = _ProgressBar(spec.name)
        try:
            path = wr.fetch(spec, wr.weights_dir(), bar, timeout=timeout, force=force)
        except wr.WeightsError as exc:
            bar.close()
            typer.echo(f"error: {exc}", err=True)
            failed += 1
            continue
        bar.close()
        typer.echo(f"{path}  ({_installed_check(spec, path)})")
    if failed:
        raise typer.Exit(1)


def _installed_check(spec: wr.WeightSpec, path: Path) -> str:
    if spec.sha256:
        return "sha256 verified"
    if spec.sha256_prefix:
        return f"sha256 prefix {spec.sha256_prefix} verified"
    recorded = wr.read_sidecar(path)
    if recorded:
        return f"no checksum known: sha256 {recorded} recorded in {wr.sidecar_path(path).name}"
    return "no checksum known"


@weights_app.command("import")
def import_weights(
    name: str = typer.Argument(..., help="Registry name (or the file name of another weight file)."),
    path: Path = typer.Argument(..., help="The local file to copy in."),
) -> None:
    """Copy a local file into the weights folder after checking it against the registry.

    A file that fails its checksum is refused and nothing is installed; the copy is renamed into
    place only when complete. For entries without a checksum (the StyleGAN2 generators, names not
    in the registry such as your encoders) any file is accepted and its sha256 recorded in
    NAME.sha256, so that `pipeline weights list --verify` notices later changes.

    Example:

      pipeline weights import stylegan2-ffhq-256.pt ~/Downloads/stylegan2-ffhq-256.pt
    """
    spec = wr.spec_for(_checked_name(name))
    if name not in wr.REGISTRY:
        typer.echo(f"note: '{name}' is not in the registry; importing it without a checksum", err=True)
    try:
        final = wr.import_file(spec, path, wr.weights_dir())
    except wr.WeightsError as exc:
        _failure(str(exc))
    typer.echo(f"{final}  ({_installed_check(spec, final)})")


@weights_app.command("path")
def path_of_weights(
    name: str = typer.Argument(..., help="Weight file name (registry entry or any file in the folder)."),
) -> None:
    """Print where a weight file is found (the folders the methods search, in order).

    Exit 1, naming the command that installs it, when it is missing.

    Example:

      pipeline weights path vgg16-397923af.pth
    """
    spec = wr.spec_for(_checked_name(name))
    found = wr.locate(name)
    if found is None:
        where = ", ".join(str(p) for p in wr.search_dirs())
        _failure(f"{name} is missing (looked in {where}); run `{wr.fix_command(spec)}`")
    typer.echo(str(found))
