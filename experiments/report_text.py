"""``report.md``: the compare report's table and its "why" paragraph, both read off the numbers.

Every sentence of the paragraph is chosen by the measured values and their 95% intervals
(``report["intervals"]``), so it cannot contradict the table: a speedup whose interval holds 1
is "indistinguishable", one whose interval holds the step speedup is "about the step speedup",
and a time-to-target that is not measurable says why instead of giving a number.
"""

from __future__ import annotations

from experiments.report_stats import fmt

TOLERANCE = 0.05  # without intervals (older runs), values within 5% read as equal
SIGNIFICANT_SES = 2.0  # a lift smaller than this many standard errors is noise's


def _interval(report: dict, name: str) -> tuple[float, float] | None:
    intervals = report.get("intervals") or {}
    return (intervals.get(name) or {}).get("ci")


def _with_ci(value, ci, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    text = fmt(value, digits, suffix)
    return text + (f" [{_end(ci[0], digits)}, {_end(ci[1], digits)}]" if ci else "")


def _end(value: float, digits: int) -> str:
    return "∞" if value == float("inf") else f"{value:.{digits}f}"


def relation(value: float | None, ci, reference: float | None) -> str | None:
    """'above', 'below' or 'same' as ``reference``: decided by the interval when there is one."""
    if value is None or reference is None:
        return None
    if ci:
        return "above" if ci[0] > reference else "below" if ci[1] < reference else "same"
    if abs(value - reference) <= TOLERANCE * abs(reference):
        return "same"
    return "above" if value > reference else "below"


def _cell(report: dict, algo: str, key: str, interval_name: str | None, digits: int = 3) -> str:
    entry = report[algo]
    ci = _interval(report, f"{algo}/{interval_name}") if interval_name else None
    if ci or len(report["seeds"]) == 1 or entry.get(f"{key}_std") is None:
        return _with_ci(entry.get(key), ci, digits)
    return fmt(entry.get(key), digits) + f" ± {entry[f'{key}_std']:.{digits}f} (sd over seeds)"


def _lift_cell(report: dict, algo: str) -> str:
    warm, entry = report["warm_start"], report[algo]
    if entry.get("final_eval_accuracy") is None or warm["accuracy"] is None:
        return "n/a"
    lift = entry["final_eval_accuracy"] - warm["accuracy"]
    ses = lift / warm["standard_error"] if warm["standard_error"] else float("inf")
    return _with_ci(lift, _interval(report, f"{algo}/lift"), 3) + f" ({ses:+.1f} SE)"


def _target_cell(report: dict, algo: str, key: str, interval_name: str, digits: int) -> str:
    entry, seeds = report[algo], len(report["seeds"])
    if report["target_accuracy"] is None:
        return "not measurable"
    value = _with_ci(entry.get(key), _interval(report, f"{algo}/{interval_name}"), digits)
    return f"{value} ({entry['reached_target']}/{seeds} seeds)"


def render_markdown(report: dict, *, command: str) -> str:
    grpo, bppo, speedup, bound, warm = (
        report["grpo"],
        report["bppo"],
        report["speedup"],
        report["bound"],
        report["warm_start"],
    )
    intervals = (
        "95% bootstrap intervals in brackets (over eval items" + (" and seeds)" if len(report["seeds"]) > 1 else ")")
        if report.get("intervals")
        else ("no intervals: these runs have no per-item evaluations (evals.jsonl)")
    )
    target = "—" if report["target_accuracy"] is None else fmt(report["target_accuracy"], 3)
    row = lambda name, key, interval=None, digits=3: (  # noqa: E731
        f"| {name} | {_cell(report, 'grpo', key, interval, digits)} | {_cell(report, 'bppo', key, interval, digits)} |"
    )
    lines = [
        "# BPPO vs GRPO",
        "",
        f"Command: `{command}`  ",
        f"Training: {_mode_line(report)}  ",
        f"Seeds: {report['seeds']}; eval: greedy on {warm['problems']} held-out problems; the warm start scores "
        f"{fmt(warm['accuracy'], 3)} ± {fmt(warm['standard_error'], 3)} (one standard error, SE). {intervals}.",
        "",
        "| | GRPO | BPPO |",
        "|---|---|---|",
        row("warm-start eval accuracy", "warm_start_eval_accuracy", "warm"),
        row("final eval accuracy", "final_eval_accuracy", "final"),
        f"| lift over the warm start (final − warm) | {_lift_cell(report, 'grpo')} | {_lift_cell(report, 'bppo')} |",
        row("best eval accuracy", "best_eval_accuracy"),
        f"| time to target {target} (s of training) | {_target_cell(report, 'grpo', 'time_to_target_s', 'time_to_target', 1)}"
        f" | {_target_cell(report, 'bppo', 'time_to_target_s', 'time_to_target', 1)} |",
        f"| steps to target {target} | {_target_cell(report, 'grpo', 'steps_to_target', 'steps_to_target', 1)}"
        f" | {_target_cell(report, 'bppo', 'steps_to_target', 'steps_to_target', 1)} |",
        row("mean step time (s)", "mean_step_time_s", "step_s"),
        row("generation per step (s)", "mean_generate_time_s"),
        row("learner per step (s): old + ref + update", "mean_learner_time_s", "learner_s"),
        row("tokens through the learner per step", "train_tokens_per_step", None, 0),
        row("tokens decoded per step (aborted tails included)", "decoded_tokens_per_step", None, 0),
        row("share of completions aborted by early stopping", "aborted_rate", None, 3),
        f"| mean response length, start → end (tokens) | {fmt(grpo['mean_response_len_start'], 1)} → "
        f"{fmt(grpo['mean_response_len_end'], 1)} | {fmt(bppo['mean_response_len_start'], 1)} → "
        f"{fmt(bppo['mean_response_len_end'], 1)} |",
        "",
        "## Speedups (GRPO's time over BPPO's)",
        "",
        f"- Step: **{_with_ci(speedup['step'], _interval(report, 'speedup/step'), suffix='×')}** ({_bound_name(report)} "
        f"{fmt(bound['amdahl'])}× with a pair in every group, {fmt(bound['amdahl_at_pair_rate'])}× at the measured "
        f"pair rate {fmt(bound['pair_rate'])}: generation is {fmt(100 * bound['generate_share_grpo'], 0)}% of a "
        "GRPO step's work and BPPO does not shorten it).",
        f"- Learner phase: **{_with_ci(speedup['learner'], _interval(report, 'speedup/learner'), suffix='×')}**, "
        f"against the token-ratio bound 1/ρ = {fmt(bound['learner'])}× (ρ = (2/G)(P+n)/(P+L) = "
        f"{fmt(bound['token_ratio'], 3)}; × pair rate = {fmt(bound['token_ratio_at_pair_rate'], 3)}); measured "
        f"token ratio 1/{fmt(speedup['train_tokens'], 1)}.",
        _target_line(report, "time_to_target", f"Time to target accuracy {target}"),
        _target_line(report, "steps_to_target", f"Steps to target {target} (per-step signal; > 1: BPPO needed fewer)"),
        f"- Response length change (end / start): GRPO {fmt(report['response_length_change']['grpo'])}, "
        f"BPPO {fmt(report['response_length_change']['bppo'])}.",
        "",
        "## Why",
        "",
        explain(report),
        "",
        *projection_lines(report),
        "Figures: `accuracy_vs_time.png`, `accuracy_vs_steps.png`, `phase_times.png`, `train_tokens.png`, "
        "`response_length.png`.",
    ]
    return "\n".join(lines) + "\n"


def _mode_line(report: dict) -> str:
    if report.get("mode") == "async":
        return (
            "both arms one step off policy (`trainer.mode: async`): a step's generation ran while the previous "
            "step trained, so a step takes about the longer of the two."
        )
    return "both arms synchronous: a step generates, then trains."


def _bound_name(report: dict) -> str:
    """The step bound of the arms' mode (``amdahl_bound``)."""
    if report.get("mode") == "async":
        return "bound one step off policy, max(g, 1 − g) / max(g, (1 − g)ρ),"
    return "Amdahl bound"


def _target_line(report: dict, name: str, label: str) -> str:
    if report["target_accuracy"] is None:
        why = report["target_reason"] if name == "time_to_target" else "as above"
        return f"- {label}: not measurable ({why})."
    return f"- {label}: **{_with_ci(report['speedup'][name], _interval(report, f'speedup/{name}'), suffix='×')}**."


def _learning(report: dict, algo: str) -> str:
    warm, entry = report["warm_start"], report[algo]
    if entry.get("final_eval_accuracy") is None or warm["accuracy"] is None:
        return f"{algo.upper()} has no evaluation to judge"
    lift = entry["final_eval_accuracy"] - warm["accuracy"]
    ses = lift / warm["standard_error"] if warm["standard_error"] else float("inf")
    moved = f"{warm['accuracy']:.3f} → {entry['final_eval_accuracy']:.3f} ({ses:+.1f} SE)"
    if abs(ses) < SIGNIFICANT_SES:
        return f"{algo.upper()} did not move beyond noise ({moved})"
    return f"{algo.upper()} {'rose' if lift > 0 else 'fell'} {moved}"


def _overlap_clause(report: dict) -> str:
    if report.get("mode") != "async":
        return ""
    return " and, one step off policy, the update hides behind it wherever generation is the longer phase"


def explain(report: dict) -> str:
    """A paragraph that reads the measured numbers, whichever way they came out."""
    speedup, bound = report["speedup"], report["bound"]
    share = bound["generate_share_grpo"]
    pairs = (
        ""
        if bound["pair_rate"] is None
        else (
            f" (only {fmt(bound['pair_rate'])} of groups had both a correct and an incorrect response, so BPPO's "
            "batch is smaller still than its 2-of-G selection)"
        )
    )
    text = (
        f"Greedy eval accuracy: {_learning(report, 'grpo')}; {_learning(report, 'bppo')}. "
        f"BPPO trains {fmt(speedup['train_tokens'], 1)}× fewer tokens per step, so its learner phase is "
        f"{fmt(speedup['learner'])}× faster{pairs}; but generation, {fmt(100 * share, 0)}% of a GRPO step's work "
        f"here, is the same work for both{_overlap_clause(report)}, which caps the step speedup at "
        f"{fmt(bound['amdahl_at_pair_rate'])}× (measured {fmt(speedup['step'])}×)."
    )
    if report["target_accuracy"] is None:
        text += f" Time to target is not measurable: {report['target_reason']}."
    else:
        text += " " + _time_to_target_sentence(report)
    change = report["response_length_change"]
    if change["grpo"] and change["bppo"]:
        text += (
            f" Response length changed by ×{fmt(change['grpo'])} under GRPO and ×{fmt(change['bppo'])} "
            "under BPPO; shorter responses are the route by which BPPO can also cut generation time."
        )
    return text


def _time_to_target_sentence(report: dict) -> str:
    speedup, target = report["speedup"], report["target_accuracy"]
    ttt, ttt_ci = speedup["time_to_target"], _interval(report, "speedup/time_to_target")
    shown = _with_ci(ttt, ttt_ci, suffix="×")
    versus_one = relation(ttt, ttt_ci, 1.0)
    if versus_one == "same":
        text = f"To reach {target:.3f}, the two are indistinguishable: BPPO's time-to-target speedup is {shown}"
        text += ", an interval that includes 1." if ttt_ci else ", within 5% of 1."
    elif versus_one == "below":
        text = f"BPPO reached {target:.3f} later than GRPO: its time-to-target speedup is {shown} (BPPO loses here)."
    else:
        text = f"BPPO reached {target:.3f} sooner: time-to-target speedup {shown}."
    # time to target = steps to target x time per step: the steps ratio says whether BPPO's
    # per-step signal added to or took from its step speedup
    steps_ratio, steps_ci = speedup["steps_to_target"], _interval(report, "speedup/steps_to_target")
    steps = _with_ci(steps_ratio, steps_ci, suffix="×")
    per_step = relation(steps_ratio, steps_ci, 1.0)
    product = (
        f"steps-to-target ratio × step speedup = {fmt(steps_ratio)} × {fmt(speedup['step'])} = "
        f"{fmt(steps_ratio * speedup['step'])}×"
        if steps_ratio and speedup["step"]
        else None
    )
    if per_step == "same":
        text += f" Per step the two were not distinguishable (steps-to-target ratio {steps}" + (
            ", an interval that includes 1)" if steps_ci else ")"
        )
    elif per_step == "above":
        text += (
            f" BPPO also needed fewer steps (steps-to-target ratio {steps}): per step its pair carried more "
            f"signal than all G responses, on top of its faster steps"
        )
    elif per_step == "below":
        text += (
            f" BPPO needed more steps (steps-to-target ratio {steps}): per step the pair carried less signal "
            f"than all G responses, which takes back part of its faster steps"
        )
    if per_step is not None:
        text += f"; the time-to-target speedup ≈ {product}." if product else "."
    return text


def projection_lines(report: dict) -> list[str]:
    """The GPU projection section (``report["projection"]``), marked as a projection."""
    projection = report.get("projection")
    if not projection:
        return []
    lines = [
        "## Beyond this machine (a projection, not a measurement)",
        "",
        f"Here generation is {fmt(100 * projection['generate_share_here'], 0)}% of a GRPO step; on GPUs it is "
        "most of it (verl's docs: ~70-80% for long chains of thought). Keeping each phase's measured BPPO/GRPO "
        f"time ratio -- generation r_gen = {fmt(projection['r_gen'], 3)} (early-stopped tails, shorter "
        f"responses), everything else r_rest = {fmt(projection['r_rest'], 3)} (fewer, prefix-cut trained "
        "sequences) -- a run whose GRPO step spends a share g generating has step speedup "
        "S(g) = 1 / (g·r_gen + (1 − g)·r_rest), and time-to-target speedup S(g) × the steps-to-target ratio "
        "if the per-step signal carries over. Both arms one step off policy (`trainer.mode: async`), a step "
        "takes the longer of generation and the rest: S_async(g) = max(g, 1 − g) / max(g·r_gen, (1 − g)·r_rest).",
        "",
        "| generation share g of a GRPO step | step speedup S(g) | time-to-target speedup | async step speedup |",
        "|---|---|---|---|",
    ]
    for row in projection["rows"]:
        share = fmt(row["generate_share"], 2) + (" (measured here)" if row["measured"] else "")
        lines.append(
            f"| {share} | {fmt(row['step_speedup'], suffix='×')} | {fmt(row['time_to_target_speedup'], suffix='×')} "
            f"| {fmt(row.get('async_step_speedup'), suffix='×')} |"
        )
    carried = (
        "What carries over: the learner's savings (2 of G completions, prefix only) act on the 1 − g share, "
        "which shrinks as g grows; generation savings (aborted tails, shorter responses) act on g, so they "
        "decide BPPO's speedup on GPUs"
    )
    if projection["r_gen"] >= 0.95:
        carried += (
            f"; here BPPO generated about as long as GRPO (r_gen = {fmt(projection['r_gen'], 3)}), so the "
            "projection falls toward 1× as g grows"
        )
    return lines + ["", carried + ".", ""]
