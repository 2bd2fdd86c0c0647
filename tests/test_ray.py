"""Sweeps on Ray and on GPUs: the resources each run requests, the local executor's one worker
per GPU, and the same numbers from Ray as from local workers and from this process.

No GPU exists here, so the GPU rules are checked where they are decided: the options handed to
ray.remote, plan() with torch told there are 2 GPUs, the CUDA_VISIBLE_DEVICES each local worker
and each Ray task sees (a Ray instance that declares one GPU assigns it as it would a real one).
The job functions live at module level so that workers and Ray tasks import them.
"""

import math
import os
from pathlib import Path

import pytest
import torch

from actlab.config import ModelConfig, TrainConfig
from actlab.engine import executors
from actlab.engine.executors import check_resource, plan, ray_options, ray_task, visible_gpus
from actlab.engine.ray_cluster import own_signal_handlers, restore_signal_handlers
from actlab.engine.store import Store
from actlab.engine.sweep import STORE_NAME, jobs_device, run_grid
from actlab.errors import ActlabError

HERE = Path(__file__).resolve().parent


def tiny_gpt_job(params: dict) -> dict:
    """A 1-layer, width-16 GPT trained for 6 steps on the bundled corpus, on the CPU."""
    from actlab.data import prepare
    from actlab.training.loop import train

    data = prepare(None, "char", 16)
    model = ModelConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16,
                        act=params["act"])
    cfg = TrainConfig(model=model, seed=params["seed"], steps=6, batch_size=4, eval_every=3,
                      eval_batches=2, warmup_steps=2, lr=3e-3, device=params["device"])
    res = train(cfg, data=data, progress=False)
    return {"val_loss": res.val_loss, "history": res.history}


