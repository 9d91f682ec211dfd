# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Aligning a tiny language model that plans on Frozen Lake
#
# Notebooks 02 and 03 applied the objectives to a policy over lake states. Here the policy is a
# small causal transformer that reads a lake *as text* and writes a plan, token by token, the
# way a language model answers a prompt. The exact solver still knows every right answer, and
# the real Gymnasium environment executes every plan the model writes.
#
# **Learning goals.** After this notebook you can
#
# 1. write a lake as a prompt and a plan as a response with `lakelab.lm.tokenizer`, and go
#    from text to token ids and back (exercise 1);
# 2. say where the training data comes from: the solver's shortest plans (chosen), a
#    mixed-quality corpus for pre-training, and sub-optimal or failing plans (rejected);
# 3. pre-train a base model (`lakelab.lm.train.pretrain`) and execute the plans it writes in
#    the real environment (exercise 2: a plan's outcome by hand, checked against
#    `lakelab.lm.metrics.execute`);
# 4. align the base model with SFT, IFT and DPO through `lakelab.lm.train.align`, which calls
#    the same `compute_objective` as every other part of lakelab (exercise 3: the DPO loss of
#    a batch by hand);
# 5. read the held-out metrics (success in the real env, shortest-plan rate, token KL to the
#    soft optimum $\pi^*$, log-likelihoods of chosen and rejected plans) and say what they show.
#
# It uses the `quick` preset of `lakelab.lm.config` (4x4 lakes, one seed, a 105k-parameter
# model, 300 pre-training and 30 alignment steps) and runs in about a minute on a CPU. The
# command line does the same with a resumable run directory:
# `lakelab lm --preset quick --out results/lm-quick` (and the app's LM page shows it).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lakelab.lakes import make_lake
from lakelab.lm.config import preset
from lakelab.lm.data import PLAN_KINDS, optimal_plan, seed_data, tasks
from lakelab.lm.metrics import evaluate, execute, held_out
from lakelab.lm.model import TinyGPT, generate, model_config
from lakelab.lm.report import lm_figure
from lakelab.lm.runs import BASE, summarize
from lakelab.lm.tokenizer import (
    ACTION_CHARS,
    VOCAB,
    decode,
    encode,
    parse_plan,
    plan_text,
    prompt_length,
    prompt_text,
)
from lakelab.lm.train import ReferenceCache, align, objective_logps, pretrain
from lakelab.plotting import draw_lake
from lakelab.registry import compute_objective
from lakelab.solver import value_iteration

pd.set_option("display.precision", 3)
torch.set_num_threads(1)  # as `lakelab lm`: at this size one thread is fastest, and exact
started = time.perf_counter()

# %% [markdown]
# ## 1. The protocol
#
# `LMConfig` names every choice (lakes, corpus, model, steps, learning rates); `preset("quick")`
# is the small one and `replace()` changes any field, validated.

# %%
config = preset("quick")
SEED = config.first_seed
pd.Series(config.to_dict(), name="value").to_frame()

# %% [markdown]
# ## 2. Lakes as text
#
# A sample is one string: the prompt (the map row by row, rows joined by `/`, then the marker
# `>`) and the response (one character per move, `L D R U` = Gymnasium's actions 0 1 2 3, then
# the end token `.`). Every character is a token, so the vocabulary has 12 tokens, and `_`
# pads a batch (never a target).

# %%
train_tasks, test_tasks = tasks(config)  # seeded random lakes with their ground truth
task = test_tasks[0]  # a held-out lake: never seen in training
lake = task.lake
print("vocabulary:", VOCAB, " (token id = position)")
print("prompt:    ", prompt_text(lake.desc))
print("a shortest plan:", plan_text(optimal_plan(task, None)), f"({task.shortest} moves)")
print("token ids: ", encode(prompt_text(lake.desc) + plan_text(optimal_plan(task, None))))
print(f"{len(train_tasks)} training lakes, {len(test_tasks)} held-out lakes, none in both")
sol = value_iteration(lake, gamma=config.gamma)
ax = draw_lake(lake, values=sol.V, policy=sol.policy, title="held-out lake 0: V* and pi")

# %% [markdown]
# ### Exercise 1: a prompt's token ids by hand
#
# Write the token ids of a lake's prompt without `encode`: the id of a character is its index
# in `VOCAB`. The check compares with `encode(prompt_text(desc))` on 20 lakes, decodes your ids
# back to the prompt and checks the prompt length is `prompt_length(size)`.


