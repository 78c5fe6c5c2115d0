"""A real multi-node Ray cluster on one machine for tests: `ray start --head` plus `ray start --address`.

Each node is its own process tree with its own CPUs, custom resource and object store. Nodes are
stopped by killing their own processes (never `ray stop`, which would stop every Ray on the machine,
other users' too). Temp folders are private and short (Ray's unix socket paths must stay < 108 chars).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.helpers import REPO

RAY = str(Path(sys.executable).with_name("ray"))
SITECUSTOM = Path(__file__).with_name("sitecustom")  # registers the test-only `test-slow` method
OBJECT_STORE_BYTES = 200 * 1024 * 1024
ACTOR_TITLE = "ray::MapWorker"  # the process title Ray Data gives its actor-pool workers


CALLS_ENV = "FACEFILL_TEST_SLOW_CALLS"  # see sitecustom/facefill_test_slow.py


def cluster_env() -> dict[str, str]:
    """Env for nodes and drivers: the repo and `test-slow` importable, no auth token to hand round,
    node deaths noticed within seconds (Ray's default health check takes ~30 s), and the driver's
    Ray Data waiting until every pool actor is up before it hands out work (otherwise, on a busy
    machine, the first actor ready may take every batch of a small test run)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SITECUSTOM), str(REPO)]),
            "RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "500",
            "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "3",
            "RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "180", "RAY_DEDUP_LOGS": "0"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RayNode:
    """One `ray start --block` process and everything it spawned."""

    name: str  # also the node's custom resource
    proc: subprocess.Popen
    temp_dir: Path
    log: Path

    def processes(self) -> list[psutil.Process]:
        try:
            return [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def actor_pids(self, title: str = ACTOR_TITLE) -> list[int]:
        """Pids of this node's Ray Data actor workers (by process title)."""
        pids = []
        for proc in self.processes():
            try:
                if " ".join(proc.cmdline()).startswith(title):
                    pids.append(proc.pid)
            except psutil.NoSuchProcess:
                pass
        return pids

    def kill(self) -> None:
        """SIGKILL the node's raylet and every process of the node, at once (a machine lost)."""
        procs = self.processes()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for proc in procs:  # workers a raylet started outside its process group
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait()


@dataclass
class LocalCluster:
    address: str
    nodes: list[RayNode] = field(default_factory=list)
    root: Path = field(default_factory=Path)

    @property
    def calls(self) -> Path:
        """One file per batch call `test-slow` finished on this cluster."""
        return self.root / "calls"

    def env(self) -> dict[str, str]:
        """`cluster_env` plus where `test-slow` records its calls."""
        return {**cluster_env(), CALLS_ENV: str(self.calls)}

    def slow_calls(self) -> int:
        return sum(1 for p in self.calls.iterdir() if not p.name.startswith("running-"))

    def in_call(self, pid: int) -> bool:
        """Whether the actor process `pid` is inside a batch call right now."""
        return (self.calls / f"running-{pid}").exists()

    def add_node(self, name: str, num_cpus: int, head: bool = False) -> RayNode:
        temp_dir = Path(tempfile.mkdtemp(prefix="r", dir=self.root))
        log = self.root / f"{name}.log"
        args = [RAY, "start", "--block", f"--num-cpus={num_cpus}", f"--resources={json.dumps({name: 1})}",
                f"--object-store-memory={OBJECT_STORE_BYTES}", "--node-ip-address=127.0.0.1",
                f"--temp-dir={temp_dir}", "--disable-usage-stats"]
        if head:
            args += ["--head", f"--port={self.address.split(':')[1]}", "--include-dashboard=false"]
        else:
            args += [f"--address={self.address}"]
        with open(log, "wb") as handle:
            proc = subprocess.Popen(args, env=self.env(), stdout=handle, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        node = RayNode(name, proc, temp_dir, log)
        self.nodes.append(node)
        return node

    def node_ids(self, timeout: float = 60) -> dict[str, str]:
        """Custom resource name → Ray node id, for the alive nodes, once all started ones joined."""
        script = ("import json, ray; ray.init(address=%r, configure_logging=False); "
                  "print(json.dumps({n['NodeID']: sorted(n['Resources']) for n in ray.nodes() if n['Alive']}))"
                  % self.address)
        names = {node.name for node in self.nodes if node.proc.poll() is None}
        deadline = time.time() + timeout
        while True:
            ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                 env=self.env(), timeout=timeout)
            found = {}
            if ran.returncode == 0:
                for node_id, resources in json.loads(ran.stdout.strip().splitlines()[-1]).items():
                    found.update({name: node_id for name in names & set(resources)})
            if set(found) == names:
                return found
            if time.time() > deadline:
                raise RuntimeError(f"nodes {sorted(names - set(found))} did not join: {ran.stderr[-2000:]}\n"
                                   + self.logs())
            time.sleep(1)

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text(errors='replace')[-2000:]}" for n in self.nodes)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(nodes: list[tuple[str, int]]) -> LocalCluster:
    """A head (`nodes[0]`) and worker nodes, each (custom resource name, CPUs); waits until all joined."""
    root = Path(tempfile.mkdtemp(prefix="ffc", dir="/tmp"))
    cluster = LocalCluster(address=f"127.0.0.1:{_free_port()}", root=root)
    cluster.calls.mkdir()
    try:
        for i, (name, cpus) in enumerate(nodes):
            cluster.add_node(name, cpus, head=i == 0)
            if i == 0:
                cluster.node_ids()  # workers need the head's GCS up before they join
        cluster.node_ids()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def pipeline_cli() -> list[str]:
    return [sys.executable, "-m", "pipeline.cli"]
