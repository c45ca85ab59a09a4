"""DMIL: information-theoretic decomposition for multimodal interaction learning (CVPR 2026).

No official code exists; the objectives follow a third-party note reproducing the paper's equations
[NOTE] and every parametrisation is our inference [INF], exposed as an option (defaults in
:func:`dmil`). Per modality, the encoder feature ``Z^m`` is split by the intra-modality
decomposition (ID) into a predictive ``M^m`` and a residual ``N^m`` (Gaussian heads, a decoder
``Dec([M; N]) ≈ Z``, a linear head on ``M``). With two modalities (``variant="full"``) the
consistency decomposition (CD) maps each ``M^m`` to ``R^(m)`` (shared; ``R = ½(R^(1) + R^(2))``)
and ``U^m`` (unique); the synergy ``S`` is an MLP on ``[N¹; N²; N¹⊙N²; |N¹−N²|]``; each component
``c ∈ (R, U¹, U², S)`` has a linear head, and a gating MLP mixes the four predictions per sample.
``variant="id_only"`` (any number of modalities, the note's "DMIL-ID") gates the ``M^m`` heads
instead. The loss terms are those of :mod:`jaxmm.losses.dmil`.

Training has three stages (boundaries in epochs, option ``stage_epochs``): stage 1 trains the
encoders and ID on ``L_1``; stage 2 freezes them and trains CD, synergy, heads and gate on
``L_2`` (+ ``L_t(Ŷ)``, option ``gate_in_stage2``); stage 3 fine-tunes everything on ``L_3``.
Frozen parameters get a zero gradient and keep their exact values (the method's ``trainable``
mask, which the trainer applies to gradients and updates: no moments, weight decay or momentum
drift).
Inference uses the means of the Gaussian heads; the fused prediction is the gated mixture and
the "unimodal" predictions are the ``M^m`` heads. :func:`dmil_gate_weights` returns the
per-sample gate.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm._checks import check_choice
from jaxmm.batch_reduce import batch_mean
from jaxmm.losses.dmil import (
    ALIGNMENTS, MIXES, PENALTIES, RECONSTRUCTION_ERRORS, cd_variational_loss, club_fit_loss,
    gated_aggregate, id_variational_loss, redundancy_alignment_loss, reparameterize,
    stage_term_weights, synergy_features)
from jaxmm.methods.base import Method, ModelSpec, Terms
from jaxmm.methods.registry import register
from jaxmm.models.groups import path_keys
from jaxmm.models.mlp import MLP, linear
from jaxmm.models.multimodal import ModelOutput

VARIANTS = ("full", "id_only")
LAYERS = ("variational", "fc")
COMPONENTS = ("R", "U1", "U2", "S")
_STAGE1_MODULES = ("id",)  # extras/dmil/<these> train with the encoders in stage 1


class _Gaussian(nnx.Module):
    """``x -> (μ, log σ²)`` of a diagonal Gaussian head (``fc``: a plain layer, log σ² = 0).

    The log-variance bias starts at ``init_logvar``.
    """

    def __init__(self, d_in: int, d_out: int, variational: bool, rngs: nnx.Rngs,
                 init_logvar: float = 0.0):
        self.layer = linear(d_in, 2 * d_out if variational else d_out, rngs=rngs)
        if variational:
            self.layer.bias[...] = self.layer.bias[...].at[d_out:].set(init_logvar)
        self.variational = variational

    def __call__(self, x, key=None):
        """``(sample, μ, log σ²)``; the sample is ``μ`` without a key or for ``fc`` layers."""
        out = self.layer(x)
        if not self.variational:
            return out, out, jnp.zeros_like(out)
        mu, logvar = jnp.split(out, 2, axis=-1)
        return (mu if key is None else reparameterize(key, mu, logvar)), mu, logvar


class _IDModule(nnx.Module):
    """Intra-modality decomposition of one modality: ``q(M|Z)``, ``q(N|Z)``, decoder, head on M."""

    def __init__(self, width: int, latent: int, num_outputs: int, variational: bool,
                 init_logvar: float, rngs: nnx.Rngs):
        self.q_m = _Gaussian(width, latent, variational, rngs, init_logvar)
        self.q_n = _Gaussian(width, latent, variational, rngs, init_logvar)
        self.decoder = linear(2 * latent, width, rngs=rngs)
        self.head = linear(latent, num_outputs, rngs=rngs)


class _CDModule(nnx.Module):
    """Consistency decomposition of one modality's ``M``: ``q(R|M)``, ``q(U|M)`` (+ CLUB net)."""

    def __init__(self, latent: int, variational: bool, club: bool, init_logvar: float,
                 rngs: nnx.Rngs):
        self.q_r = _Gaussian(latent, latent, variational, rngs, init_logvar)
        self.q_u = _Gaussian(latent, latent, variational, rngs, init_logvar)
        self.club = _Gaussian(latent, latent, True, rngs) if club else None


