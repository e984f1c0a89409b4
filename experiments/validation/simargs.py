"""The simulator as the deployment: ``splitbench-replay`` overrides of one design, the serving
component measured by the probes (:mod:`.probes`), the engines' own KV capacity, and (with the
paper's ``reference`` policy only) the calibrated KV hand-over as the simulator's KV transfer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.validation.config import ValidateConfig
from experiments.validation.deploy import prefill_budget


def sim_overrides(c: ValidateConfig, design: str, source: str, probes: dict | None = None
                  ) -> list[str]:  # fmt: skip
    """splitbench-replay overrides that make the simulator the deployment of ``design``: the
    model spec, the machine spec (one instance per node), the node counts (baseline: 1;
    baseline2: 2, routed by jsq as the router does; split:
    1 prompt + 1 token, no mixed pool, as the proxy never mixes), the machine policy of the design
    with the deployment's vLLM settings, the profile as its own slowdown reference; with the
    probes' result (``probe-<design>``'s serving.json): the engine's block size and real KV block
    count (``scheduler.vllm.block_size`` / ``num_gpu_blocks``) and every measured ``serving.*``
    term (:func:`serving_overrides`); then the config's."""
    d = c.deploy
    sim = c.simulate
    inst = d.colocated if design.startswith("baseline") else d.decode
    mbt = inst.max_num_batched_tokens or sim.default_max_num_batched_tokens
    ov = [
        f"model={c.model.name}",
        f"gpu={sim.gpu}",
        f"profiles.slo_reference_source={source}",
        f"profiles.slo_reference_gpu={sim.profile_gpu}",
        "profiles.slo_reference_tp=1",
    ]
    policy = sim.machine_policy[design]
    ov.append(f"design.machine_policy={policy}")
    if policy == "vllm":
        from experiments.validation.engine_metrics import kv_capacity

        bs, blocks = kv_capacity(probes, design)
        ov += [f"scheduler.vllm.max_num_seqs={int(inst.max_num_seqs)}",
               f"scheduler.vllm.max_num_batched_tokens={int(mbt)}",
               f"scheduler.vllm.block_size={int(bs or c.calibrate.block_size)}"]  # fmt: skip
        if blocks:
            ov.append(f"scheduler.vllm.num_gpu_blocks={int(blocks)}")
    else:  # the reference policy: vLLM's budget as its prompt batch, max_num_seqs as its batch
        ov += [f"scheduler.prompt_batch_tokens={int(mbt)}",
               f"scheduler.max_batch_size={int(inst.max_num_seqs)}"]  # fmt: skip
    if design.startswith("baseline"):  # baseline2: two instances behind the jsq router
        ov += ["design=baseline", f"design.machines={2 if design == 'baseline2' else 1}"]
    else:
        ov += ["design=splitwise", "design.prompt_machines=1", "design.token_machines=1",
               "design.mixed_pool=false"]  # fmt: skip
        if policy == "vllm":
            # vLLM's disaggregated serving: the hand-over is priced per request (the tail from L
            # modulo the block size, the KV load as decode-instance work, the legs as latency,
            # all measured); the link carries nothing (one host: the connector's hop is inside
            # the measured decode leg and KV load), so no mean-tail handover_s
            ov += ["scheduler.kv_transfer.enabled=false", "scheduler.kv_transfer.handover_s=0"]
            # the prefill instance as deployed: chunked prefill off, its own step budget
            ov += ["scheduler.vllm.prompt_whole_prompts=true",
                   f"scheduler.vllm.prompt_max_num_batched_tokens={prefill_budget(d, d.prefill)}"]  # fmt: skip
    ov += serving_overrides(probes, design, policy, sim.decode_leg_as,
                            arrival_as_work(c, design))  # fmt: skip
    return [*ov, *sim.overrides, *sim.designs.get(design, [])]


def replay_argv(trace: Path, out: Path, source: str, seed: int, ov: list[str],
                factor: float = 1.0) -> list[str]:  # fmt: skip
    """``splitbench-replay`` of ``trace`` into ``out`` with the profile ``source`` and the
    overrides ``ov`` (:func:`sim_overrides`); a speed ``factor`` other than 1 scales the engine
    times (:mod:`.sentinel`: a scaled copy of the profile under ``out/profile``)."""
    from experiments.validation.sentinel import scaled_profile, scaled_terms
    from experiments.validation.tools import script

    src, o = source, list(ov)
    if factor != 1.0:
        src, o = str(scaled_profile(source, factor, Path(out) / "profile")), scaled_terms(ov, factor)
    return [script("splitbench-replay"), "trace=path", f"trace.path={trace}",
            f"profiles.source={src}", f"seed={seed}", f"hydra.run.dir={out}", *o]  # fmt: skip


