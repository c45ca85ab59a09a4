"""Orbax checkpoints of the train state, the loop state and the data position."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_savable(tree):
    """Typed PRNG keys (nnx dropout streams) become their raw key data."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_savable(tree, like):
    return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
                        if _is_key(ref) else x, tree, like)


class Checkpointer:
    """Saves and restores ``{'state', 'loop'}`` pytrees under ``<run_dir>/checkpoints``.

    Args:
      directory: the run folder.
      max_to_keep: number of checkpoints kept.
    """

    def __init__(self, directory: str, max_to_keep: int = 2):
        path = os.path.abspath(os.path.join(directory, "checkpoints"))
        self.manager = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))

    def latest_epoch(self) -> int | None:
        """Epoch of the newest checkpoint, or ``None``."""
        return self.manager.latest_step()

    def save(self, epoch: int, tree) -> None:
        """Writes ``tree`` as the checkpoint of ``epoch`` (blocks until written)."""
        self.manager.save(epoch, args=ocp.args.StandardSave(_to_savable(tree)))
        self.manager.wait_until_finished()

    def restore(self, like, epoch: int | None = None):
        """Restores the checkpoint of ``epoch`` (default latest) with the structure of ``like``."""
        epoch = self.latest_epoch() if epoch is None else epoch
        if epoch is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.manager.directory}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_savable(like))
        restored = self.manager.restore(epoch, args=ocp.args.StandardRestore(target))
        return _from_savable(restored, like)
