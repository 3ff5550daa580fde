"""Two Ray nodes on one machine (Ray's own ``ray.cluster_utils.Cluster``): a head node with the
custom resource ``rollout_node`` and a second node with ``learner_node``. ``bppo train`` runs as
its own driver process (as ``ray job submit -- bppo train`` would) with ``rollout.resources`` and
``learner.resources`` pinning the engine to the head and the learner to the second node; then a
2-trial ``bppo sweep`` with ``sweep.max_concurrent=2`` runs both trials at once on the same
cluster. Where each actor ran is read from the cluster's GCS actor table; the run directory is
the one both nodes write to.

The placement arithmetic behind it (custom resources, ``ray.share``, shares per node) is
checked first without a cluster.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.sweep import expand_trials
from orchestrator.config import Config
from orchestrator.placement import PlacementError, plan_placement
from tests.e2e_runs import PRESET, ROOT, overrides

PINS = ["rollout.resources={rollout_node: 0.1}", "learner.resources={learner_node: 0.1}"]
TWO_NODES = {
    "CPU": 2.0,
    "node:192.0.2.2": 2.0,
    "node:__internal_head__": 1.0,
    "rollout_node": 1.0,
    "learner_node": 1.0,
}  # what ray.cluster_resources() says of the test's cluster


def test_custom_resources_pin_actors_and_every_share_fits_on_one_node():
    pinned = dict(
        rollout={"resources": {"rollout_node": 0.1}},
        learner={"resources": {"learner_node": 0.1}},
        reward={"num_workers": 1},
    )
    alone = plan_placement(Config(**pinned), TWO_NODES)
    # 3 actors (engine, learner rank, reward worker) planned into one node's CPU (2 CPUs / 2 nodes).
    assert alone.engine == {"CPU": 0.333, "rollout_node": 0.1}
    assert alone.learner_rank == {"CPU": 0.333, "learner_node": 0.1} and alone.reward_worker_cpus == 0.333
    # Two concurrent trials (ray.share=0.5): all 6 actors fit even on one 1-CPU node.
    shared = plan_placement(Config(**pinned, ray={"share": 0.5}), TWO_NODES)
    assert shared.engine["CPU"] == 0.166 and 6 * shared.engine["CPU"] <= 1.0
    assert plan_placement(Config(reward={"num_workers": 1}), {"CPU": 2.0, "node:10.0.0.1": 1.0}).engine == {
        "CPU": 0.666
    }

    with pytest.raises(
        PlacementError,
        match="ask for 0.2 of the custom resource 'rollout_node', but the Ray cluster has 0 .*ray start --resources",
    ):
        plan_placement(Config(rollout={"num_engines": 2, "resources": {"rollout_node": 0.1}}), {"CPU": 2.0})
    with pytest.raises(PlacementError, match="learner.resources: 'CPU' is planned by placement"):
        plan_placement(Config(learner={"resources": {"CPU": 1.0}}), TWO_NODES)

    gpu = Config(rollout={"num_engines": 2, "resources": {"rollout_node": 1}}, learner={"world_size": 2})
    cluster = {"CPU": 64, "GPU": 8, "rollout_node": 2}
    fits = plan_placement(gpu, cluster)
    assert fits.engine == {"CPU": 1, "GPU": 1, "rollout_node": 1} and fits.learner_rank == {"CPU": 1, "GPU": 1}
    with pytest.raises(
        PlacementError,
        match=r"= 4 GPUs, but ray.share=0.25 of the Ray cluster's 8 is 2 "
        r"\(runs sharing a cluster at once, e.g. sweep trials, each need their own GPUs\)",
    ):
        plan_placement(gpu.model_copy(update={"ray": gpu.ray.model_copy(update={"share": 0.25})}), cluster)


def test_a_sweep_gives_each_concurrent_trial_its_share_and_its_own_absolute_run_dir():
    preset = str(ROOT / "configs" / "sweep_bppo_vs_grpo.yaml")  # 4 arms
    trials = expand_trials([preset], ["trainer.run_dir=relative/sweep", "sweep.max_concurrent=2"])
    run_dirs = set()
    for name, trial_overrides in trials.items():
        assert "ray.share=0.5" in trial_overrides
        run_dir = [o for o in trial_overrides if o.startswith("trainer.run_dir=")][-1].partition("=")[2]
        assert run_dir == str(Path.cwd() / "relative" / "sweep" / name)  # a Ray task's cwd is not the driver's
        run_dirs.add(run_dir)
    assert len(run_dirs) == len(trials) == 4
    # No more at once than there are trials; the sweep's own ray.share is split between them.
    two = expand_trials(
        [preset],
        ["sweep.max_concurrent=8", "ray.share=0.5", "sweep.arms={grpo: [algo.name=grpo], bppo: [algo.name=bppo]}"],
    )
    assert all("ray.share=0.25" in overrides for overrides in two.values())


# ---- the real thing: two nodes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_nodes():
    """A head node (1 CPU, rollout_node) and a second node (1 CPU, learner_node), started here and
    shut down here (only these two; this process's own Ray, if any, is not touched)."""
    from ray.cluster_utils import Cluster

    # The nodes' worker processes (sweep trials run in one) inherit this environment: no wandb files.
    wandb_mode, os.environ["WANDB_MODE"] = os.environ.get("WANDB_MODE"), "disabled"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"rollout_node": 1}})
    try:
        cluster.add_node(num_cpus=1, resources={"learner_node": 1})
        cluster.wait_for_nodes()
        _restore("WANDB_MODE", wandb_mode)
        yield cluster
    finally:
        _restore("WANDB_MODE", wandb_mode)
        cluster.shutdown()


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _driver(command: str, overrides: list[str]) -> None:
    """``bppo <command>`` as its own driver process on the cluster (``ray.address`` in overrides)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_SERVICE", "RAY_ADDRESS")}
    env.update(PYTHONPATH=str(ROOT), WANDB_MODE="disabled")
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", command, "--config", PRESET, *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-6000:]


def _actors_by_node(cluster, seen: set[str]) -> dict[str, list[str]]:
    """Class name -> node ids of the actors created since ``seen`` (which is updated)."""
    table = cluster.global_state.actor_table(None)
    placed: dict[str, list[str]] = {}
    for actor_id, actor in table.items():
        if actor_id not in seen:
            seen.add(actor_id)
            placed.setdefault(actor["ActorClassName"], []).append(actor["Address"]["NodeID"])
    return placed


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_engine_and_learner_on_their_nodes_then_a_two_trial_sweep_at_once(two_nodes, tiny_model, tmp_path):
    head, second = two_nodes.head_node.node_id, next(iter(two_nodes.worker_nodes)).node_id
    common = [
        *PINS,
        f"ray.address={two_nodes.address}",
        "ray.placement_timeout_s=300",
        "eval.every=0",
        "trainer.steps=2",
        "reward.num_workers=1",
    ]
    seen: set[str] = set()

    run_dir = tmp_path / "train"
    _driver("train", [*overrides(run_dir, tiny_model), *common])
    placed = _actors_by_node(two_nodes, seen)
    assert set(placed["RolloutEngine"]) == {head}, placed  # every engine (the overrides may ask for several)
    assert set(placed["LearnerWorker"]) == {second}, placed
    steps = [r for r in _records(run_dir) if r["step"] > 0]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:  # trained and synced across the nodes every step
        assert record["sync/policy_version"] == record["step"]
        assert record["sync/logprob_max_diff"] < 1e-4
    # The learner on the second node and the driver wrote into the same run directory.
    assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoints" / "step_000002").is_dir()
    assert (run_dir / "final" / "model.safetensors").exists()

    root = tmp_path / "sweep"
    # One engine, one learner rank and 4 prompts per trial: two trials at once on 2 cores.
    _driver(
        "sweep",
        [
            *overrides(root, tiny_model),
            *common,
            "rollout.num_engines=1",
            "learner.world_size=1",
            "learner.zero_stage=0",
            "trainer.prompts_per_step=4",
            "eval.every=2",
            "data.source.num_test=20",
            "sweep.max_concurrent=2",
            "sweep.baseline=grpo",
            "sweep.arms={grpo: [algo.name=grpo], bppo_tokens: [algo.name=bppo, algo.prefix.mode=tokens]}",
            "sweep.grid={}",
        ],
    )
    # The sweep's table is the arithmetic of its trials' metrics (the only end-to-end sweep of the suite).
    summary = json.loads((root / "sweep.json").read_text())
    rows = summary["trials"]
    assert set(rows) == {"grpo", "bppo_tokens"}
    for name, row in rows.items():
        assert row["status"] == "ok" and row["steps"] == 2, row
        metrics = _records(root / name)
        assert all(r["sync/policy_version"] == r["step"] for r in metrics if r["step"] > 0)
        assert row["final_eval_accuracy"] == metrics[-1]["eval/accuracy"]
        assert (root / name / "final" / "model.safetensors").exists()
    bppo, grpo = rows["bppo_tokens"], rows["grpo"]
    assert bppo["speedup_step"] == pytest.approx(grpo["mean_step_time_s"] / bppo["mean_step_time_s"])
    assert "speedup_step" not in grpo  # the baseline row
    table = (root / "sweep.md").read_text()
    assert "| bppo_tokens | ok |" in table and "| grpo | ok |" in table
    # Both trials ran at the same time: each started before the other finished.
    first, second_trial = rows.values()
    assert max(first["started_at"], second_trial["started_at"]) < min(first["finished_at"], second_trial["finished_at"])
    placed = _actors_by_node(two_nodes, seen)
    assert placed["RolloutEngine"] == [head, head], placed
    assert placed["LearnerWorker"] == [second, second], placed
