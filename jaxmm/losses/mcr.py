"""MCR (Multimodal Competition Regularizer, Kontras et al., NeurIPS 2025) loss terms.

From the official code ``kkontras/MCR``, whose README states the loss (see the MCR page of the
documentation):

* MIPD (:func:`mipd_loss`, :func:`permutation_divergences`): permute one modality's latent
  within the batch, re-apply the fusion head, and measure the Jensen–Shannon divergence ``D_n``
  from the clean fused prediction. Each encoder maximises the divergence caused by permuting
  *its own* modality; the game coupling (:func:`coupling_matrix`) sets how it treats the
  divergence caused by permuting the others:
  ``∇_{θ_m} L = Σ_n C[m, n] ∇_{θ_m}(−D_n)`` with ``C[m, m] = 1`` and ``C[m, n] = k`` otherwise,
  ``k ∈ {−1, 0, 1}`` = greedy / independent / collaborative.
* the supervised NT-Xent alignment between the modalities' latents (:func:`supervised_nt_xent`).

Both take latents, not inputs: the caller re-encodes the batch (eval mode, with gradients) and
supplies the fusion head as ``apply_fn(latents) -> logits``.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxmm._checks import check_choice
from jaxmm.batch_reduce import batch_sum, device_count, gather_rows, local_rows
from jaxmm.losses._common import l2_normalize
from jaxmm.losses.kl import categorical_kl

COUPLINGS = {"greedy": -1.0, "independent": 0.0, "collaborative": 1.0}


def coupling_matrix(num_modalities: int, coupling: str = "greedy") -> jax.Array:
    """Game coupling weights ``C[m, n]``: 1 on the diagonal, ``k`` off it.

    Args:
      num_modalities: ``M``.
      coupling: ``"greedy"`` (k = −1, the CREMA-D runs), ``"independent"`` (0) or
        ``"collaborative"`` (+1).

    Returns:
      ``[M, M]``: the weight of ``∇(−D_n)`` (permuting modality ``n``) in encoder ``m``'s gradient.
    """
    check_choice("coupling", coupling, tuple(COUPLINGS))
    if num_modalities < 2:
        raise ValueError(f"MCR needs at least 2 modalities, got {num_modalities}.")
    eye = jnp.eye(num_modalities)
    return eye + COUPLINGS[coupling] * (1.0 - eye)


def permutation_divergences(apply_fn: Callable[[dict[str, jax.Array]], jax.Array],
                            latents: Mapping[str, jax.Array], reference_logits: jax.Array,
                            key: jax.Array, *, coupling: str = "greedy",
                            num_permutations: int = 32) -> dict[str, jax.Array]:
    """Per-example divergences ``D_n`` caused by permuting each modality's latent.

    For each modality ``n`` and each of ``num_permutations`` random permutations ``π`` of the
    global batch (any permutation, as the code's "rand"), ``D_n`` is the JSD between
    ``softmax(apply_fn(latents with z_n → z_n[π]))`` and ``softmax(reference_logits)``, averaged
    over the permutations. The gradient reaching latent ``m`` through ``D_n`` is scaled by
    ``C[m, n]`` (:func:`coupling_matrix`), which reproduces the code's stop-gradient bookkeeping in
    one forward pass per permutation. The gradient reaching ``reference_logits`` (the training
    pass's fused logits, not detached in the code) is scaled by ``1 + k(M − 1)`` — 0 for greedy
    with two modalities, where the code's separate terms cancel on it — and by 1 for
    collaborative, whose code has one term. Parameters of ``apply_fn`` receive the unscaled
    gradient; with the code's linear head ``W_a a + W_v v``, route per-modality head weights with
    the encoders if the exact head gradients matter.

    Args:
      apply_fn: the fusion head, ``{name: [B, D_name]} -> [B, K]`` logits; pure, vmappable.
      latents: modality name -> ``[B, D]`` latent.
      reference_logits: ``[B, K]`` clean fused logits ``f̄``.
      key: PRNG key for the permutations.
      coupling: see :func:`coupling_matrix`.
      num_permutations: ``P`` (code: ``num_samples`` = 32).

    Returns:
      Modality name -> ``[B]`` divergence (0 for a modality the head ignores).
    """
    names = tuple(latents)
    c = coupling_matrix(len(names), coupling)
    batch = reference_logits.shape[0]
    for name in names:
        if latents[name].shape[0] != batch:
            raise ValueError(f"latent {name!r} has {latents[name].shape[0]} rows but "
                             f"reference_logits has {batch}; pass the same batch.")
    ref_scale = 1.0 if coupling == "collaborative" else 1.0 + COUPLINGS[coupling] * (len(names) - 1)
    reference = _scale_grad(reference_logits, ref_scale)
    total = batch * device_count()
    order = jnp.broadcast_to(jnp.arange(total), (len(names), num_permutations, total))
    permutations = local_rows(jax.random.permutation(key, order, axis=-1, independent=True), axis=-1)
    divergences = {}
    for n, target in enumerate(names):
        scaled = {m: _scale_grad(latents[m], c[i, n]) for i, m in enumerate(names)}
        donors = gather_rows(scaled[target])

        def divergence(perm, target=target, scaled=scaled, donors=donors):
            permuted = dict(scaled, **{target: donors[perm]})
            return _jensen_shannon(apply_fn(permuted), reference)

        divergences[target] = jnp.mean(jax.vmap(divergence)(permutations[n]), axis=0)
    return divergences


def mipd_loss(apply_fn: Callable[[dict[str, jax.Array]], jax.Array],
              latents: Mapping[str, jax.Array], reference_logits: jax.Array, key: jax.Array, *,
              coupling: str = "greedy", num_permutations: int = 32, where=None) -> jax.Array:
    """The MIPD term ``−Σ_n D_n`` per example, with the game-coupled gradients.

    Each encoder is pushed to make the prediction depend on its own modality (maximise ``D_m``)
    and, depending on the coupling, on the others' less (greedy), not at all (independent) or
    more (collaborative). See :func:`permutation_divergences` for ``D_n`` and the gradients.

    Args:
      apply_fn: the fusion head, ``{name: [B, D_name]} -> [B, K]`` logits; pure, vmappable.
      latents: modality name -> ``[B, D]`` latent (re-encoded in eval mode, with gradients).
      reference_logits: ``[B, K]`` clean fused logits ``f̄``.
      key: PRNG key for the permutations.
      coupling: see :func:`coupling_matrix`.
      num_permutations: ``P`` (code: 32).
      where: optional ``[B]`` boolean; excluded examples get 0 (they may still be permutation
        donors, so prefer full batches).

    Returns:
      ``[B]`` per-example loss; multiply by ``λ`` (code ``l``: 0.1 on CREMA-D).
    """
    divergences = permutation_divergences(apply_fn, latents, reference_logits, key,
                                          coupling=coupling, num_permutations=num_permutations)
    loss = -sum(divergences.values())
    return loss if where is None else jnp.where(where, loss, 0.0)


def supervised_nt_xent(embeddings: Sequence[jax.Array], labels: jax.Array, *,
                       temperature: float = 0.5, where=None) -> jax.Array:
    """Supervised NT-Xent over the modalities' latents (pytorch-metric-learning semantics).

    The ``M·B`` L2-normalised embeddings ``[z^1; …; z^M]`` carry labels ``[y; …; y]``. Every
    ordered pair ``(i, j)``, ``j ≠ i``, with equal labels is a positive, and costs
    ``−log(e^{s_ij} / (e^{s_ij} + Σ_{k: y_k ≠ y_i} e^{s_ik}))`` with ``s = cos / τ``; the loss is
    the mean over positive pairs (0 when there are none). Each example is given the pairs
    anchored at its ``M`` copies, rescaled so that the mean over included examples equals that
    pair mean. Pairs, candidates and counts span the global batch (:mod:`jaxmm.batch_reduce`).

    Args:
      embeddings: one ``[B, D]`` latent per modality (same ``D``).
      labels: ``[B]`` class ids.
      temperature: ``τ`` (code: 0.5).
      where: optional ``[B]`` boolean; excluded examples are neither anchors nor candidates and
        get 0.

    Returns:
      ``[B]`` per-example loss; reduce with a mean over the included examples.
    """
    if not embeddings or any(e.shape != embeddings[0].shape for e in embeddings):
        raise ValueError(f"pass [B, D] latents of one shape, got {[e.shape for e in embeddings]}.")
    batch, num = labels.shape[0], len(embeddings)
    if embeddings[0].shape[0] != batch:
        raise ValueError(f"latents have {embeddings[0].shape[0]} rows but labels {batch}.")
    valid = jnp.ones((batch,), bool) if where is None else jnp.asarray(where, bool)
    # Anchors: this device's rows of every modality; candidates: every row of the global batch.
    y = jnp.tile(gather_rows(labels), num)
    candidates = jnp.tile(gather_rows(valid), num)
    z = l2_normalize(jnp.concatenate([gather_rows(e) for e in embeddings], axis=0))
    columns = jnp.arange(z.shape[0])
    anchors = local_rows(columns.reshape(num, -1), axis=1).reshape(-1)
    pair = jnp.tile(valid, num)[:, None] & candidates[None, :]
    same = (jnp.tile(labels, num)[:, None] == y[None, :]) & pair
    positive = same & (anchors[:, None] != columns[None, :])
    negative = ~same & pair
    z_anchor = local_rows(z.reshape(num, -1, z.shape[-1]), axis=1).reshape(num * batch, -1)
    s = (z_anchor @ z.T) / temperature
    # A large finite floor instead of −inf keeps gradients finite when a row has no negative.
    neg_lse = jax.nn.logsumexp(jnp.where(negative, s, -1e9), axis=1, keepdims=True)
    pair_loss = jnp.where(positive, jnp.logaddexp(s, neg_lse) - s, 0.0)
    per_anchor = jnp.sum(pair_loss, axis=1).reshape(num, batch).sum(0)
    n_pairs, n_valid = batch_sum(jnp.sum(positive, axis=1)), jnp.sum(candidates) / num
    loss = per_anchor * n_valid / jnp.maximum(n_pairs, 1)
    return loss if where is None else jnp.where(where, loss, 0.0)


def _jensen_shannon(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
    """``½[KL(p‖m) + KL(q‖m)]``, ``m = (p + q)/2``, per example, in log space."""
    log_p = jax.nn.log_softmax(p_logits, axis=-1)
    log_q = jax.nn.log_softmax(q_logits, axis=-1)
    log_m = jnp.logaddexp(log_p, log_q) - jnp.log(2.0)
    return 0.5 * (categorical_kl(log_p, log_m) + categorical_kl(log_q, log_m))


def _scale_grad(x: jax.Array, scale) -> jax.Array:
    """Identity in the forward pass; multiplies the backward gradient by ``scale``."""
    return scale * x + (1.0 - scale) * jax.lax.stop_gradient(x)
