"""The compare report's figures (matplotlib, headless). Accuracy is drawn against training
seconds and against steps: per-second speed and per-step signal, seen apart."""

from __future__ import annotations

from pathlib import Path

COLORS = {"grpo": "tab:blue", "bppo": "tab:orange"}
PHASES = ("generate", "reward", "select", "old", "ref", "update", "sync")


def plot_report(report: dict, runs: dict[str, dict[int, list[dict]]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for axis, name, xlabel, title in (
        ("train_elapsed_s", "accuracy_vs_time.png", "training time (s)", "wall-clock"),
        ("step", "accuracy_vs_steps.png", "step", "steps"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        _accuracy_curves(ax, report, runs, axis)
        ax.set(xlabel=xlabel, ylabel="eval accuracy (greedy)", title=f"Accuracy vs {title}")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out_dir / name, plt))

    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = {a: 0.0 for a in runs}
    for phase in PHASES:
        values = [report[a]["phase_means_s"][phase] or 0.0 for a in runs]
        ax.bar([a.upper() for a in runs], values, bottom=[bottom[a] for a in runs], label=phase)
        for a, v in zip(runs, values):
            bottom[a] += v
    ax.set(ylabel="seconds per step", title="Time per phase per step")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "phase_times.png", plt))

    for key, name, ylabel in (
        ("train/tokens", "train_tokens.png", "tokens through the learner"),
        ("response/len_mean", "response_length.png", "mean response length (tokens)"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for algo, by_seed in runs.items():
            for i, seed in enumerate(sorted(by_seed)):
                steps = [r for r in by_seed[seed] if r["step"] > 0 and r.get(key) is not None]
                ax.plot(
                    [r["step"] for r in steps],
                    [r[key] for r in steps],
                    color=COLORS[algo],
                    alpha=0.9 if i == 0 else 0.5,
                    label=algo.upper() if i == 0 else None,
                )
        ax.set(xlabel="step", ylabel=ylabel, title=ylabel[0].upper() + ylabel[1:] + " per step")
        ax.legend()
        paths.append(_save(fig, out_dir / name, plt))
    return paths


def _accuracy_curves(ax, report: dict, runs: dict, axis: str) -> None:
    from experiments.report_stats import standard_error

    for algo, by_seed in runs.items():
        for i, seed in enumerate(sorted(by_seed)):
            curve = report[algo]["per_seed"][seed]["eval_curve"]
            ax.errorbar(
                [p[axis] for p in curve],
                [p["accuracy"] for p in curve],
                yerr=[standard_error(p["accuracy"], int(p["problems"])) for p in curve],
                color=COLORS[algo],
                marker="o",
                capsize=3,
                alpha=0.9 if i == 0 else 0.5,
                label=algo.upper() if i == 0 else None,
            )
    warm = report.get("warm_start") or {}
    if warm.get("accuracy") is not None:
        ax.axhspan(
            warm["accuracy"] - 2 * warm["standard_error"],
            warm["accuracy"] + 2 * warm["standard_error"],
            color="gray",
            alpha=0.15,
            label="warm start ± 2 SE",
        )
    if report["target_accuracy"] is not None:
        ax.axhline(report["target_accuracy"], color="gray", linestyle="--", label="target")


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
