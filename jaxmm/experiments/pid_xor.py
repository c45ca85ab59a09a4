"""PID-controlled XOR (SynIB paper Figs. 7 and 8).

Fig. 7: fusion test accuracy of vanilla and SynIB (oracle, random, learned
masks) over compositions of the information simplex (``p_u2 = 0``).
Fig. 8: per-source train/validation accuracy across epochs at ``p_syn = 0.2``.
The paper's settings are the defaults (width 1024, grid step 0.05, 3 seeds,
λ_kl ∈ {0.1, 1, 10} chosen by validation); on a CPU use e.g. ``--width 64``.

    jaxmm experiment pid-xor [--points targets|simplex] [--width 1024] [--eval-train]
"""
from __future__ import annotations

import numpy as np

from jaxmm.experiments import _pid
from jaxmm.experiments._common import Timer, finish, output_dir, pyplot, save_figure

METHODS = ("vanilla", "synib-oracle", "synib-random", "synib-learned")


def plot_simplex(acc: dict, methods, points, path: str, title: str) -> None:
    """One triangle per method: test accuracy over (p_u1, p_red, p_syn), as Fig. 7."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.4), squeeze=False)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])  # u1, red, syn
    xy = np.array([[p[0], p[2], p[3]] for p in points]) @ corners
    low = np.floor(min(np.mean(acc[(m, p)]) for m in methods for p in points) * 20) / 20
    for ax, m in zip(axes[0], methods):
        values = [np.mean(acc[(m, p)]) for p in points]
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap="viridis", vmin=low, vmax=1.0, s=60, marker="h")
        ax.plot(*np.vstack([corners, corners[:1]]).T, color="k", lw=0.8)
        for (cx, cy), label in zip(corners, ("u1", "red", "syn")):
            ax.annotate(label, (cx, cy), textcoords="offset points", xytext=(0, 6 if cy else -12), ha="center")
        ax.set_title(m, pad=16)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.colorbar(sc, ax=axes[0].tolist(), shrink=0.8, label="fusion test accuracy")
    fig.suptitle(title)
    save_figure(fig, path, tight=False)


def plot_sources(histories: dict, methods, path: str, title: str) -> None:
    """Per-source train (solid) and validation (dashed) accuracy across epochs, as Fig. 8."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(methods), figsize=(3.8 * len(methods), 3.2), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], methods):
        hist = histories[m]
        epochs = [h["epoch"] for h in hist]
        for color, source in zip(("C0", "C2", "C3"), ("u1", "red", "syn")):
            for split, style in (("trainset", "-"), ("val", "--")):
                key = f"{split}/acc/source/{source}"
                if key in hist[0]:
                    ax.plot(epochs, [h[key] for h in hist], style, color=color,
                            label=f"{source} {'train' if split == 'trainset' else 'val'}")
        ax.set_title(m)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def main(argv=None) -> None:
    """Command-line entry: sweeps the compositions, prints tables, writes figures and a summary."""
    args, methods, points = _pid.parse_args("jaxmm experiment pid-xor", __doc__, METHODS, argv)
    seeds = args.seeds
    out = output_dir(args.out_dir, f"pid-xor-{args.points}", args.overwrite)
    timer = Timer()
    acc, syn_acc, chosen, histories = _pid.sweep(methods, points, args, out.path)
    tables = _pid.level_tables(methods, points, {"Synergy-source test accuracy": syn_acc,
                                                 "Fusion test accuracy": acc})
    tables["λ_kl chosen by validation"] = "\n".join(
        f"- {m}: " + ", ".join(f"p_syn={s:g}: {v}" for s, v in _pid.by_syn_level(points, chosen, m).items())
        for m in methods)
    if args.points == "simplex":
        plot_simplex(acc, methods, points, out.file("simplex.png"), f"PID-XOR simplex (width {args.width})")
    if args.eval_train:
        plot_sources(histories, methods, out.file("sources.png"),
                     f"Per-source accuracy, composition {points[-1]} seed {seeds[0]}")
    for title, table in tables.items():
        print(f"\n{title} (seeds {seeds}; compositions with the same p_syn pooled)\n{table}")
    finish(out, "pid-xor", argv, f"PID-XOR ({args.points}, width {args.width}, {args.epochs} epochs)", tables,
           {"args": vars(args), "points": points,
            "test_acc": {m: [acc[(m, p)] for p in points] for m in methods},
            "syn_acc": {m: [syn_acc[(m, p)] for p in points] for m in methods},
            "lam": {m: [chosen[(m, p)] for p in points] for m in methods}}, timer)


if __name__ == "__main__":
    main()