# %% tags=["exercise"]
def my_prompt_ids(desc):
    """Token ids of the prompt of the lake with rows ``desc`` (a tuple of strings)."""
    # YOUR CODE HERE: replace the line below
    return []


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_prompt_ids(desc):
    """Token ids of the prompt of the lake with rows ``desc`` (a tuple of strings)."""
    return [VOCAB.index(c) for c in "/".join(desc) + ">"]


# %% tags=["check"]
for t in test_tasks[:20]:
    mine = list(my_prompt_ids(t.lake.desc))
    assert mine == encode(prompt_text(t.lake.desc)), f"{t.lake.desc}: {mine}"
    assert decode(mine) == prompt_text(t.lake.desc)
    assert len(mine) == prompt_length(config.size)
print("Exercise 1: correct; a 4x4 prompt is", prompt_length(config.size), "tokens")

# %% [markdown]
# ## 3. Data from the solver
#
# Lakes are deterministic, so a plan is a fixed string of moves that reaches the goal or not.
# For every lake the solver gives the shortest plans (value iteration with $\gamma < 1$, so a
# wall bump is never optimal) and the soft optimum $\pi^*(a \mid s)$ the token KL compares with.
# `seed_data` builds, for one seed:
#
# * `corpus`, the pre-training data: per training lake `corpus_per_lake` plans, each optimal,
#   *avoiding* (a random walk that never steps into a hole: long detours) or *random* (often
#   ends in a hole), in the shares `corpus_mix`; a base model trained on it has seen good and
#   bad plans alike, so alignment has something to fix;
# * `chosen`: one shortest plan per training lake (ties split at random);
# * `rejected`: one sub-optimal or failing plan per training lake (offline negatives).
#
# Each is a `Tokens` batch: `inputs` and `targets` (shifted by one) and a `mask` that is True on
# the response targets. Reading them back as text:

# %%
data = seed_data(config, SEED)
by_map = {t.lake.desc: t for t in data.tasks}


def samples(tokens):
    """(task, response text) of every sample of a Tokens batch."""
    out = []
    for prompt, targets, mask in zip(tokens.prompts, tokens.targets, tokens.mask, strict=True):
        desc = tuple(decode(prompt)[:-1].split("/"))  # drop the marker, split the rows
        out.append((by_map[desc], decode(targets[mask])))
    return out


def outcome(task, response, real_env=False):
    """What a response does on its lake: in the exact MDP (``task.run``) or, with
    ``real_env``, in Gymnasium's env (``execute``); the two agree (the LM tests check it)."""
    plan = parse_plan(response)
    if plan is None:
        return "not a plan"
    reached, moves = execute(task.lake.make_env(), plan) if real_env else task.run(plan)
    if reached:
        return "shortest" if moves == len(plan) == task.shortest else "goal, not shortest"
    last = task.lake.start
    for a in plan[:moves]:
        last = task.step(last, a)
    return "hole" if task.lake.holes[last] else "ran out"


shares = {}
for name in ("corpus", "chosen", "rejected"):
    kinds = [outcome(t, r) for t, r in samples(getattr(data, name))]
    shares[name] = pd.Series(kinds).value_counts(normalize=True)
print("the corpus mixes plan kinds", dict(zip(PLAN_KINDS, config.corpus_mix, strict=True)))
pd.DataFrame(shares).fillna(0.0)

# %% [markdown]
# One training lake with its three kinds of data:

# %%
t0, chosen0 = samples(data.chosen[:1])[0]
_, rejected0 = samples(data.rejected[:1])[0]
corpus0 = [r for t, r in samples(data.corpus[: config.corpus_per_lake])]
print(prompt_text(t0.lake.desc))
print("  chosen:  ", chosen0, "->", outcome(t0, chosen0))
print("  rejected:", rejected0, "->", outcome(t0, rejected0))
for r in corpus0:
    print("  corpus:  ", r, "->", outcome(t0, r))

# %% [markdown]
# ## 4. The tiny transformer
#
# `TinyGPT` is a nanoGPT-style decoder (pre-norm blocks, learned positions, tied embeddings,
# `scaled_dot_product_attention` with a causal mask). `generate` continues prompts greedily or
# by sampling, and stops a row at its end token. Untrained, it writes nothing useful:

# %%
untrained = TinyGPT(model_config(config.model), seed=SEED)
print(f"model {config.model!r}: {untrained.n_params():,} parameters, {model_config(config.model)}")
prompts = torch.tensor([encode(prompt_text(t.lake.desc)) for t in test_tasks[:3]])  # (3, P)
for row in generate(untrained, prompts, config.max_moves + 1):
    print(repr(decode(row)))

