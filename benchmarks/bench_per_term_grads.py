"""Per-term gradients: one forward + a hand-written vmapped VJP against ``jax.jacrev`` (the trainer's way).

Both compute the Jacobian of the stacked term means with respect to the parameters (the
``term_grads`` that MMPareto, RedReg and MCR's game read). Timed side by side in one process,
interleaved round by round so machine load hits both alike; the ratio is ``jacrev / vjp``.

    python -m benchmarks.bench_per_term_grads [--model mlp|resnet] [--rounds 15]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks._common import device_name, jax_environment
from jaxmm.data.types import Batch
from jaxmm.methods import get_method
from jaxmm.methods.base import StepContext
from jaxmm.models.multimodal import ModelConfig
from jaxmm.train.state import build_model, model_factory

MODELS = {
    "mlp": (ModelConfig(encoder_hidden=(256, 256), fusion_hidden=(256,)), {"a": (64,), "b": (64,)}, 256),
    "resnet": (ModelConfig(encoders={"audio": "audio", "visual": "visual"}, fusion_hidden=()),
               {"audio": (64, 48, 1), "visual": (1, 64, 64, 3)}, 16),
}


def setup(model: str):
    """MMPareto's term means as a function of the parameters, and the parameters."""
    cfg, shapes, batch_size = MODELS[model]
    method = get_method("mmpareto")
    net = build_model(method, model_factory(method, cfg, shapes, 6), 6, nnx.Rngs(0))
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    rng = np.random.default_rng(0)
    batch = Batch({m: jnp.asarray(rng.normal(size=(batch_size, *s)), jnp.float32) for m, s in shapes.items()},
                  jnp.asarray(rng.integers(0, 6, batch_size)), jnp.arange(batch_size), {})
    ctx = StepContext(hparams={"gamma": 1.5}, modalities=net.modalities)

    def term_means(p):
        terms = method.terms(nnx.merge(graphdef, p, rest, copy=True), batch, ctx)
        return {k: jnp.mean(v) for k, v in terms.losses.items()}, None

    def stacked(p):
        means, _ = term_means(p)
        return jnp.stack([means[k] for k in sorted(means)])

    def vmapped_vjp(p):
        vec, pullback = jax.vjp(stacked, p)
        return jax.vmap(pullback)(jnp.eye(vec.shape[0], dtype=vec.dtype))[0]

    vjp = jax.jit(vmapped_vjp)
    jacrev = jax.jit(jax.jacrev(stacked))
    return params, vjp, jacrev


def main(argv=None) -> dict:
    """Runs the comparison and writes ``benchmarks/results/per_term_grads_<device>.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="mlp")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    params, vjp, jacrev = setup(args.model)
    a, b = jax.block_until_ready(vjp(params)), jax.block_until_ready(jacrev(params))  # compile
    max_diff = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    times = {"vjp": [], "jacrev": []}
    for _ in range(args.rounds):
        for name, fn in (("vjp", vjp), ("jacrev", jacrev)):
            start = time.perf_counter()
            jax.block_until_ready(fn(params))
            times[name].append(1e3 * (time.perf_counter() - start))
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {"model": args.model, "median_ms": medians, "jacrev_over_vjp": medians["jacrev"] / medians["vjp"],
              "max_abs_difference": max_diff, "rounds": args.rounds, "machine": jax_environment()}
    out = args.out or os.path.join(os.path.dirname(__file__), "results",
                                   f"per_term_grads_{args.model}_{device_name()}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return result


if __name__ == "__main__":
    main()
