"""The pause between two windows: it lasts until the last window's method actors have exited."""
from __future__ import annotations

import os
import time

import psutil
import pytest

from pipeline.window_handover import wait_for_method_actors_to_exit


@pytest.fixture
def actor_classes(ray_local):
    """An actor named as Ray Data names an actor pool's workers (the GCS records the qualified name),
    and any other actor of the job."""

    class MapWorkerProbe:
        def pid(self) -> int:
            return os.getpid()

    class Bystander(MapWorkerProbe):
        pass

    MapWorkerProbe.__qualname__, Bystander.__qualname__ = "MapWorkerProbe", "Bystander"
    return ray_local.remote(num_cpus=0)(MapWorkerProbe), ray_local.remote(num_cpus=0)(Bystander)


@pytest.mark.slow
def test_the_wait_ends_once_a_dropped_method_actors_process_is_gone(ray_local, actor_classes):
    method_class, bystander_class = actor_classes
    method, bystander = method_class.remote(), bystander_class.remote()
    pid = ray_local.get(method.pid.remote())
    ray_local.get(bystander.pid.remote())
    del method  # as Ray Data drops a finished pool's handles

    waited = wait_for_method_actors_to_exit(timeout_s=20)

    assert not psutil.pid_exists(pid), "the method actor's process outlived the wait"
    assert waited < 20, "an actor of another class (alive) held the wait to its timeout"
    ray_local.kill(bystander)


@pytest.mark.slow
def test_a_method_actor_that_stays_alive_holds_the_wait_only_until_its_timeout(ray_local, actor_classes):
    method_class, _ = actor_classes
    method = method_class.remote()
    ray_local.get(method.pid.remote())

    started = time.perf_counter()
    waited = wait_for_method_actors_to_exit(timeout_s=0.5)

    assert 0.5 <= waited < 5 and time.perf_counter() - started < 5
    ray_local.kill(method)


def test_only_a_method_actor_that_died_just_now_is_waited_for_by_its_pid():
    """An earlier window's actor died long ago: a live process with its pid is someone else's."""
    from pipeline.window_handover import _still_running

    def actor(state: str, died_s_ago: float, name: str = "MapWorker(MapBatches(Runner))") -> dict:
        return {"ActorClassName": name, "State": state, "Pid": os.getpid(),  # a pid that exists
                "EndTime": int((time.time() - died_s_ago) * 1000), "Address": {"NodeID": "node"}}

    assert _still_running(actor("ALIVE", 0), "node", 30)
    assert _still_running(actor("DEAD", 0.5), "node", 30)
    assert not _still_running(actor("DEAD", 120), "node", 30)
    assert not _still_running(actor("DEAD", 0.5), "another node", 30)  # its process is not ours to see
    assert not _still_running(actor("ALIVE", 0, name="_StatsActor"), "node", 30)