# %% [markdown]
# ## 5. Pre-training the base model
#
# Pre-training is SFT (`compute_objective("sft", ...)`: the mean negative log-likelihood of the
# response tokens) on the mixed corpus. Every `pretrain_log_every` steps the held-out metrics
# are computed on lakes the model never saw:
#
# * **success**: the greedy plan, executed step by step in the real Gymnasium env, reaches the
#   goal;
# * **shortest**: it does so in the fewest possible moves and then ends;
# * **token KL**: mean over response tokens of
#
#   $$\mathrm{KL}\big(\pi^*(\cdot \mid s_t) \,\|\,
#     p_{\mathrm{model}}(\cdot \mid \mathrm{prompt}, \mathrm{plan}_{<t})\big)$$
#
#   along the canonical optimal plan (after the last move, the target is the end token);
# * **logp_chosen / logp_rejected**: summed log-likelihood $S(y)$ of an optimal plan and of a
#   sub-optimal or failing one.

# %%
held = held_out(config)
rows = []


def log_base(model, step):
    """Called at the log points of pre-training: the held-out metrics of the model so far."""
    row = {"method": BASE, "seed": SEED, "stage": "pretrain", "step": step}
    rows.append(row | evaluate(model, held))


t = time.perf_counter()
base = pretrain(config, data.corpus, SEED, log=log_base)
print(f"pre-training: {config.pretrain_steps} steps in {time.perf_counter() - t:.0f} s")
pd.DataFrame(rows).set_index("step").drop(columns=["method", "seed", "stage"])

# %% [markdown]
# ## 6. Executing plans in the real environment
#
# The base model's greedy plans for the first held-out lakes, executed with
# `lakelab.lm.metrics.execute(env, plan)`: `(reached the goal, moves made)`, moves after a hole
# or the goal are not made.


# %%
def greedy_responses(model, lake_tasks):
    prompts = torch.tensor([encode(prompt_text(t.lake.desc)) for t in lake_tasks])  # (N, P)
    return [decode(row).rstrip("_") for row in generate(model, prompts, config.max_moves + 1)]


for t, response in zip(test_tasks[:6], greedy_responses(base, test_tasks[:6]), strict=True):
    plan = parse_plan(response)
    result = "not a plan" if plan is None else execute(t.lake.make_env(), plan)
    print(f"{prompt_text(t.lake.desc)} {response:<14} -> {result}, shortest: {t.shortest}")

# %% [markdown]
# ### Exercise 2: a plan's outcome by hand
#
# Write `my_outcome(desc, plan)` that walks the plan on the map itself: `S` is top-left,
# actions are `L D R U` = 0 1 2 3, a move into the border leaves the agent in place, and the
# walk ends in a hole `H` or at the goal `G`. Return `(reached the goal, moves made)`, as
# `execute` does. The check runs your function and `execute` (the real Gymnasium env) on the
# base model's plans for every held-out lake and on random plans.


# %% tags=["exercise"]
def my_outcome(desc, plan):
    """(reached the goal, moves made) of ``plan`` (a list of actions) on the map ``desc``."""
    # YOUR CODE HERE: replace the line below
    return False, 0


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_outcome(desc, plan):
    """(reached the goal, moves made) of ``plan`` (a list of actions) on the map ``desc``."""
    deltas = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}  # L D R U
    r = c = 0
    for k, a in enumerate(plan):
        dr, dc = deltas[a]
        r = min(max(r + dr, 0), len(desc) - 1)
        c = min(max(c + dc, 0), len(desc[0]) - 1)
        if desc[r][c] in "HG":
            return desc[r][c] == "G", k + 1
    return False, len(plan)


# %% tags=["check"]
rng = np.random.default_rng(0)
checked = 0
for t, response in zip(test_tasks, greedy_responses(base, test_tasks), strict=True):
    random_plan = list(rng.integers(0, 4, size=rng.integers(1, 12)))
    for plan in (parse_plan(response), random_plan):
        if plan is None:
            continue
        expected = execute(t.lake.make_env(), plan)
        mine = tuple(my_outcome(t.lake.desc, plan))
        assert mine == expected, f"{t.lake.desc}, plan {plan_text(plan)}: {mine} != {expected}"
        checked += 1
print(f"Exercise 2: correct on {checked} plans")