def visible_job(params: dict) -> dict:
    """What CUDA would be shown in this process, and who ran the job."""
    return {"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}


def untimed(results: list[dict]) -> list[dict]:
    """Results without their wall-clock parts (run seconds, per-step time stamps)."""
    def rows(history):
        return [{k: v for k, v in row.items() if k != "time_s"} for row in history]
    return [{k: rows(v) if k == "history" else v for k, v in r.items() if k != "seconds"}
            for r in results]


# -- what each run requests ---------------------------------------------------------------------

def test_ray_options_request_what_the_runs_use():
    # explicit shares: a quarter GPU, the job's one thread as CPUs, or more CPUs by request
    assert ray_options(1, "auto", 4, gpus_per_run=0.25) == {"num_cpus": 1.0, "num_gpus": 0.25,
                                                            "max_retries": 0}
    assert ray_options(2, "cuda", 1, gpus_per_run=1, cpus_per_run=4)["num_cpus"] == 4.0
    assert ray_options(3, "cpu", 8)["num_cpus"] == 3.0  # default: the job's thread count
    # defaults: a whole GPU for runs that may use CUDA on a cluster that has GPUs, else none
    assert ray_options(1, "auto", 2)["num_gpus"] == 1.0
    assert ray_options(1, None, 2)["num_gpus"] == 1.0  # unnamed device: TrainConfig's auto
    assert ray_options(1, "cuda", 2)["num_gpus"] == 1.0
    assert ray_options(1, "cpu", 2)["num_gpus"] == 0.0
    assert ray_options(1, "auto", 0)["num_gpus"] == 0.0
    assert ray_options(1, "cpu", 0, gpus_per_run=0)["num_gpus"] == 0.0
    with pytest.raises(ActlabError, match="no GPUs"):  # would wait forever
        ray_options(1, "auto", 0, gpus_per_run=0.25)
    with pytest.raises(ActlabError, match="need a GPU"):  # every run would fail
        ray_options(1, "cuda", 4, gpus_per_run=0)
    with pytest.raises(ActlabError, match="need a GPU"):
        ray_options(1, "cuda", 0)


@pytest.mark.parametrize("value, zero_ok, needle", [
    (-0.25, True, ">= 0"), (math.nan, True, "finite"), (math.inf, True, "finite"),
    (1.5, True, "whole number"), (0, False, "> 0"), (1e-5, True, "0.0001"), ("a", True, "a number"),
])
def test_bad_shares_fail_in_one_line(value, zero_ok, needle):
    with pytest.raises(ActlabError, match=needle) as err:
        check_resource("--gpus-per-run", value, zero_ok)
    assert "\n" not in str(err.value) and str(err.value).startswith("--gpus-per-run")


def test_good_shares_pass_as_floats():
    assert [check_resource("g", v, True) for v in (0, 0.25, 1, 2, 8.0)] == [0, 0.25, 1, 2, 8]


def test_ray_accepts_the_options_and_gives_a_gpu_run_its_own_process():
    ray = pytest.importorskip("ray")
    gpu = ray.remote(**ray_options(1, "auto", 1, gpus_per_run=0.25))(ray_task)
    cpu = ray.remote(**ray_options(1, "cpu", 1))(ray_task)
    # max_calls=1: a reused process would keep the GPU its first task initialised CUDA on
    assert gpu._default_options["num_gpus"] == 0.25 and gpu._default_options["max_calls"] == 1
    assert cpu._default_options["num_gpus"] == 0 and "max_calls" not in cpu._default_options


# -- local workers and GPUs ---------------------------------------------------------------------

@pytest.fixture
def two_gpus(monkeypatch):
    """torch in this process (not in workers) says there are 2 CUDA devices."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_plan_gives_one_worker_per_gpu_to_gpu_jobs(two_gpus, monkeypatch):
    monkeypatch.setattr(executors, "available_cores", lambda: 8)
    assert plan("local", None, 1, "auto") == (2, 1)
    assert plan("local", None, 1, "cuda") == (2, 1)
    assert plan("local", None, 1, None) == (2, 1)  # unnamed: TrainConfig's auto
    assert plan("local", None, 1, "cpu") == (8, 1)  # CPU jobs: cores // threads, GPUs or not
    assert plan("local", None, 2, "cpu") == (4, 2)
    assert plan("local", None, 1, "mps") == (1, 1)  # one device
    assert plan("local", 3, 1, "auto") == (3, 1)  # asked for: kept
    assert plan("serial", None, 1, "auto") == (1, 1)
    assert visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the parent's own selection is kept
    assert visible_gpus() == ["3", "5"]


def test_plan_without_gpus_uses_the_cores(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(executors, "available_cores", lambda: 6)
    assert plan("local", None, 1, "auto") == (6, 1) and plan("local", None, 3, "cuda") == (2, 3)


def test_jobs_device_reads_the_jobs_parameters():
    assert jobs_device([{"device": "cpu"}, {"device": "cpu"}]) == "cpu"
    assert jobs_device([{"device": "cpu"}, {"lr": 1e-3}]) == "auto"  # no device: TrainConfig's
    assert jobs_device([{"device": "auto"}, {"device": "cuda"}]) == "cuda"
    assert jobs_device([{"device": "mps"}]) == "mps"


@pytest.mark.slow
def test_each_local_worker_is_pinned_to_one_gpu(two_gpus, tmp_path):
    jobs = [{"i": i, "device": "auto"} for i in range(4)]
    res = run_grid("pinned", jobs, visible_job, tmp_path, progress=False, executor="local")
    seen = {r["visible"] for r in res}
    assert seen == {"0", "1"}  # both GPUs used, each job saw exactly one
    by_pid = {}
    for r in res:
        by_pid.setdefault(r["pid"], set()).add(r["visible"])
    assert len(by_pid) == 2 and all(len(v) == 1 for v in by_pid.values())  # 2 workers, 1 GPU each
    with Store(tmp_path / STORE_NAME) as store:
        assert sorted(r["env"]["gpus"] for r in store.runs()) == sorted(r["visible"] for r in res)


# -- the same numbers on Ray --------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module: 2 CPUs and one declared GPU (Ray assigns it to
    the tasks that request it as it would a real one; torch here has no CUDA). Its processes
    start with CUDA_VISIBLE_DEVICES=0, as on a GPU node, which Ray leaves to a task given no
    GPU."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        # Ray's workers inherit this environment and must import this module to run its jobs.
        mp.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("CUDA_VISIBLE_DEVICES", "0")
        handlers = own_signal_handlers()
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()
            restore_signal_handlers(handlers)  # later tests send this process SIGTERM


GPT_JOBS = [{"act": "gelu", "seed": 0, "device": "cpu"}, {"act": "relu", "seed": 1, "device": "cpu"},
            {"act": "sigmoid", "seed": 2, "device": "cpu"}]


@pytest.mark.slow
def test_ray_gives_bitwise_the_results_of_local_workers_and_serial(ray_local, tmp_path):
    on_ray = run_grid("same", GPT_JOBS, tiny_gpt_job, tmp_path / "ray", progress=False,
                      executor="ray", threads=1)
    assert ray_local.is_initialized()  # a sweep leaves a Ray it did not start running
    local = run_grid("same", GPT_JOBS, tiny_gpt_job, tmp_path / "local", progress=False,
                     executor="local", workers=2, threads=1)
    serial = run_grid("same", GPT_JOBS, tiny_gpt_job, tmp_path / "serial", progress=False,
                      executor="serial", threads=1)
    assert untimed(on_ray) == untimed(local) == untimed(serial)  # float == on every loss
    losses = [r["val_loss"] for r in on_ray]
    assert len(set(losses)) == 3  # three distinct runs, not one result copied
    assert all(abs(v - math.log(81)) < 0.5 for v in losses)  # 6 steps from ln(vocab)
    with Store(tmp_path / "ray" / STORE_NAME) as store:
        envs = [r["env"] for r in store.runs()]
    assert {e["executor"] for e in envs} == {"ray"} and {e["threads"] for e in envs} == {1}
    assert all("gpus" not in e for e in envs)  # CPU runs requested no GPU and were shown none


@pytest.mark.slow
def test_a_ray_run_that_may_use_cuda_is_given_a_gpu(ray_local, tmp_path):
    jobs = [{"i": i, "device": "auto"} for i in range(2)]
    shared = run_grid("gpu", jobs, visible_job, tmp_path / "shared", progress=False,
                      executor="ray", gpus_per_run=0.25)
    assert [r["visible"] for r in shared] == ["0", "0"]  # Ray's GPU 0, a quarter each
    none = run_grid("gpu", jobs, visible_job, tmp_path / "none", progress=False,
                    executor="ray", gpus_per_run=0)
    assert [r["visible"] for r in none] == ["", ""]  # no GPU requested: CUDA hidden, not "0"
    with Store(tmp_path / "shared" / STORE_NAME) as store:
        assert [r["env"]["gpus"] for r in store.runs()] == ["0", "0"]
