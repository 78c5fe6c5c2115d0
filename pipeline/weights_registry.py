"""The checkpoints facefill uses: where each comes from, how to check it, and how to install it.

Owns :class:`WeightSpec`, :data:`REGISTRY`, :func:`verify`, :func:`fetch` and :func:`import_file`
(the engine of ``pipeline weights list|fetch|import|path``). Standard library only, and no torch:
the CLI imports this module at start-up.

Files go to the weights folder the workers read (``$FACEFILL_HOME/weights``, default
``~/.cache/facefill/weights``; see :mod:`workers.weights_files`). A file only ever appears under
its final name complete and checked: downloads grow ``NAME.part`` (resumed with an HTTP Range
request when a download is interrupted), imports are copied to a temporary file, and either is
renamed into place with :func:`os.replace` after its checksum matched.

Checksums. torchvision file names embed the first 8 hex digits of the file's sha256
(``vgg16-397923af.pth``), and torchvision's own download check verifies only that prefix; where
the full sha256 is not known the entry stores the prefix (``sha256_prefix``) and it is what is
verified. Entries with no known checksum at all (the StyleGAN2 generators, torch-fidelity's
Inception) are accepted as given, and the sha256 of the installed file is recorded in a sidecar
``NAME.sha256`` so that ``list --verify`` notices when the file changes afterwards.

Mirror. ``$FACEFILL_WEIGHTS_BASE_URL`` (e.g. ``http://mirror.lan/facefill``) replaces everything
before the file name of every download address, for air-gapped sites with a local mirror (and
for the tests); with it set, entries without a public address are fetched from it too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import re
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

# The folders have one definition, shared with the methods that read the files.
from workers.weights_files import TORCHVISION_BASE_URL, search_dirs, weights_dir  # noqa: E402

MIRROR_ENV = "FACEFILL_WEIGHTS_BASE_URL"
CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0  # seconds, per connect and per read (urllib's socket timeout)
USER_AGENT = "facefill-weights/1"

# progress(done_bytes, total_bytes_or_None), called as the file grows (done includes resumed bytes)
Progress = Callable[[int, "int | None"], None]


class WeightsError(Exception):
    """A weight file could not be installed; the message says what and how to fix it."""


class FetchError(WeightsError):
    """A download failed (unreachable, HTTP error, interrupted, no source)."""


class ChecksumMismatchError(WeightsError):
    """A file is not the one the registry describes (size or sha256 differ)."""


def _check_plain_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ValueError(f"weight name must be a plain file name, not {name!r}")


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """One checkpoint. ``sha256``: full hex digest when known; else ``sha256_prefix``: the digest's
    known first hex digits (torchvision's file-name convention); neither: not checkable (the
    sha256 of the installed file is recorded in a ``NAME.sha256`` sidecar instead)."""

    name: str
    url: str | None
    sha256: str | None = None
    size: int | None = None  # bytes, when known exactly; checked before hashing
    used_by: str = ""
    note: str = ""
    sha256_prefix: str | None = None
    approx_mb: float | None = None  # shown by `list` when the exact size is unknown

    def __post_init__(self):
        _check_plain_name(self.name)
        for value in (self.sha256, self.sha256_prefix):
            if value is not None and not re.fullmatch(r"[0-9a-f]+", value):
                raise ValueError(f"{self.name}: checksum must be lower-case hex, not {value!r}")

    @property
    def check(self) -> str:
        """How the file is verified, in words (shown by ``list``)."""
        if self.sha256:
            return "sha256"
        if self.sha256_prefix:
            return f"sha256 prefix {self.sha256_prefix} (as torchvision)"
        return "unverified (sha256 recorded at install)"


def _tv(name: str, used_by: str, approx_mb: float, note: str = "") -> WeightSpec:
    """A torchvision ImageNet checkpoint: the hex in its name is its sha256 prefix."""
    prefix = re.search(r"-([0-9a-f]{8,})\.pth$", name).group(1)
    return WeightSpec(name=name, url=TORCHVISION_BASE_URL + name, sha256=None,
                      size=None, used_by=used_by, sha256_prefix=prefix, approx_mb=approx_mb,
                      note=note or "torchvision ImageNet weights; full sha256 not recorded here, "
                      "the prefix in the file name is verified (as torchvision does)")


_NO_SOURCE_GENERATOR = ("rosinality-format StyleGAN2 FFHQ checkpoint; no canonical download to verify: "
                        "convert NVIDIA's stylegan2-ffhq-config-f.pkl (which `pipeline` also loads "
                        "directly) and import it")

REGISTRY: dict[str, WeightSpec] = {spec.name: spec for spec in [
    _tv("vgg16-397923af.pth", "stylegan-inv (VGG loss, LPIPS-vgg trunk), metrics", 527.8),
    _tv("alexnet-owt-7be5be79.pth", "stylegan-inv (LPIPS alex)", 233.1),
    _tv("resnet50-0676ba61.pth", "train-encoder (ImageNet init, V1 weights)", 97.8),
    _tv("resnet50-11ad3fa6.pth", "train-encoder (ImageNet init, V2 weights, tried first)", 97.8),
    WeightSpec(
        name="weights-inception-2015-12-05-6726825d.pth",
        url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
        used_by="metrics (FID/KID, torch-fidelity Inception)",
        note="torch-fidelity loads it without a hash check, so 6726825d is not known to be a "
             "sha256 prefix: unverified"),
    WeightSpec(name="stylegan2-ffhq-1024.pt", url=None, used_by="stylegan-inv (default generator)",
               note=_NO_SOURCE_GENERATOR),
    WeightSpec(name="stylegan2-ffhq-256.pt", url=None, used_by="stylegan-inv, train-encoder (256 px)",
               note=_NO_SOURCE_GENERATOR),
]}



def locate(name: str) -> Path | None:
    """The installed file for ``name`` in the folders the workers search, or None."""
    for folder in search_dirs():
        if (folder / name).is_file():
            return folder / name
    return None


def spec_for(name: str) -> WeightSpec:
    """The registry entry, or an uncheckable spec for a user file (e.g. an encoder)."""
    if name in REGISTRY:
        return REGISTRY[name]
    return WeightSpec(name=name, url=None, used_by="(not in the registry)")


def source_url(spec: WeightSpec) -> str | None:
    """The address to download from: the mirror (``$FACEFILL_WEIGHTS_BASE_URL``) + file name when
    set, else the entry's own address (None: no download source)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        filename = spec.name
        if spec.url:
            filename = urllib.parse.unquote(urllib.parse.urlsplit(spec.url).path.rsplit("/", 1)[-1]) or spec.name
        return mirror.rstrip("/") + "/" + urllib.parse.quote(filename)
    return spec.url


