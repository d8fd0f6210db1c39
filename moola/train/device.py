"""Where training runs and how it is seeded."""

from __future__ import annotations

import os
import random
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "ACCELERATORS", "DeviceError", "available_accelerators", "resolve_device", "seed_everything",
    "get_rng_state", "set_rng_state", "worker_threads",
]

ACCELERATORS = ("auto", "cpu", "cuda", "mps")


class DeviceError(RuntimeError):
    """The accelerator asked for is unknown or not present on this machine."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_accelerators() -> list[str]:
    """Accelerators usable here, best first; always ends with "cpu"."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(accelerator: str) -> torch.device:
    """Map an accelerator name to a device: auto -> cuda, else mps, else cpu.

    Asking explicitly for cuda or mps when it is absent raises :class:`DeviceError` with what
    was asked, what is available, and the fix -- never a silent fallback to the CPU.
    """
    name = str(accelerator).strip().lower()
    if name not in ACCELERATORS:
        raise DeviceError(
            f"accelerator {accelerator!r} is unknown; allowed values: {', '.join(ACCELERATORS)}"
        )
    available = available_accelerators()
    if name == "auto":
        return torch.device(available[0])
    if name not in available:
        raise DeviceError(
            f"accelerator {name!r} was asked for but is not available on this machine "
            f"(available: {', '.join(available)}). Fix: pass --accelerator cpu, or "
            f"--accelerator auto to use the best device present."
        )
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); optionally make torch deterministic.

    `deterministic` turns on ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an op
    without a deterministic kernel warns instead of failing), disables cuDNN autotuning and
    sets ``CUBLAS_WORKSPACE_CONFIG`` (required by cuBLAS for reproducible matmuls) when CUDA is
    present and the variable is not already set. ``False`` turns deterministic mode off again.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # only when it changes: the call imports torch._inductor (~1.4 s), which a CPU run never needs
    if torch.are_deterministic_algorithms_enabled() != bool(deterministic) or (
            deterministic and not torch.is_deterministic_algorithms_warn_only_enabled()):
        torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = False


def get_rng_state(generator: torch.Generator | None = None,
                  dropout: torch.Generator | None = None,
                  shards: Sequence[torch.Generator] = ()) -> dict:
    """Every RNG the loop depends on, as tensors / plain values (loads with weights_only=True).

    `generator` is the DataLoader's shuffling generator, if it has its own; `dropout` the
    generator a replica trained together with others draws its dropout masks from (in place of
    torch's default one, whose state it then takes in the checkpoint); `shards` the generators
    the shards of a sharded step draw their dropout masks from (moola.train.shards).
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["loader"] = generator.get_state()
    if dropout is not None:
        state["torch" if dropout.device.type == "cpu" else "dropout"] = dropout.get_state()
    if shards:
        state["shards"] = [g.get_state() for g in shards]
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None,
                  dropout: torch.Generator | None = None,
                  shards: Sequence[torch.Generator] = ()) -> None:
    """Restore what :func:`get_rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])
    if dropout is not None:
        key = "torch" if dropout.device.type == "cpu" else "dropout"
        if key in state:
            dropout.set_state(state[key])
    saved = state.get("shards") or []
    if shards and len(saved) == len(shards):
        for g, st in zip(shards, saved):
            g.set_state(st)


# set by `moola panel` in each chain's environment: the chains sharing a machine split its cores
MAX_THREADS_ENV = "MOOLA_MAX_THREADS"


def worker_threads(device: torch.device | str) -> int:
    """Threads that can run kernels side by side: the cores this process may use on the CPU
    (its affinity, at most $MOOLA_MAX_THREADS when set); one on an accelerator, where kernels
    queue on one device. No weight depends on it (replicas, pretraining and refit shards take
    the same steps on any number of threads)."""
    if torch.device(device).type != "cpu":
        return 1
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        cores = max(1, os.cpu_count() or 1)
    limit = os.environ.get(MAX_THREADS_ENV, "").strip()
    if limit.isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    return cores