def arrival_as_work(c: ValidateConfig, design: str) -> bool:
    """Whether ``design``'s measured arrival terms are simulated as work on its instances
    (``simulate.arrival_as``; ``auto``: where every instance's API server runs on that instance's
    own compute cores, :func:`experiments.validation.deploy.server_cores`)."""
    from experiments.validation.deploy import ENGINES, parse_cpus, server_cores

    mode = c.simulate.arrival_as
    if not design.startswith("baseline") or mode == "latency":
        return False
    if mode == "work":
        return True
    d = c.deploy
    for n in ENGINES[design]:
        inst = getattr(d, n)
        own = set(parse_cpus(inst.cpus) or [])
        srv = set(server_cores(d, design, inst) or [])
        if not own or not srv or not srv <= own:
            return False
    return True


def serving_overrides(probes: dict | None, design: str, policy: str,
                      decode_leg_as: str = "latency", arrival_work: bool = False
                      ) -> list[str]:  # fmt: skip
    """``serving.<term>=<value>`` of every measured term (probe-<design>'s ``terms``); the
    disaggregated terms only on a Splitwise design with the vllm policy (the reference policy
    refuses them). ``decode_leg_as="work"``: the measured decode leg (``decode_leg_*``) is
    given as decode-instance work (``decode_work_*``: replay.serving) instead of latency;
    ``arrival_work``: a co-located design's arrival terms (``arrival_*``) as the instances' work
    per request (``arrival_work_*``)."""
    from replay.serving import DISAGGREGATED

    terms = dict((probes or {}).get("terms") or {})
    as_work = [("decode_leg", "decode_work")] if decode_leg_as == "work" else []
    if arrival_work and policy == "vllm" and design != "splitwise":
        as_work.append(("arrival", "arrival_work"))
    for path, work in as_work:  # the measured path's terms, renamed to its work terms
        for suffix in ("s", "s_per_token"):
            terms[f"{work}_{suffix}"] = terms.pop(f"{path}_{suffix}", 0.0)
    out = []
    # in name order: a step's result reloaded from its step.json has its keys sorted, and the
    # overrides are part of the next steps' keys (in the probe's order a resumed run simulated
    # every rung of the split design again: same numbers, another key)
    for k, v in sorted(terms.items()):
        if k in DISAGGREGATED and (design != "splitwise" or policy != "vllm"):
            continue
        if v:
            out.append(f"serving.{k}={float(v):.6g}")
    return out


def decode_step_s(source: str | None) -> float:
    """The profile's fastest batch-1 decode iteration (s); 0 when there is none."""
    import pandas as pd

    if not source or source == "reference":
        return 0.0
    p = Path(source)
    files = sorted(p.rglob("profiles.csv")) if p.is_dir() else [p]
    best = 0.0
    for f in files:
        df = pd.read_csv(f)
        one = df[(df["phase"] == "decode") & (df["batch_size"] == 1)]["latency_s"]
        if len(one) and (best == 0.0 or float(one.min()) < best):
            best = float(one.min())
    return best


def handover_overrides(cal: dict, step_s: float = 0.0, block_size: int | None = None) -> list[str]:
    """The calibrated hand-over as the simulator's KV transfer (``handover_s`` + ``per_token_s``
    x tokens), less one decode step (the measured hand-over includes the decode instance's first
    iteration, which the simulator adds itself).

    With the split fit (``a + b_injected x injected + b_recomputed x recomputed``) and the block
    size: the connector injects whole blocks and the decode instance recomputes the rest, on
    average ``(block_size + 1) / 2`` tokens, so ``handover_s = a + (b_recomputed - b_injected) x
    (block_size + 1) / 2`` and ``per_token_s = b_injected``. Otherwise the line ``a + b x L``."""
    cal = cal or {}
    sp = cal.get("handover_split_fit") or {}
    keys = ("a", "b_injected_s_per_token", "b_recomputed_s_per_token")
    if block_size and all(isinstance(sp.get(k), int | float) and np.isfinite(sp[k]) for k in keys):
        a0, bi, br = (float(sp[k]) for k in keys)
        a, b = a0 + (br - bi) * (block_size + 1) / 2, bi
    else:
        h = cal.get("handover_fit") or {}
        a, b = h.get("a"), h.get("b")
        if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)):
            return []
    step = float(step_s or 0.0)
    return [f"scheduler.kv_transfer.handover_s={max(0.0, float(a) - step):.6g}",
            f"scheduler.kv_transfer.per_token_s={max(0.0, float(b)):.6g}"]  # fmt: skip
