"""Between two windows of a run (pipeline.run): wait until the last window's method actors are gone.

When a window's dataset ends, Ray Data drops its actor pool's handles and Ray stops each actor, but
the process takes a few hundred milliseconds to exit, and the next window's pool starts its own at
once. Every boundary then held two method actors side by side: on 2 cores an extra process of
45-65 MiB at each of a 100k-row run's 24 boundaries, where the run's peak was (1,378-1,393 MiB
against 1,320-1,330 between them); on a GPU node, a second copy of the model would load while the
first still holds its GPU memory. Waiting costs 0.2-0.5 s a window, about 0.3 % of a window of faces.
"""
from __future__ import annotations

import gc
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ray

# Ray Data names an actor pool's workers MapWorker(...): in a run's job, those are the method actors.
METHOD_ACTOR_CLASS_PREFIX = "MapWorker"
EXIT_TIMEOUT_S = 30.0  # past this, go on: a slow exit costs memory for a moment, not correctness
POLL_S = 0.05


def wait_for_method_actors_to_exit(timeout_s: float = EXIT_TIMEOUT_S) -> float:
    """Returns once no method actor of this job is alive (nor, on this node, its process), or after
    `timeout_s`; the seconds it waited."""
    import ray  # not at import: `pipeline --help` and the report commands never load Ray

    started = time.perf_counter()
    gc.collect()  # a reference cycle holding an actor's last handle would keep the actor alive
    context = ray.get_runtime_context()
    job, node = ray.JobID.from_hex(context.get_job_id()), context.get_node_id()
    while time.perf_counter() - started < timeout_s:
        if not any(_still_running(actor, node, timeout_s) for actor in _job_actors(job)):
            break
        time.sleep(POLL_S)
    return time.perf_counter() - started


def _job_actors(job: ray.JobID) -> list[dict]:
    """This job's actors from the GCS actor table (Ray's state API needs the dashboard, which an
    embedded run does not start)."""
    from ray._private import state

    return list(state.actors(job_id=job).values())


def _still_running(actor: dict, node_id: str, recent_s: float) -> bool:
    if not actor.get("ActorClassName", "").startswith(METHOD_ACTOR_CLASS_PREFIX):
        return False
    if actor.get("State") != "DEAD":
        return True
    # DEAD in the GCS is reported before the process has exited; on this node, wait for the process.
    # Only for actors that died just now: an earlier window's actor's pid may belong to a new process.
    died_s_ago = time.time() - actor.get("EndTime", 0) / 1000
    return (died_s_ago < recent_s and actor.get("Address", {}).get("NodeID") == node_id
            and _process_exists(actor.get("Pid", 0)))


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