class DMILModule(nnx.Module):
    """All of DMIL's parameters besides the encoders (``model.extras["dmil"]``).

    Args:
      num_modalities: number of modalities (2 for ``variant="full"``).
      width: encoder output width ``D``.
      latent: width ``d`` of ``M, N, R, U, S``.
      num_outputs: logits per head.
      variant: ``"full"`` or ``"id_only"``.
      layers: ``"variational"`` Gaussian heads or the ``"fc"`` ablation.
      penalty: ``"orthogonality"`` or ``"club"`` (adds CLUB's variational networks).
      init_logvar: initial log-variance of the Gaussian heads.
      rngs: initialisation randomness.
    """

    def __init__(self, num_modalities: int, width: int, latent: int, num_outputs: int, *,
                 variant: str, layers: str, penalty: str, init_logvar: float, rngs: nnx.Rngs):
        variational = layers == "variational"
        self.id = nnx.List([_IDModule(width, latent, num_outputs, variational, init_logvar, rngs)
                            for _ in range(num_modalities)])
        full = variant == "full"
        self.cd = nnx.List([_CDModule(latent, variational, penalty == "club", init_logvar, rngs)
                            for _ in range(num_modalities)]) if full else None
        self.synergy = nnx.List([linear(4 * latent, latent, rngs=rngs),
                                 linear(latent, latent, rngs=rngs)]) if full else None
        self.heads = nnx.List([linear(latent, num_outputs, rngs=rngs)
                               for _ in COMPONENTS]) if full else None
        num_components = len(COMPONENTS) if full else num_modalities
        self.gate = MLP([num_components * latent, latent, num_components], rngs=rngs)

    def synergy_of(self, n1, n2):
        """``S = h + ReLU(W₂ h)`` with ``h = ReLU(W₁ [N¹; N²; N¹⊙N²; |N¹−N²|])`` [INF]."""
        h = jax.nn.relu(self.synergy[0](synergy_features(n1, n2)))
        return h + jax.nn.relu(self.synergy[1](h))


