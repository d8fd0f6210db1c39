"""Checkpoints of the training loop: write (top-k best + last.pt), forget, and resume.

A mixin of :class:`moola.train.loop.Trainer`, kept apart so that the loop file reads as the
loop. It uses the Trainer's state: ``settings``, ``gate``, ``ckpt_dir``, ``last_path``,
``keeper`` (CheckpointKeeper), ``early`` (EarlyStopping), ``history``, ``step``, ``generator``,
``logger``, ``on_checkpoint`` and ``_call_hook``.

Checkpoints hold only tensors and plain values, so ``torch.load(p, weights_only=True)`` works;
a file that needs more is refused (never executed) and training starts fresh.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import time
from pathlib import Path

import torch

from moola.io_utils import atomic_write_bytes
from moola.train.device import get_rng_state, set_rng_state

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_INTERVAL_S", "RESUME_KEYS", "CheckpointMixin"]

log = logging.getLogger("moola.train.loop")  # one logger name for the loop and its checkpoints
CHECKPOINT_FORMAT = 1
# last.pt is rewritten at most this often (and always on the first, a new-best and the final
# epoch): a small model's epoch takes a fraction of a second, and serialising model + optimizer
# every epoch cost more than its training; a kill loses at most this much work
CHECKPOINT_INTERVAL_S = 2.0
# Settings that shape the optimisation itself: a checkpoint written under other values is not
# resumed. The rest (max_epochs, patience, logging knobs, ...) may change between sessions.
RESUME_KEYS = ("monitor", "mode", "grad_clip")



class CheckpointMixin:
    """Checkpoint writing, clearing and resuming for the Trainer (see the module docstring)."""

    def _checkpoint(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    score: float | None, stopped: str | None, final: bool = True) -> None:
        """Write best (if in the top k) and last.pt atomically, then drop evicted bests."""
        decision = self.keeper.record(epoch, score)
        if self.early.best_epoch == epoch and self.early.wait == 0:
            self._best_state = {k: v.detach().to("cpu", copy=True)
                                for k, v in model.state_dict().items()}
        now = time.monotonic()
        due = (final or decision.save_path is not None or self._last_ckpt_at is None
               or now - self._last_ckpt_at >= CHECKPOINT_INTERVAL_S)
        if not due:
            return
        self._last_ckpt_at = now
        payload = {
            "format": CHECKPOINT_FORMAT, "gate": self.gate, "epoch": epoch, "step": self.step,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "callbacks": {"early_stopping": self.early.state_dict(),
                          "checkpoint_keeper": self.keeper.state_dict()},
            "history": self.history, "settings": self.settings.to_dict(), "score": score,
            "stopped_reason": stopped, "rng": get_rng_state(self.generator, self.dropout_generator,
                                 self.shard_generators),
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        # atomic (temp + rename) but not fsynced: a killed process never leaves a torn file,
        # and an fsync per epoch would cost more than a small model's epoch on a busy disk
        if decision.save_path is not None:
            atomic_write_bytes(decision.save_path, data, fsync=False)
            _atomic_link_or_write(decision.save_path, self.last_path, data)
        else:
            atomic_write_bytes(self.last_path, data, fsync=False)
        for path in decision.evict:
            path.unlink(missing_ok=True)
        self._call_hook(self.on_checkpoint)

    def _fresh_start(self) -> None:
        """A new run: forget the previous run's checkpoints and log in this directory."""
        self.last_path.unlink(missing_ok=True)
        for old in self.ckpt_dir.glob("best-epoch=*.pt"):
            old.unlink()
        self.logger.reset()

    def _restore(self, module: TrainModule, optimizer: torch.optim.Optimizer) -> int | None:
        """Load last.pt if it fits these settings and this model; return the next epoch, or
        None (with the reason logged) to start fresh."""
        if not self.last_path.is_file():
            return None
        try:
            ckpt = torch.load(self.last_path, map_location="cpu", weights_only=True)
            if ckpt.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"checkpoint format {ckpt.get('format')!r}, "
                                 f"expected {CHECKPOINT_FORMAT}")
        except pickle.UnpicklingError as exc:  # weights_only refused an object: never run it
            detail = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln),
                          type(exc).__name__)
            log.warning("[%s] not resuming from %s: refused, it holds pickled Python objects "
                        "(%s) that weights_only loading does not execute; it was not written by "
                        "moola - delete it if you do not know where it came from; starting fresh",
                        self.gate, self.last_path, detail.split(" was not an allowed global")[0])
            return None
        except Exception as exc:  # unreadable or foreign file: not resumable, say why
            log.warning("[%s] not resuming from %s (%s); starting fresh", self.gate, self.last_path, exc)
            return None
        ours = self.settings.to_dict()
        theirs_settings = ckpt["settings"]
        differ = {k: (theirs_settings.get(k), ours[k]) for k in RESUME_KEYS
                  if theirs_settings.get(k) != ours[k]}
        problem = None
        if differ:
            problem = "settings differ: " + ", ".join(
                f"{k} {a!r} -> {b!r}" for k, (a, b) in differ.items())
        else:
            mine = {k: tuple(v.shape) for k, v in module.model.state_dict().items()}
            theirs = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
            groups = [len(g["params"]) for g in optimizer.param_groups]
            if mine != theirs:
                problem = "the model's parameter names or shapes differ"
            elif groups != [len(g["params"]) for g in ckpt["optimizer"]["param_groups"]]:
                problem = "the optimizer's parameter groups differ"
            elif len(ckpt["rng"].get("shards") or ()) != len(self.shard_generators):
                # without their states the shards would draw their first epochs' masks again
                problem = "the number of shards differs"
        if problem:
            log.warning("[%s] not resuming from %s: %s; starting fresh", self.gate,
                        self.last_path, problem)
            return None
        module.model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        self.early.load_state_dict(ckpt["callbacks"]["early_stopping"])
        self.keeper.load_state_dict(ckpt["callbacks"]["checkpoint_keeper"])
        self.keeper.reconcile()
        self.history, self.step = list(ckpt["history"]), int(ckpt["step"])
        set_rng_state(ckpt["rng"], self.generator, self.dropout_generator,
                      self.shard_generators)
        next_epoch = int(ckpt["epoch"]) + 1
        self.logger.drop_from_epoch(next_epoch)
        if self.keeper.best_path is not None:
            best = torch.load(self.keeper.best_path, map_location="cpu", weights_only=True)
            self._best_state = best["model"]
        elif self.early.best_epoch == int(ckpt["epoch"]):
            self._best_state = {k: v.clone() for k, v in ckpt["model"].items()}
        log.info("[%s] resuming from %s at epoch %d (step %d)", self.gate, self.last_path,
                 next_epoch, self.step)
        return next_epoch


def _atomic_link_or_write(src: Path, dst: Path, data: bytes) -> None:
    """Make `dst` hold the same bytes as the just-written `src`: a hard link, renamed into place
    (no second copy), or an atomic write where links are not supported."""
    tmp = dst.with_name(f".{dst.name}.link-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        atomic_write_bytes(dst, data, fsync=False)
