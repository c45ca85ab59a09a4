"""Masking-only control on PID-XOR (SynIB paper App. G, Fig. 11).

Same masks as SynIB, used as input augmentation (CE on clean + masked copies)
instead of the counterfactual KL penalty; compared with vanilla and SynIB
across the synergy fraction.

    jaxmm experiment pid-xor-masking-control [--width 1024] [--points targets|simplex]
"""
from __future__ import annotations

import numpy as np

from jaxmm.experiments import _pid
from jaxmm.experiments._common import Timer, finish, output_dir, pyplot, save_figure

METHODS = ("vanilla", "masking-random", "masking-learned", "synib-random", "synib-learned")


def plot_vs_syn(acc: dict, syn_acc: dict, methods, points, path: str) -> None:
    """Overall and synergy-source accuracy against p_syn (averaged over the other coordinates)."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for m in methods:
        for ax, table in zip(axes, (acc, syn_acc)):
            levels = _pid.by_syn_level(points, table, m)
            ax.plot(list(levels), [np.mean(v) for v in levels.values()], marker="o", label=m)
    for ax, title in zip(axes, ("fusion test accuracy", "synergy-source test accuracy")):
        ax.set(xlabel="p_syn", title=title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle("Masking-only control vs SynIB (Fig. 11)")
    save_figure(fig, path)


def main(argv=None) -> None:
    """Command-line entry."""
    args, methods, points = _pid.parse_args("jaxmm experiment pid-xor-masking-control", __doc__, METHODS, argv)
    out = output_dir(args.out_dir, f"pid-xor-masking-control-{args.points}", args.overwrite)
    timer = Timer()
    acc, syn_acc, _, _ = _pid.sweep(methods, points, args, out.path)
    tables = _pid.level_tables(methods, points, {"Fusion test accuracy": acc, "Synergy-source test accuracy": syn_acc})
    plot_vs_syn(acc, syn_acc, methods, points, out.file("masking_control.png"))
    for title, table in tables.items():
        print(f"\n{title} (mean ± std over seeds and compositions)\n{table}")
    finish(out, "pid-xor-masking-control", argv, f"PID-XOR masking-only control ({args.points}, width {args.width})",
           tables, {"args": vars(args), "points": points,
                    "test_acc": {m: [acc[(m, p)] for p in points] for m in methods},
                    "syn_acc": {m: [syn_acc[(m, p)] for p in points] for m in methods}}, timer)


if __name__ == "__main__":
    main()
