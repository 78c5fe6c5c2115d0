"""`pipeline run --address` joins an existing Ray cluster (started here with `ray start --head`)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    # A throw-away local cluster: no auth token to distribute between the processes of the test.
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A separate Ray head process on 127.0.0.1, stopped by killing its process group."""
    port = _free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    env = _env()
    proc = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        probe = subprocess.run([str(ray_bin), "status", f"--address={address}"], capture_output=True, env=env)
        if probe.returncode == 0:
            break
        time.sleep(1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("ray head did not come up")
    yield address
    os.killpg(proc.pid, signal.SIGKILL)  # SIGTERM would drain for 30 s; nothing here needs a drain
    proc.wait()


def test_run_on_an_existing_cluster(tmp_path, bench_dev, ray_head):
    env = _env()
    manifest, out = tmp_path / "m.parquet", tmp_path / "out"
    cli = [sys.executable, "-m", "pipeline.cli"]
    assert subprocess.run([*cli, "manifest", "build", "--images", str(bench_dev / "faces/256"), "--masks",
                           str(bench_dev / "masks"), "--pair", "random", "--out", str(manifest)],
                          env=env, capture_output=True).returncode == 0
    ran = subprocess.run([*cli, "run", "--manifest", str(manifest), "--out", str(out), "--limit", "12",
                          "--address", ray_head], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "done: 12 ok" in ran.stdout
    assert len(pq.read_table(out / "results")) == 12
    assert json.loads((out / "run.json").read_text())["config"]["address"] == ray_head
