"""`pipeline weights`: registry, fetch (resume, checksums), import, path, list.

Downloads come from a local ThreadingHTTPServer on 127.0.0.1 (Range support, can drop the
connection after N bytes), reached through the mirror variable; nothing else is contacted.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import weights_registry as wr
from pipeline.cli import app


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves server.root; honours `Range: bytes=N-` unless server.ignore_range; a name in
    server.drop_after gets only that many bytes of its body once, then the connection closes."""

    def do_GET(self):  # noqa: N802 (http.server API)
        server = self.server
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path.rsplit("/", 1)[-1])
        server.requests.append({"name": name, "range": self.headers.get("Range")})
        path = server.root / name
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not server.ignore_range:
            start, status = int(match.group(1)), 206
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = server.drop_after.pop(name, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root, httpd.requests, httpd.drop_after, httpd.ignore_range = root, [], {}, False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/mirror/models"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def env(tmp_path, monkeypatch, server):
    """FACEFILL_HOME and TORCH_HOME in tmp_path, downloads redirected to the local server, and a
    test registry of small random files: full sha256, sha256 prefix only, no checksum."""
    monkeypatch.setenv("FACEFILL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(wr.MIRROR_ENV, server.base_url)
    files = {name: os.urandom(size) for name, size in
             [("full.pth", 300_000), ("pre.pth", 120_000), ("nosum.pt", 50_000)]}
    for name, data in files.items():
        (server.root / name).write_bytes(data)
    specs = {
        "full.pth": wr.WeightSpec("full.pth", "https://weights.invalid/models/full.pth",
                                  sha256=_sha(files["full.pth"]), size=len(files["full.pth"]),
                                  used_by="test full"),
        "pre.pth": wr.WeightSpec("pre.pth", "https://weights.invalid/models/pre.pth",
                                 sha256_prefix=_sha(files["pre.pth"])[:8], used_by="test prefix"),
        "nosum.pt": wr.WeightSpec("nosum.pt", None, used_by="test generator"),
    }
    monkeypatch.setattr(wr, "REGISTRY", specs)
    return {"files": files, "specs": specs, "dest": tmp_path / "home" / "weights", "server": server}


def _folder_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_fetch_downloads_verifies_and_installs(env):
    seen = []
    path = wr.fetch(env["specs"]["full.pth"], env["dest"], lambda done, total: seen.append((done, total)))
    assert path == env["dest"] / "full.pth" and path.read_bytes() == env["files"]["full.pth"]
    assert _folder_names(env["dest"]) == {"full.pth"}  # no .part, lock or sidecar left
    assert env["server"].requests == [{"name": "full.pth", "range": None}]
    assert seen[-1] == (300_000, 300_000)
    # already present and verified: no second download
    assert wr.fetch(env["specs"]["full.pth"], env["dest"]) == path and len(env["server"].requests) == 1


def test_interrupted_download_resumes_from_the_part_file(env):
    spec, server = env["specs"]["full.pth"], env["server"]
    server.drop_after["full.pth"] = 100_000
    with pytest.raises(wr.FetchError, match="interrupted after 100000 of 300000 bytes.*resume"):
        wr.fetch(spec, env["dest"])
    part = env["dest"] / "full.pth.part"
    assert part.stat().st_size == 100_000 and not (env["dest"] / "full.pth").exists()
    path = wr.fetch(spec, env["dest"])
    assert server.requests[-1] == {"name": "full.pth", "range": "bytes=100000-"}
    assert path.read_bytes() == env["files"]["full.pth"] and not part.exists()


def test_a_server_ignoring_range_restarts_from_the_top(env):
    env["dest"].mkdir(parents=True)
    (env["dest"] / "full.pth.part").write_bytes(b"x" * 1000)  # stale bytes must not survive
    env["server"].ignore_range = True
    path = wr.fetch(env["specs"]["full.pth"], env["dest"])
    assert env["server"].requests[-1]["range"] == "bytes=1000-"
    assert path.read_bytes() == env["files"]["full.pth"]


def test_checksum_mismatch_deletes_the_part_and_installs_nothing(env):
    wrong = wr.WeightSpec("full.pth", "https://weights.invalid/models/full.pth", sha256=_sha(b"other"))
    with pytest.raises(wr.ChecksumMismatchError) as err:
        wr.fetch(wrong, env["dest"])
    message = str(err.value)
    assert "full.pth" in message and env["server"].base_url in message and "nothing was installed" in message
    assert _folder_names(env["dest"]) == set()
    wrong_prefix = wr.WeightSpec("pre.pth", "https://weights.invalid/models/pre.pth", sha256_prefix="00000000")
    with pytest.raises(wr.ChecksumMismatchError, match="does not start with 00000000"):
        wr.fetch(wrong_prefix, env["dest"])
    assert _folder_names(env["dest"]) == set()


def test_http_errors_name_the_url_and_status(env):
    absent = wr.WeightSpec("absent.pth", "https://weights.invalid/models/absent.pth")
    with pytest.raises(wr.FetchError, match=r"GET http://127\.0\.0\.1:\d+/mirror/models/absent\.pth failed: HTTP 404"):
        wr.fetch(absent, env["dest"])
    assert not (env["dest"] / "absent.pth").exists()


def test_no_source_says_how_to_import(env, monkeypatch):
    monkeypatch.delenv(wr.MIRROR_ENV)
    with pytest.raises(wr.FetchError, match=r"no download source.*pipeline weights import nosum\.pt PATH"):
        wr.fetch(env["specs"]["nosum.pt"], env["dest"])


def test_mirror_replaces_the_prefix_and_keeps_the_file_name(monkeypatch):
    spec = wr.REGISTRY["weights-inception-2015-12-05-6726825d.pth"]
    monkeypatch.delenv(wr.MIRROR_ENV, raising=False)
    assert wr.source_url(spec) == spec.url
    monkeypatch.setenv(wr.MIRROR_ENV, "http://mirror.lan/w/")
    assert wr.source_url(spec) == "http://mirror.lan/w/weights-inception-2015-12-05-6726825d.pth"
    assert wr.source_url(wr.REGISTRY["stylegan2-ffhq-256.pt"]) == "http://mirror.lan/w/stylegan2-ffhq-256.pt"


def test_prefix_only_spec_verifies_by_prefix(env, tmp_path):
    data = env["files"]["pre.pth"]
    path = tmp_path / "pre.pth"
    path.write_bytes(data)
    result = wr.verify(path, env["specs"]["pre.pth"])
    assert result.ok is True and result.status == "verified (prefix)" and result.sha256 == _sha(data)
    bad = wr.verify(path, wr.WeightSpec("pre.pth", None, sha256_prefix="deadbeef"))
    assert bad.ok is False and bad.status == "checksum mismatch"
    assert wr.verify(tmp_path / "nope.pth", env["specs"]["pre.pth"]).status == "missing"


def test_import_verifies_and_refuses_a_wrong_file(env, tmp_path):
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(env["files"]["full.pth"])
    bad.write_bytes(os.urandom(300_000))
    with pytest.raises(wr.ChecksumMismatchError, match="nothing was installed"):
        wr.import_file(env["specs"]["full.pth"], bad, env["dest"])
    assert _folder_names(env["dest"]) == set()  # no temporary copy left either
    path = wr.import_file(env["specs"]["full.pth"], good, env["dest"])
    assert path.read_bytes() == env["files"]["full.pth"] and _folder_names(env["dest"]) == {"full.pth"}
    result = CliRunner().invoke(app, ["weights", "import", "full.pth", str(bad)])
    assert result.exit_code == 1 and "not the expected file" in result.output
    assert path.read_bytes() == env["files"]["full.pth"]  # the good file stays


def test_import_without_checksum_records_sha256_and_list_verify_detects_changes(env, tmp_path):
    src = tmp_path / "G.pt"
    src.write_bytes(b"generator v1")
    runner = CliRunner()
    result = runner.invoke(app, ["weights", "import", "nosum.pt", str(src)])
    assert result.exit_code == 0, result.output
    installed = env["dest"] / "nosum.pt"
    assert wr.read_sidecar(installed) == _sha(b"generator v1") and "recorded" in result.output
    result = runner.invoke(app, ["weights", "list", "--verify"])
    assert result.exit_code == 0 and re.search(r"nosum\.pt .*verified \(recorded sha256\)", result.output)
    installed.write_bytes(b"generator v2")
    result = runner.invoke(app, ["weights", "list", "--verify"])
    assert result.exit_code == 1 and re.search(r"nosum\.pt .*checksum mismatch", result.output)


def test_path_exit_codes(env, monkeypatch):
    runner = CliRunner()
    monkeypatch.delenv(wr.MIRROR_ENV)  # then nosum.pt has no download source
    result = runner.invoke(app, ["weights", "path", "full.pth"])
    assert result.exit_code == 1 and "pipeline weights fetch full.pth" in result.output
    result = runner.invoke(app, ["weights", "path", "nosum.pt"])
    assert result.exit_code == 1 and "pipeline weights import nosum.pt" in result.output
    assert runner.invoke(app, ["weights", "path", "../x"]).exit_code == 2
    monkeypatch.setenv(wr.MIRROR_ENV, env["server"].base_url)
    result = runner.invoke(app, ["weights", "fetch", "full.pth"])  # with the progress bar
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["weights", "path", "full.pth"])
    assert result.exit_code == 0 and result.stdout.strip() == str(env["dest"] / "full.pth")


def test_list_shows_every_entry_with_status_and_check(env):
    wr.fetch(env["specs"]["pre.pth"], env["dest"])
    result = CliRunner().invoke(app, ["weights", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "USED", "BY", "SIZE", "STATUS", "CHECK"]
    row = {line.split()[0]: line for line in lines[1:4]}
    assert "missing" in row["full.pth"] and "test full" in row["full.pth"] and "300.0 kB" in row["full.pth"]
    assert "present" in row["pre.pth"] and f"sha256 prefix {env['specs']['pre.pth'].sha256_prefix}" in row["pre.pth"]
    assert "unverified" in row["nosum.pt"]
    assert "--verify" in result.output and str(env["dest"]) in result.output
    result = CliRunner().invoke(app, ["weights", "list", "--verify"])
    assert re.search(r"pre\.pth .*verified \(prefix\)", result.output)


def test_fetch_cli_rejects_unknown_names(env):
    result = CliRunner().invoke(app, ["weights", "fetch", "nope.pth"])
    assert result.exit_code == 2 and "not in the registry" in result.output


@pytest.mark.parametrize("command", ["list", "fetch", "import", "path"])
def test_weights_commands_explain_themselves_with_an_example(command):
    result = CliRunner().invoke(app, ["weights", command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output


def test_registry_entries_use_the_project_names_and_no_invented_hashes():
    reg = wr.REGISTRY
    for name in ["vgg16-397923af.pth", "alexnet-owt-7be5be79.pth", "resnet50-0676ba61.pth",
                 "weights-inception-2015-12-05-6726825d.pth", "stylegan2-ffhq-1024.pt", "stylegan2-ffhq-256.pt"]:
        assert name in reg
    for name in ["vgg16-397923af.pth", "alexnet-owt-7be5be79.pth", "resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"]:
        assert reg[name].url == f"https://download.pytorch.org/models/{name}"
        assert reg[name].sha256 is None and name.endswith(f"-{reg[name].sha256_prefix}.pth")
    inception = reg["weights-inception-2015-12-05-6726825d.pth"]
    assert inception.sha256 is None and inception.sha256_prefix is None and "unverified" in inception.note
    assert reg["stylegan2-ffhq-1024.pt"].url is None and reg["stylegan2-ffhq-256.pt"].url is None