def _apply_frozen(module, x):
    """``module(x)`` with gradient-stopped parameters (CLUB's bound must not train its network)."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.lax.stop_gradient(state))(x)


def decompose(model, inputs, *, key=None, gate_detach: bool = False, mix: str = "logits"):
    """DMIL's forward pass: every component, prediction and gate.

    Args:
      model: a model whose ``extras["dmil"]`` is a :class:`DMILModule`.
      inputs: modality -> ``[B, ...]`` inputs.
      key: PRNG key for the reparameterised samples; ``None`` uses the means (inference).
      gate_detach: the gate reads gradient-stopped components.
      mix: see :func:`jaxmm.losses.dmil.gated_aggregate`.

    Returns:
      dict with ``z``, ``id`` (per modality ``(m, mu_m, lv_m, n, mu_n, lv_n)``), ``m_logits``,
      ``recon``; for the full variant ``cd`` (per modality ``(r, mu_r, lv_r, u, mu_u, lv_u)``),
      ``R``, ``S``; and ``components`` (list of ``[B, d]``), ``component_logits``,
      ``gate_logits``, ``logits`` (the fused prediction).
    """
    dm = model.extras["dmil"]
    z = model.encode(inputs)
    mods = model.modalities
    keys = iter(jax.random.split(key, 6 * len(mods)) if key is not None else [None] * 6 * len(mods))
    out = {"z": z, "id": [], "m_logits": {}, "recon": []}
    for i, m in enumerate(mods):
        ident = dm.id[i]
        mm, mu_m, lv_m = ident.q_m(z[m], next(keys))
        nn_, mu_n, lv_n = ident.q_n(z[m], next(keys))
        out["id"].append((mm, mu_m, lv_m, nn_, mu_n, lv_n))
        out["recon"].append(ident.decoder(jnp.concatenate([mm, nn_], axis=-1)))
        out["m_logits"][m] = ident.head(mm)
    if dm.cd is None:
        components = [e[0] for e in out["id"]]
        component_logits = list(out["m_logits"].values())
    else:
        out["cd"] = [dm.cd[i].q_r(out["id"][i][0], next(keys)) + dm.cd[i].q_u(out["id"][i][0], next(keys))
                     for i in range(2)]
        out["R"] = 0.5 * (out["cd"][0][0] + out["cd"][1][0])
        out["S"] = dm.synergy_of(out["id"][0][3], out["id"][1][3])
        components = [out["R"], out["cd"][0][3], out["cd"][1][3], out["S"]]
        component_logits = [head(c) for head, c in zip(dm.heads, components)]
    gate_in = jnp.concatenate(components, axis=-1)
    out["components"], out["component_logits"] = components, component_logits
    out["gate_logits"] = dm.gate(jax.lax.stop_gradient(gate_in) if gate_detach else gate_in)
    out["logits"] = gated_aggregate(component_logits, out["gate_logits"], mix=mix)
    return out


def dmil_gate_weights(model, inputs) -> jax.Array:
    """Per-sample gate weights ``g(x)`` ``[B, C]`` (summing to 1) of an evaluation-mode DMIL model.

    ``C`` is 4 (``R, U¹, U², S``) for the full variant and the number of modalities for
    ``id_only``.
    """
    return jax.nn.softmax(decompose(model, inputs)["gate_logits"], axis=-1)


def stage_of(epoch, stage_epochs) -> jax.Array:
    """Stage (1, 2 or 3) of a 0-based ``epoch`` (may be traced) for ``stage_epochs = (e₁, e₂)``."""
    e1, e2 = stage_epochs
    epoch = jnp.asarray(epoch)
    return 1 + (epoch >= e1).astype(jnp.int32) + (epoch >= e1 + e2).astype(jnp.int32)


def trained_in_stage(params, stage):
    """Booleans shaped like ``params``: which parameters train in ``stage`` (may be traced).

    Stage 1 trains the encoders and ``extras/dmil/id``; stage 2 the rest of
    ``extras/dmil`` (CD, synergy, heads, gate, CLUB); stage 3 everything.
    """
    def rule(path, _):
        keys = path_keys(path)
        first = keys[0] == "encoders" or (keys[0] == "extras" and keys[2] in _STAGE1_MODULES)
        return jnp.where(stage == 3, True, jnp.where(stage == 1, first, not first))

    return jax.tree_util.tree_map_with_path(rule, params)


@register("dmil")
def dmil(feature_width: int = 0, num_modalities: int = 2, latent_width: int = 0,
         variant: str = "full", layers: str = "variational", stage_epochs: tuple = (10, 10),
         alignment: str = "infonce", align_temperature: float = 0.1,
         penalty: str = "orthogonality", reconstruction_error: str = "sse",
         recon_detach_target: bool = True, init_logvar: float = -4.0, mix: str = "logits",
         gate_detach: bool = False, gate_in_stage2: bool = True) -> Method:
    """DMIL: ID/CD decomposition, synergy from residuals, per-sample gate; three training stages.

    Args:
      feature_width: the encoders' output width ``D`` (0: read from the model, whose encoders
        must then all have the same width; a value > 0 is checked against the model).
      num_modalities: number of modalities the model has.
      latent_width: width ``d`` of every latent (0: ``feature_width``) [INF].
      variant: ``"full"`` (two modalities: ID + CD + synergy, 4-way gate) or ``"id_only"``
        (any number: ID per modality, gate over the ``M^m`` heads; the note's DMIL-ID).
      layers: ``"variational"`` (Gaussian heads with KL) or ``"fc"`` (the ablation: plain
        layers, no KL).
      stage_epochs: epochs of stages 1 and 2; stage 3 runs for the rest [INF: unknown].
      alignment: ``L_Align(R)``: ``"infonce"`` (default) or ``"mse"`` [INF].
      align_temperature: InfoNCE temperature [INF, 0.1].
      penalty: the ``I(U; R)`` bound: ``"orthogonality"`` (default) or ``"club"`` [INF].
      reconstruction_error: ``"sse"`` (default) or ``"mse"`` [INF].
      recon_detach_target: ``Z^m`` is a fixed reconstruction target, so the encoder cannot lower
        the error by shrinking ``Z`` [INF, default True].
      init_logvar: initial log-variance of the Gaussian heads of ``M, N, R, U`` [INF, −4, i.e.
        σ ≈ 0.14]: with σ ≈ 1 at initialisation the samples drown the small initial means and
        the heads on them barely learn within a stage.
      mix: the gate mixes component ``"logits"`` (note; default) or ``"probs"`` [INF].
      gate_detach: the gate reads gradient-stopped components [INF, default False].
      gate_in_stage2: train the gate in stage 2 with ``L_t(Ŷ)`` [INF, default True].

    Hyper-parameters (vmappable): ``alpha`` (α, alignment in ``L_2``, 1), ``beta`` (β, ``L_1``
    in ``L_3``, 0.1), ``gamma`` (γ, ``L_2`` in ``L_3``, 0.1), ``beta_kl`` (KL weight inside
    ``L_Var``, 1e-3: the usual VIB β; at 1 the KL over a ``d``-wide latent outweighs the task
    CE and the latents collapse to the prior) [INF defaults].
    """
    check_choice("variant", variant, VARIANTS)
    check_choice("layers", layers, LAYERS)
    check_choice("alignment", alignment, ALIGNMENTS)
    check_choice("penalty", penalty, PENALTIES)
    check_choice("reconstruction_error", reconstruction_error, RECONSTRUCTION_ERRORS)
    check_choice("mix", mix, MIXES)
    stage_epochs = tuple(int(e) for e in stage_epochs)
    if len(stage_epochs) != 2 or min(stage_epochs) < 0:
        raise ValueError(f"stage_epochs={stage_epochs} must be two non-negative epoch counts "
                         "(stage 1, stage 2); stage 3 runs for the remaining epochs.")
    if variant == "full" and num_modalities != 2:
        raise ValueError(f"variant='full' needs exactly 2 modalities, got num_modalities="
                         f"{num_modalities}; use variant='id_only' for three or more.")
    if num_modalities < 1 or latent_width < 0:
        raise ValueError(f"need num_modalities >= 1 and latent_width >= 0, got {num_modalities}, "
                         f"{latent_width}.")
    variational = layers == "variational"
    full = variant == "full"
    club = full and penalty == "club"

    def extra_modules(model, num_outputs, rngs):
        feature_widths = model.feature_widths
        widths = set(feature_widths.values())
        width = feature_width or (widths.pop() if len(widths) == 1 else 0)
        if len(feature_widths) != num_modalities or set(feature_widths.values()) != {width}:
            raise ValueError(f"dmil was built for {num_modalities} modalities of width {feature_width or 'any'} "
                             f"(equal for all), but the model's encoders output {dict(feature_widths)}; set "
                             "num_modalities (and feature_width, or equal encoder widths) to match.")
        return {"dmil": DMILModule(num_modalities, width, latent_width or width,
                                   num_outputs, variant=variant, layers=layers, penalty=penalty,
                                   init_logvar=init_logvar, rngs=rngs)}

    def terms(model, batch, ctx):
        beta_kl = ctx.hparams["beta_kl"] if variational else 0.0
        out = decompose(model, batch.inputs, key=ctx.rng, gate_detach=gate_detach, mix=mix)
        y = batch.label
        t = {"task_m": sum(ctx.loss(l, y) for l in out["m_logits"].values()),
             "var_mn": sum(id_variational_loss(out["z"][m], rec, mu_m, lv_m, mu_n, lv_n,
                                               beta_kl=beta_kl, detach_target=recon_detach_target,
                                               reconstruction_error=reconstruction_error)
                           for m, rec, (_, mu_m, lv_m, _, mu_n, lv_n)
                           in zip(model.modalities, out["recon"], out["id"])),
             "task_fused": ctx.loss(out["logits"], y)}
        if full:
            r = out["R"]
            t["task_components"] = sum(ctx.loss(l, y) for l in out["component_logits"])
            t["align_r"] = redundancy_alignment_loss(out["cd"][0][0], out["cd"][1][0], kind=alignment,
                                                     temperature=align_temperature)
            var_ur, club_fit = 0.0, 0.0
            for cd_mod, (_, mu_r, lv_r, u, mu_u, lv_u) in zip(model.extras["dmil"].cd, out["cd"]):
                club_mu = club_lv = None
                if club:
                    _, club_mu, club_lv = _apply_frozen(cd_mod.club, u)
                    _, fit_mu, fit_lv = cd_mod.club(jax.lax.stop_gradient(u))
                    club_fit = club_fit + club_fit_loss(jax.lax.stop_gradient(r), fit_mu, fit_lv)
                var_ur = var_ur + cd_variational_loss(u, r, mu_u, lv_u, mu_r, lv_r, beta_kl=beta_kl,
                                                      penalty=penalty, club_mu=club_mu,
                                                      club_logvar=club_lv)
            t["var_ur"] = var_ur
            if club:
                t["club_fit"] = club_fit
        gate = jax.nn.softmax(out["gate_logits"], axis=-1)
        logs = {"stage": stage_of(ctx.epoch, stage_epochs),
                **{f"gate/{c}": batch_mean(gate[:, i])
                   for i, c in enumerate(COMPONENTS if full else model.modalities)}}
        return Terms(t, logs=logs)

    def term_weights(ctx):
        stage = stage_of(ctx.epoch, stage_epochs)
        hp = ctx.hparams
        by_stage = [stage_term_weights(s, alpha=hp["alpha"], beta=hp["beta"], gamma=hp["gamma"],
                                       gate_in_stage2=gate_in_stage2) for s in (1, 2, 3)]
        names = ["task_m", "var_mn", "task_fused"]
        if full:
            names += ["task_components", "align_r", "var_ur"] + (["club_fit"] if club else [])
        weights = {}
        for n in names:
            w1, w2, w3 = (d.get(n, 0.0) for d in by_stage)
            if n == "club_fit":  # CLUB's network trains whenever CD does
                w1, w2, w3 = 0.0, 1.0, 1.0
            weights[n] = jnp.where(stage == 1, w1, jnp.where(stage == 2, w2, w3))
        return weights

    def forward(model, inputs, ctx=None):
        out = decompose(model, inputs, mix=mix)
        return ModelOutput(logits=out["logits"], unimodal_logits=out["m_logits"], features=out["z"])

    return Method(
        terms=terms, term_weights=term_weights,
        hparams={"alpha": 1.0, "beta": 0.1, "gamma": 0.1, "beta_kl": 1e-3},
        model=ModelSpec(fuse=False, unimodal_heads=False, extras=extra_modules,
                        pieces=("encode", "feature_widths")),
        forward=forward,
        trainable=lambda params, ctx: trained_in_stage(params, stage_of(ctx.epoch, stage_epochs)),
    )
