"""One run of study C1 (vanishing): a plain deep MLP or a pre-LN GPT with one activation, and
the gradient-norm and activation probes read per layer. Module level so that run_grid can
hand `run_one` to worker processes.
"""

from __future__ import annotations

from actlab.studies.common import gpt_data, job_data


def _run_mlp(p: dict, probes) -> dict:
    from actlab.data.chartask import char_task
    from actlab.nn.mlp import DeepMLP
    from actlab.training.mlp_loop import train_mlp

    task = char_task(data=p.get("data"))
    model = DeepMLP(task.n_in, p["width"], p["depth"], task.vocab_size, p["act"], init=p["init"],
                    seed=p["seed"])
    out = train_mlp(model, task, p["steps"] + 1, optimizer="sgd", lr=p["lr"],
                    batch_size=p["batch_size"], seed=p["seed"], callbacks=(probes,))
    return {k: out[k] for k in ("outcome", "train_loss", "val_loss", "history")}


def _run_gpt(p: dict, probes) -> dict:
    from actlab.config import ModelConfig, TrainConfig
    from actlab.training.loop import train

    model = ModelConfig(n_layer=p["depth"], n_head=p["n_head"], n_embd=p["n_embd"],
                        block_size=p["block_size"], act=p["act"],
                        kernels="eager")  # the probes hook module calls (probes.layers)
    cfg = TrainConfig(model=model, seed=p["seed"], steps=p["steps"] + 1, batch_size=p["batch_size"],
                      lr=p["lr"], warmup_steps=p["warmup_steps"], eval_every=p["steps"] + 1,
                      eval_batches=p["eval_batches"])
    run = train(cfg, data=gpt_data(p["block_size"], *job_data(p)), callbacks=(probes,), progress=False)
    keep = ("step", "train_loss", "val_loss", "grad_norm")
    history = [{k: r[k] for k in keep if k in r} for r in run.history]
    return {"outcome": run.outcome, "train_loss": run.train_loss, "val_loss": run.val_loss,
            "history": history}


def probe_numbers(probes) -> dict:
    """What a run stores from its ProbeSet: per recorded step and layer (first = nearest the
    input), the gradient norm of the weights feeding the activation and of the pre-activation,
    the saturated fraction, the GPT's branch / residual ratio, and the output histograms of
    the first and last layer pooled over training."""
    names = [layer.name for layer in probes.layers]
    weight = next(iter(probes.layers[0].weights))  # the Linear feeding the activation
    g, a = probes.grad.records, probes.acts.records
    pooled = probes.acts.summary()["layers"]
    first, last = names[0], names[-1]
    out = {
        "layers": names,
        "grad_steps": [r["step"] for r in g],
        "w_grad": [[r[n][weight] for n in names] for r in g],
        "pre_act": [[r[n]["pre_act"] for n in names] for r in g],
        "sat_steps": [r["step"] for r in a],
        "saturated": [[r[n]["saturated"] for n in names if n in r] for r in a],
        "hist_edges": probes.acts.edges,
        "hist": {"first": pooled.get(first, {}).get("hist"),
                 "last": pooled.get(last, {}).get("hist")},
    }
    if g and "branch_ratio" in g[0][first]:
        out["branch_ratio"] = [[r[n]["branch_ratio"] for n in names] for r in g]
    return out


def run_one(params: dict) -> dict:
    """Train one (model, activation, depth, seed) with the probes on; JSON-able numbers.

    The probes bind to the model in `before_train`, which both training loops call before the
    first forward pass, so step 0 (the init) is recorded."""
    from actlab.probes import ProbeSet

    probes = ProbeSet(grad=True, acts=True, sign=False, path=False, every=params["every"])
    with probes:
        out = (_run_mlp if params["model"] == "mlp" else _run_gpt)(params, probes)
        return {**out, **probe_numbers(probes)}
