"""``ray job submit`` as docs/gpu.md has it, against a Ray cluster this test starts with ``ray
start --head`` from the project's environment (the rule for every node): the working directory
is the checkout, uploaded by Ray without what ``.gitignore`` leaves out (``.venv``, ``runs/``),
the entrypoint is ``python -m cli train`` and the run directory is absolute. The job trains 2
steps of the tiny model and leaves its metrics, checkpoint and final model there."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e_runs import ROOT, records

BIN = Path(sys.executable).parent  # the project's environment: `ray`, `python`, every dependency


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def head_node():
    """``ray start --head --block`` in its own process group (killed as a group afterwards: ``ray
    stop`` would stop every Ray cluster of the user, the other tests' included). Yields the
    dashboard's address and the environment the nodes were started in."""
    gcs, dashboard, agent_http, agent_grpc, metrics, runtime_env = _free_ports(6)
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", RAY_AUTH_MODE="disabled")
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--num-cpus=2",
            f"--port={gcs}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--temp-dir={temp_dir}",
        ],  # fmt: skip
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 180
        while not _dashboard_up(address):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"ray start --head did not come up: {head.stdout.read() if head.poll() is not None else ''}"
                )
            time.sleep(1)
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)  # its graceful stop takes ~30 s; nothing of it is kept
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _dashboard_up(address: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_a_submitted_job_trains_from_the_checkout(head_node, tiny_model, tmp_path):
    address, env = head_node
    run_dir = tmp_path / "job-run"  # absolute: the job's own directory is Ray's temporary copy
    train = [
        "python", "-m", "cli", "train", "--config", "configs/tiny_cpu.yaml",
        f"model.path={tiny_model}", f"trainer.run_dir={run_dir}", "trainer.steps=2", "trainer.save_every=2",
        "trainer.prompts_per_step=4", "data.source.num_train=64", "data.source.num_test=8", "eval.every=2",
        "reward.function=tests.custom_reward:even_length_reward", "wandb.mode=disabled", "trainer.parity_every=1",
    ]  # fmt: skip
    submit = [str(BIN / "ray"), "job", "submit", f"--address={address}", "--submission-id=bppo-job-test"]
    result = subprocess.run(
        [*submit, f"--working-dir={ROOT}", "--", *train],
        env=env,
        cwd=tmp_path,  # not the checkout: only the uploaded working directory gives the job its code
        capture_output=True,
        text=True,
        timeout=900,
    )
    from ray.job_submission import JobStatus, JobSubmissionClient

    status = JobSubmissionClient(address).get_job_status("bppo-job-test")
    assert status == JobStatus.SUCCEEDED, f"{status}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    steps = [r for r in records(run_dir) if r["step"] > 0]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["sync/logprob_max_diff"] < 1e-4 for r in steps)
    assert (run_dir / "checkpoints" / "step_000002").is_dir()
    assert json.loads((run_dir / "final" / "config.json").read_text())["model_type"] == "qwen2"
