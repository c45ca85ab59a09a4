"""PID-XOR protocol shared by the ``pid-xor`` and ``pid-xor-masking-control`` experiments (SynIB paper App. F.2)."""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxmm.data.synthetic import pid_xor
from jaxmm.experiments._common import configure, experiment_parser, mean_std_table, parse, parse_names
from jaxmm.methods import get_method
from jaxmm.models.multimodal import MLPModelConfig
from jaxmm.train.config import OptimizerConfig, RunConfig, TrainConfig
from jaxmm.train.runs import run as train

TARGET_SYN = (0.05, 0.1, 0.15, 0.2)
# The learned mask of the PID scripts: 20 Adam steps at lr 0.1 with a cosine decay to 0.1x, keep-gate
# logits initialised to +1 (destroy-gate -1), gradient clip 1, early stop after 10 calm steps.
LEARNED = {"mask": "learned", "learned_steps": 20, "learned_lr": 0.1, "learned_init_logit": -1.0,
           "learned_final_lr_fraction": 0.1, "learned_clip": 1.0, "learned_tol": 1e-4}
METHODS = {
    "vanilla": ("vanilla", {}),
    "synib-oracle": ("synib", {"mask": "oracle"}),
    "synib-random": ("synib", {"mask": "random"}),
    "synib-learned": ("synib", LEARNED),
    "masking-random": ("masking_control", {"mask": "random"}),
    "masking-learned": ("masking_control", {k: v for k, v in LEARNED.items()}),
}
BASE = RunConfig(dataset="pid_xor", optimizer=OptimizerConfig(name="adam", lr=3e-4, weight_decay=1e-5),
                 train=TrainConfig(epochs=30, batch_size=64, select="best", select_metric="acc", checkpoint_every=0))


def model_config(width: int) -> MLPModelConfig:
    """Encoders 32→W→W, unimodal heads W→W→1 on detached features, fusion 2W→128→128→1."""
    return MLPModelConfig(encoder_hidden=(width, width), fusion_hidden=(128, 128), unimodal_hidden=(width,),
                          dropout=0.0, detach_unimodal=True)


def target_points(syn=TARGET_SYN) -> list[tuple]:
    """``p_syn`` targets with the rest split evenly between unique-to-x0 and redundancy (``p_u2 = 0``)."""
    return [(round((1 - s) / 2, 6), 0.0, round((1 - s) / 2, 6), s) for s in syn]


def parse_args(prog: str, doc: str, methods, argv):
    """Parses a PID experiment's command line (paper settings by default): (args, method names, compositions)."""
    p = experiment_parser(prog, doc, epochs=BASE.train.epochs)
    p.add_argument("--width", type=int, default=1024, help="encoder width (paper 1024; use 64-128 on CPU)")
    p.add_argument("--points", choices=("targets", "simplex"), default="targets",
                   help="'targets' (p_syn 0.05..0.2) or 'simplex'")
    p.add_argument("--grid-step", type=float, default=0.05, help="simplex grid step (paper 0.05)")
    p.add_argument("--lams", default="0.1,1,10", help="λ_kl candidates, chosen per point and seed by validation")
    p.add_argument("--lam-sp", type=float, default=1.0, help="learned-mask sparsity λ_sp (paper grid 0.1,1,3,5)")
    p.add_argument("--methods", default=",".join(methods))
    p.add_argument("--eval-train", action="store_true", help="per-source train accuracy every epoch (Fig. 8)")
    args = parse(p, argv)
    return args, parse_names(args.methods, METHODS), points_from_args(args)


def method_config(name: str, points, args) -> RunConfig:
    """The run of one shown method: every composition (as data) × the λ candidates × the seeds."""
    method_name, options = METHODS[name]
    wants = get_method(method_name, **options).hparams
    hparams = {"lam_uni": 1.0, **({"lam_sp": args.lam_sp} if "lam_sp" in wants else {}),
               **({"p": 0.5} if "p" in wants else {})}
    sweep = {"dataset_options.probs": list(points)}
    if "lam" in wants:
        sweep["hparams.lam"] = [float(x) for x in args.lams.split(",")]
    cfg = dataclasses.replace(BASE, name=name, method=method_name, method_options=dict(options),
                              model=model_config(args.width), hparams=hparams, sweep=sweep)
    cfg = configure(cfg, seeds=args.seeds, epochs=args.epochs, overrides=args.set)
    cfg.train = dataclasses.replace(cfg.train, eval_train=args.eval_train)
    return cfg


def sweep(methods, points, args, out_path: str):
    """Runs every method; returns ``(acc, syn_acc, chosen λ, history of (last point, first seed))``,
    the first three keyed by ``(method, point)`` with one value per seed."""
    acc, syn_acc, chosen, histories = {}, {}, {}, {}
    seeds = args.seeds
    for m in methods:
        tests, hist, lam = run_method(method_config(m, points, args), f"{out_path}/{m}", args.overwrite)
        for pt in points:
            acc[(m, pt)] = [tests[(pt, s)]["acc"] for s in seeds]
            syn_acc[(m, pt)] = [tests[(pt, s)]["acc/source/syn"] for s in seeds]
            chosen[(m, pt)] = [lam[(pt, s)] for s in seeds]
        histories[m] = hist[(points[-1], seeds[0])]
    return acc, syn_acc, chosen, histories


def by_syn_level(points, table: dict, m: str) -> dict[float, list]:
    """``p_syn`` level -> the values of every composition at that level (seeds pooled)."""
    return {s: [v for pt in points if pt[3] == s for v in table[(m, pt)]] for s in sorted({pt[3] for pt in points})}


def level_tables(methods, points, tables: dict[str, dict]) -> dict[str, str]:
    """Markdown ``mean ± std`` tables with one column per ``p_syn`` level, for each ``{title: table}``."""
    out = {}
    for title, table in tables.items():
        cells = {(m, f"p_syn={s:g}"): v for m in methods for s, v in by_syn_level(points, table, m).items()}
        cols = [f"p_syn={s:g}" for s in sorted({pt[3] for pt in points})]
        out[title] = mean_std_table(methods, cols, cells, "method")
    return out


def points_from_args(args) -> list[tuple]:
    """The compositions an invocation sweeps."""
    return target_points() if args.points == "targets" else pid_xor.simplex_grid(args.grid_step)


def run_method(cfg: RunConfig, run_dir: str, overwrite: bool = False):
    """All (point, λ, seed) runs of one method as one vmapped program; λ picked per (point, seed) on validation.

    Returns:
      (per (point, seed) test metrics, per (point, seed) validation history of the chosen λ, chosen λs).
    """
    (program,) = train(cfg, run_dir, overwrite=overwrite)
    result = program.fit
    runs = [(tuple(point["dataset_options.probs"]), seed, point.get("hparams.lam"))
            for point, seed in zip(program.points, program.seeds)]
    tests, histories, chosen = {}, {}, {}
    for pt, s, _ in dict.fromkeys((pt, s, None) for pt, s, _ in runs):
        idx = [i for i, (p2, s2, _) in enumerate(runs) if p2 == pt and s2 == s]
        best = max(idx, key=lambda i: result.val[i]["acc"])
        tests[(pt, s)] = result.test[best]
        chosen[(pt, s)] = runs[best][2]
        histories[(pt, s)] = [{k: (v[best] if isinstance(v, (list, np.ndarray)) and len(v) == len(runs) else v)
                               for k, v in h.items()} for h in result.history]
    return tests, histories, chosen