def import_command(name: str) -> str:
    return f"pipeline weights import {name} /path/to/{name}"


def fix_command(spec: WeightSpec) -> str:
    """What to run to install a missing file."""
    if source_url(spec):
        return f"pipeline weights fetch {spec.name}"
    return import_command(spec.name)


# ---------------------------------------------------------------------------------------------
# verification

@dataclasses.dataclass(frozen=True)
class Verification:
    """``ok``: True matched, False mismatch, None nothing to compare with. ``status``: for ``list``."""

    ok: bool | None
    status: str
    sha256: str | None = None  # the file's digest, when it was hashed
    detail: str = ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_sidecar(path: Path) -> str | None:
    """The sha256 recorded for ``path`` at install (``sha256sum`` format), or None."""
    try:
        text = sidecar_path(path).read_text().split()
    except OSError:
        return None
    return text[0].lower() if text and re.fullmatch(r"[0-9a-fA-F]{64}", text[0]) else None


def write_sidecar(path: Path, digest: str) -> None:
    _atomic_write_text(sidecar_path(path), f"{digest}  {path.name}\n")


def _compare(spec: WeightSpec, digest: str, size: int, recorded: str | None) -> Verification:
    if spec.size is not None and size != spec.size:
        return Verification(False, "checksum mismatch", digest,
                            f"size {size} bytes, expected {spec.size}")
    if spec.sha256:
        if digest == spec.sha256:
            return Verification(True, "verified", digest)
        return Verification(False, "checksum mismatch", digest, f"sha256 {digest}, expected {spec.sha256}")
    if spec.sha256_prefix:
        if digest.startswith(spec.sha256_prefix):
            return Verification(True, "verified (prefix)", digest)
        return Verification(False, "checksum mismatch", digest,
                            f"sha256 {digest} does not start with {spec.sha256_prefix}")
    if recorded:
        if digest == recorded:
            return Verification(True, "verified (recorded sha256)", digest)
        return Verification(False, "checksum mismatch", digest,
                            f"sha256 {digest}, but {recorded} was recorded at install: the file changed")
    return Verification(None, "present (no checksum)", digest)


