"""The Ray session of a search: a local Ray of our own (dashboard on 127.0.0.1), or a running cluster to join.

    with RaySession(address=None, dashboard=True, num_cpus=None, debug=False) as ray_session:
        ray_session.check_fits(space)       # trials that could never be placed are refused before Tune waits
        ... ray_session.info ...            # what experiment.json records about the cluster

Ray's token authentication is left as Ray sets it: since Ray 2.52 a local `ray.init` enables it unless
RAY_AUTH_MODE=disabled (then a warning says what that exposes).
"""
from __future__ import annotations

import logging
import sys
from typing import Any

import ray

from search.provenance import hardware
from search.space import Space, SpaceError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class RaySession:
    def __init__(self, address: str | None, dashboard: bool = True, num_cpus: int | None = None,
                 debug: bool = False, dashboard_host: str = "127.0.0.1", num_gpus: int | None = None):
        self.address, self.dashboard, self.num_cpus, self.num_gpus = address, dashboard, num_cpus, num_gpus
        self.debug, self.dashboard_host = debug, dashboard_host
        self.info: dict[str, Any] = {}
        self._started = False

    def __enter__(self) -> "RaySession":
        if not self.debug:
            for name in ("ray.tune", "ray.train", "ray.air"):
                logging.getLogger(name).setLevel(logging.WARNING)
        if self.address:
            ctx = ray.init(address=self.address, log_to_driver=self.debug)
        else:  # trial output stays in Ray's logs (and error.txt) unless --debug
            if self.dashboard and self.dashboard_host not in LOCAL_HOSTS:
                print(f"warning: the Ray dashboard will listen on {self.dashboard_host}, reachable from other "
                      f"machines; prefer the default 127.0.0.1 and `ssh -L 8265:127.0.0.1:8265 <this host>`",
                      file=sys.stderr)
            # address="local": always a new Ray of our own, never a cluster someone else started on this machine
            ctx = ray.init(address="local", num_cpus=self.num_cpus, num_gpus=self.num_gpus, include_dashboard=self.dashboard,
                           dashboard_host=self.dashboard_host, log_to_driver=self.debug)
        self._started = True
        auth = ray_auth_mode()
        if auth == "disabled":
            print("warning: Ray token authentication is off (RAY_AUTH_MODE=disabled): anyone who can reach this "
                  "cluster's ports can run code on it; unset RAY_AUTH_MODE (or set it to token)", file=sys.stderr)
        url = getattr(ctx, "dashboard_url", None)
        if url:
            print(f"Ray dashboard: http://{url}")
        self.info = {"hardware": hardware(ray.cluster_resources()), "ray_address": self.address or "local",
                     "dashboard_url": f"http://{url}" if url else None, "ray_auth_mode": auth}
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            ray.shutdown()
            self._started = False

    def check_fits(self, space: Space) -> None:
        """Refuse trials that can never be placed (Tune would wait for them forever). Joining a cluster, a
        warning instead: an autoscaler may still add the nodes."""
        res = ray.cluster_resources()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        want = space.resources
        if want.gpus > 0 and res.get("GPU", 0) == 0:
            self._refuse(f"{space.source}: resources.gpus: each trial asks for {want.gpus:g} GPU but the Ray cluster "
                         f"has none; run with --gpus 0 to train on CPU, or on a machine/cluster with GPUs",
                         "waiting in case an autoscaler adds GPU nodes")
        elif want.gpus > most_gpus:  # a trial runs on one node: its GPUs must fit on one
            self._refuse(f"{space.source}: resources.gpus: each trial asks for {want.gpus:g} GPUs but the largest "
                         f"node has {most_gpus:g}; lower resources.gpus (or --gpus) to at most {most_gpus:g}",
                         "waiting in case an autoscaler adds larger nodes")
        if want.cpus > most_cpus and self.address is None:
            raise SpaceError(f"{space.source}: resources.cpus: each trial asks for {want.cpus:g} CPUs but Ray has "
                             f"{most_cpus:g} on a node; lower resources.cpus (or raise --num-cpus)")

    def _refuse(self, msg: str, joined_note: str) -> None:
        if self.address is None:
            raise SpaceError(msg)
        print(f"warning: {msg} ({joined_note})")


def ray_auth_mode() -> str:
    """`token` or `disabled`: whether this Ray requires its auth token (Ray >= 2.52; `unknown` on older Ray)."""
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode
    except ImportError:
        return "unknown"
    return "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"