# %% [markdown]
# ## 7. Alignment: SFT, IFT and DPO from the same base
#
# `align(config, base, method, data, seed, ...)` fine-tunes a copy of the base model with one
# objective, the same steps, learning rate and batches (same lakes in the same order) for
# every method:
#
# * **SFT** maximises the likelihood of the chosen (shortest) plans;
# * **IFT** does the same on inputs mixed with the model's own prediction of the previous
#   token (the temporal residual, eq. 17, on the token embeddings: two forward passes);
# * **DPO** raises the chosen plan's log-likelihood relative to the rejected one's, each
#   measured against the frozen base model (the *reference*), whose log-probs of every
#   chosen and rejected plan `ReferenceCache` computes once.

# %%
reference = ReferenceCache.build(base, data)
models = {}
for method in config.methods:

    def log(model, step, extra, method=method):
        """extra: the last batch's loss (and the online-negative fallbacks, 0 offline)."""
        row = {"method": method, "seed": SEED, "stage": "align", "step": step}
        rows.append(row | evaluate(model, held) | extra)

    t = time.perf_counter()
    models[method] = align(config, base, method, data, SEED, reference=reference, log=log)
    print(f"{method:>4}: {config.align_steps} steps in {time.perf_counter() - t:.1f} s")
metrics = pd.DataFrame(rows)

# %% [markdown]
# ### Exercise 3: the DPO loss of a batch by hand
#
# `objective_logps` gives what an objective needs from the model for one batch: per-token
# log-probs `(B, T)` of the chosen and rejected plans, their masks, and the reference model's
# log-probs. DPO (eq. 7 of the DPO paper) on summed log-probs
# $S(y) = \sum_t \log \pi_\theta(y_t \mid x, y_{<t})$:
#
# $$\mathcal{L}_{\mathrm{DPO}} = \operatorname{mean}_{\text{batch}} \Big[-\log \sigma\Big(\beta
#   \big[(S_w - S^{\mathrm{ref}}_w) - (S_l - S^{\mathrm{ref}}_l)\big]\Big)\Big]$$
#
# Compute it for the DPO model on a batch of 64 training lakes; the check compares with
# `compute_objective("dpo", ...)`.

# %%
batch = np.arange(64)
beta = config.method_hparams("dpo")["beta"]
with torch.no_grad():  # values only: no graph for the backward pass
    lp = objective_logps(
        models["dpo"],
        "dpo",
        {},
        data.chosen[batch],
        data.rejected[batch],
        reference.chosen[batch],
        reference.rejected[batch],
    )
print("beta =", beta, "; chosen log-probs", tuple(lp.chosen.shape), "mask", lp.chosen_mask.dtype)


# %% tags=["exercise"]
def my_dpo_loss(lp, beta):
    """The DPO loss (a scalar tensor) of the batch ``lp`` (a SequenceLogps)."""
    # YOUR CODE HERE: replace the line below
    return torch.tensor(0.0)


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_dpo_loss(lp, beta):
    """The DPO loss (a scalar tensor) of the batch ``lp`` (a SequenceLogps)."""

    def S(logps, mask):  # summed log-prob of each response, padding excluded
        return torch.where(mask, logps, 0.0).sum(-1)

    chosen = S(lp.chosen, lp.chosen_mask) - S(lp.ref_chosen, lp.chosen_mask)
    rejected = S(lp.rejected, lp.rejected_mask) - S(lp.ref_rejected, lp.rejected_mask)
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


# %% tags=["check"]
expected = compute_objective("dpo", lp, {"beta": beta})[0].item()
mine = float(my_dpo_loss(lp, beta))
assert np.isclose(mine, expected, rtol=1e-5, atol=1e-7), f"{mine:.6f} != {expected:.6f}"
print(f"Exercise 3: correct, DPO loss {expected:.4f} (at the base model: log 2 = {np.log(2):.4f})")

# %% [markdown]
# ## 8. Results on the held-out lakes
#
# `lakelab.lm.runs.summarize` gives each method's final values (with one seed there is no
# interval: `*_ci95` is 0 or NaN); `lm_figure` draws the curves `lakelab lm` writes to
# `figure.png`. Step 0 of every alignment curve is the base model.

# %%
summary = summarize(metrics).set_index("method")
METRICS = ("success", "shortest", "token_kl", "logp_chosen", "logp_rejected")
table = summary[[f"{k}_mean" for k in METRICS]].rename(columns=lambda c: c.removesuffix("_mean"))
table

# %%
fig = lm_figure(metrics, f"quick preset, {config.n_test} held-out lakes, seed {SEED}")

# %% [markdown]
# Success alone hides *how* a plan fails. The greedy plans of every model on all held-out
# lakes, by outcome in the real env:


# %%
outcomes = {}
for name, model in {BASE: base, **models}.items():
    responses = greedy_responses(model, test_tasks)
    kinds = [outcome(t, r, real_env=True) for t, r in zip(test_tasks, responses, strict=True)]
    outcomes[name] = pd.Series(kinds).value_counts()
by_outcome = pd.DataFrame(outcomes).fillna(0).astype(int).T
by_outcome

# %% [markdown]
# ## 9. What the numbers say
#
# Each objective against the base model it started from, computed from the table above. One
# seed and 200 held-out lakes: a difference of a few lakes (0.01 to 0.02 in success) is noise.

# %%
b = table.loc[BASE]
for method in config.methods:
    m = table.loc[method]
    change = "raises" if m["success"] > b["success"] else "lowers"
    print(
        f"{method}: {change} held-out success {b['success']:.2f} -> {m['success']:.2f}; "
        f"token KL to pi* {b['token_kl']:.3f} -> {m['token_kl']:.3f}"
    )
    print(
        f"     log p(chosen) {b['logp_chosen']:.2f} -> {m['logp_chosen']:.2f}, "
        f"log p(rejected) {b['logp_rejected']:.2f} -> {m['logp_rejected']:.2f}"
    )
    margin = m["logp_chosen"] - m["logp_rejected"]
    base_margin = b["logp_chosen"] - b["logp_rejected"]
    if margin > base_margin and m["logp_chosen"] < b["logp_chosen"]:
        print(
            f"     the margin chosen - rejected grew ({base_margin:.1f} -> {margin:.1f}) while "
            "the chosen plan itself became less likely"
        )
    failures = by_outcome.loc[method].drop("shortest", errors="ignore")
    base_failures = by_outcome.loc[BASE].drop("shortest", errors="ignore")
    print(
        f"     greedy plans that fail, by outcome: {base_failures.to_dict()} -> "
        f"{failures.to_dict()}"
    )
print("lowest token KL to pi*:", table["token_kl"].idxmin())
if (table["success"] == table["shortest"]).all():
    print("every greedy plan that reached the goal was a shortest plan (success = shortest)")
print(f"notebook ran in {time.perf_counter() - started:.0f} s")

# %% [markdown]
# **How to read this.**
#
# * **SFT and IFT** see only chosen (shortest) plans: each step makes them more likely, so the
#   token KL to $\pi^*$ falls and the greedy plan follows the solver more often. The base model
#   has only begun to read maps (see its success after pre-training), so there is a lot to
#   gain, and 30 steps already gain some of it.
# * **DPO** sees the same chosen plans and a rejected plan per lake, but its loss depends only
#   on the *difference* $(S_w - S^{\mathrm{ref}}_w) - (S_l - S^{\mathrm{ref}}_l)$. The cheapest
#   way to widen it is to push the rejected plans far down, and a rejected plan often starts
#   with the same moves as the chosen one, so the chosen plan can go down too. If the lines
#   above say the margin grew while the chosen plan became less likely, that is the
#   *likelihood displacement* the ASFT paper describes (notebook 03 saw it on the tabular
#   policy too): a loss far below its starting value $\log 2$ (exercise 3) and a model whose
#   greedy plans got worse. The failure counts say how they got worse: most rejected plans
#   end in a hole or stop short (section 3), and a model pushed away from them can trade one
#   failure for the other.
# * **Success and shortest coincide** on 4x4 lakes when the models that reach the goal go
#   there directly; token KL and the likelihoods move before success does, which is why the
#   run reports them.
# * **The protocol decides** much of this: one seed, 30 steps at `align_lr = 3e-3`, offline
#   negatives, $\beta = 0.1$. Nothing here is a ranking of the objectives in general.
#
# ## 10. Things to try
#
# Each one is a `config.replace(...)` away (re-run from section 5):
#
# * `methods=("sft", "ift", "dpo", "ipo", "orpo", "asft", "simpo")`: do the objectives with an
#   absolute likelihood term on the chosen plan (ORPO, ASFT) keep it from falling?
# * `hparams={"dpo": {"beta": 0.5}}` or a smaller `align_lr` for DPO;
# * `negatives="online"`: rejected plans sampled from the model being trained;
# * `seeds=3` (with `lakelab.lm.runs.run_lm`, intervals over seeds), more `align_steps`.
#
# From the command line, every objective with 10 seeds, each at its own learning rate, and a
# figure (about 3 minutes on 2 cores): `lakelab lm --preset default --out results/lm-default`;
# the app's LM page shows the run and lets you type a lake and watch each model's plan executed.