def verify(path: Path | str, spec: WeightSpec) -> Verification:
    """Hash ``path`` and compare it with ``spec`` (full sha256, else its prefix, else the sidecar
    recorded at install). A size known in ``spec`` is compared first, without hashing."""
    path = Path(path)
    if not path.is_file():
        return Verification(False, "missing", None, f"{path} does not exist")
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return Verification(False, "checksum mismatch", None, f"size {size} bytes, expected {spec.size}")
    return _compare(spec, sha256_file(path), size, read_sidecar(path))


def quick_status(path: Path | None, spec: WeightSpec) -> str:
    """Status without hashing: missing, present, or a size mismatch."""
    if path is None or not path.is_file():
        return "missing"
    if spec.size is not None and path.stat().st_size != spec.size:
        return "checksum mismatch"
    return "present"


def _mismatch_message(spec: WeightSpec, what: str, result: Verification) -> str:
    return (f"{spec.name}: {what} is not the expected file ({result.detail}); "
            f"check: {spec.check}")


# ---------------------------------------------------------------------------------------------
# installing

def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _install(tmp: Path, final: Path, spec: WeightSpec, result: Verification) -> Path:
    """Rename the checked ``tmp`` into place; record the sha256 when the spec has no checksum."""
    if not (spec.sha256 or spec.sha256_prefix) and result.sha256:
        write_sidecar(final, result.sha256)
    elif sidecar_path(final).exists():
        sidecar_path(final).unlink()
    os.replace(tmp, final)
    return final


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of a ``Content-Range: bytes START-END/TOTAL`` header (None where absent/*)."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


class _Lock:
    """An exclusive, non-blocking lock on ``NAME.part.lock`` so two fetches never share a .part."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            self.fh = None
            raise FetchError(f"another download into {self.path.parent} holds {self.path.name}; "
                             "wait for it to finish") from None
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.path.unlink(missing_ok=True)
            self.fh.close()


def fetch(spec: WeightSpec, dest_dir: Path | str | None = None, progress: Progress | None = None, *,
          timeout: float = DEFAULT_TIMEOUT, force: bool = False) -> Path:
    """Download ``spec`` into ``dest_dir`` (default: the weights folder) and return its path.

    Bytes go to ``NAME.part``; an existing ``.part`` is resumed with ``Range: bytes=N-`` (started
    over when the server ignores the range). The complete file is verified, then renamed into
    place; on a mismatch the ``.part`` is deleted and :class:`ChecksumMismatchError` raised, so
    nothing appears under the final name. An interrupted download keeps its ``.part`` and raises
    :class:`FetchError`: call again to resume. An existing file that verifies is kept as it is; one
    that does not is an error unless ``force`` (then it is replaced once the new file verifies).
    """
    dest_dir = Path(dest_dir) if dest_dir is not None else weights_dir()
    url = source_url(spec)
    if not url:
        raise FetchError(
            f"{spec.name}: no download source: obtain the file (e.g. convert NVIDIA's "
            f"stylegan2-ffhq-config-f.pkl, which `pipeline` loads directly too) and run "
            f"`pipeline weights import {spec.name} PATH` (or set {MIRROR_ENV} to a mirror that has it)")
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / spec.name
    if final.exists():
        existing = verify(final, spec)
        if existing.ok is not False:
            return final
        if not force:
            raise ChecksumMismatchError(
                _mismatch_message(spec, f"the existing {final}", existing)
                + f"; run `pipeline weights fetch --force {spec.name}` to replace it")
    part = dest_dir / (spec.name + ".part")
    with _Lock(dest_dir / (spec.name + ".part.lock")):
        _download(url, part, spec, progress, timeout)
        result = verify(part, spec)
        if result.ok is False:
            part.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                _mismatch_message(spec, f"the download from {url}", result)
                + "; the partial file was deleted and nothing was installed")
        _fsync(part)
        return _install(part, final, spec, result)


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only, checked)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:
            return exc  # handled by the caller (range beyond the end)
        raise FetchError(f"GET {url} failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise FetchError(f"cannot reach {url}: {exc.reason}") from None
    except (TimeoutError, socket.timeout, OSError, http.client.HTTPException) as exc:
        raise FetchError(f"cannot reach {url}: {exc}") from None


def _download(url: str, part: Path, spec: WeightSpec, progress: Progress | None, timeout: float) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise FetchError(f"{url}: only http(s) addresses can be fetched")
    start = part.stat().st_size if part.exists() else 0
    if spec.size is not None and start > spec.size:
        part.unlink()
        start = 0
    if spec.size is not None and start == spec.size:
        return  # already complete: the caller verifies it
    response = _open(url, start, timeout)
    if isinstance(response, urllib.error.HTTPError):  # 416: nothing after `start`
        _, total = _content_range(response.headers.get("Content-Range"))
        response.close()
        if total is not None and total == start:
            return
        part.unlink(missing_ok=True)
        start = 0
        response = _open(url, 0, timeout)
        if isinstance(response, urllib.error.HTTPError):
            raise FetchError(f"GET {url} failed: HTTP {response.code} {response.reason}")
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206:
            got_start, total = _content_range(response.headers.get("Content-Range"))
            if got_start != start:
                raise FetchError(f"GET {url}: asked for bytes from {start}, the server sent "
                                 f"{response.headers.get('Content-Range')!r}")
            mode = "ab"
        elif status == 200:
            start, total, mode = 0, length, "wb"  # no range support (or a fresh start): from the top
        else:
            raise FetchError(f"GET {url} failed: HTTP {status} {response.reason}")
        if total is None and length is not None:
            total = start + length
        done = start
        if progress:
            progress(done, total)
        try:
            with open(part, mode) as fh:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                fh.flush()
        except (http.client.IncompleteRead, TimeoutError, socket.timeout, ConnectionError, OSError) as exc:
            raise FetchError(f"download of {url} interrupted after {part.stat().st_size} bytes ({exc!r}); "
                             f"{part} is kept: run the same command again to resume") from None
        if total is not None and done < total:
            raise FetchError(f"download of {url} interrupted after {done} of {total} bytes; "
                             f"{part} is kept: run the same command again to resume")


def import_file(spec: WeightSpec, src: Path | str, dest_dir: Path | str | None = None) -> Path:
    """Copy the local file ``src`` into ``dest_dir`` (default: the weights folder) as ``spec.name``.

    The copy is hashed as it is written to a temporary file in ``dest_dir`` and renamed into place
    only when it matches the spec (:class:`ChecksumMismatchError` otherwise, nothing installed).
    For entries without a checksum any file is accepted and its sha256 recorded in ``NAME.sha256``.
    """
    src = Path(src).expanduser()
    if not src.is_file():
        raise WeightsError(f"{src}: no such file")
    dest_dir = Path(dest_dir) if dest_dir is not None else weights_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / spec.name
    if final.exists() and final.resolve() == src.resolve():  # already in place: check and record
        result = verify(final, spec)
        if result.ok is False:
            raise ChecksumMismatchError(_mismatch_message(spec, str(src), result))
        if not (spec.sha256 or spec.sha256_prefix) and result.sha256:
            write_sidecar(final, result.sha256)
        return final
    size = src.stat().st_size
    if spec.size is not None and size != spec.size:
        raise ChecksumMismatchError(_mismatch_message(
            spec, str(src), Verification(False, "checksum mismatch", None, f"size {size} bytes, expected {spec.size}")))
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{spec.name}.", suffix=".import")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        copied = 0
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
                copied += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; weight files are ordinary readable files
        result = _compare(spec, digest.hexdigest(), copied, None)
        if result.ok is False:
            raise ChecksumMismatchError(_mismatch_message(spec, str(src), result) + "; nothing was installed")
        return _install(tmp, final, spec, result)
    finally:
        tmp.unlink(missing_ok=True)
