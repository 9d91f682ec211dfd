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
# # 02 · The alignment objectives side by side: formulas, code, gradients
#
# **Learning goals.** After this notebook you can
#
# 1. write down SFT, IFT, DPO, IPO, ORPO, ASFT and SimPO and find each formula in
#    `lakelab.objectives`; compute them from per-token log-probs with
#    `lakelab.registry.compute_objective` (exercise 1: DPO by hand);
# 2. say which objectives use the summed log-prob $S(y)$ and which the mean $A(y)$, and why
#    that matters for responses of different lengths;
# 3. read a gradient field with `lakelab.analysis`, and state precisely when DPO "lowers the
#    rejected response faster than it raises the chosen one" (the ASFT paper's claim): under
#    which gradient flow it holds and under which it reverses (exercise 2);
# 4. explain IFT's two ingredients: the temporal residual (`lakelab.residual`, eq. 17) and the
#    token weights (`lakelab.reductions.ift_weights`: paper vs official code, the $\gamma = 0$
#    special case) (exercise 3).
#
# Runs in a few seconds on a CPU. The objectives are *pure functions of log-probs*; where the
# log-probs come from (a lake policy here, a language model elsewhere) does not matter to them.

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from lakelab import make_lake, soft_value_iteration
from lakelab.analysis import gradient_field, sequence_gradients
from lakelab.reductions import ift_weights, mean_logps, sum_logps
from lakelab.registry import OBJECTIVES, SequenceLogps, compute_objective
from lakelab.residual import predicted_inputs, temporal_residual
from lakelab.mlp.data import optimal_and_suboptimal_routes, to_batch

pd.set_option("display.precision", 4)

# %% [markdown]
# ## 1. One preference pair, as tokens
#
# On Frozen Lake a trajectory is a "response": the start state is the prompt and each action
# $a_t$, taken in state $s_t$, is a token with log-prob $\log \pi(a_t \mid s_t)$. On the two-paths
# lake the *chosen* response $y_w$ is the optimal route (8 moves) and the *rejected* $y_l$ the
# sub-optimal one (12 moves). As the policy we take the soft optimum at a fairly high
# temperature, and as the frozen *reference* policy (DPO, IPO) the uniform one.

# %%
lake = make_lake("two-paths")
best, second = optimal_and_suboptimal_routes(lake)
log_pi = torch.tensor(np.log(soft_value_iteration(lake, tau=0.05, gamma=0.9).policy))  # [S, A]
log_ref = torch.full_like(log_pi, np.log(0.25))  # uniform reference policy


def token_logps(table, batch):
    """Per-token log-probs (B, T) of a padded batch under a tabular policy [S, A]."""
    return table[batch.states[0], batch.actions[0]]


chosen, rejected = to_batch([[best]]), to_batch([[second]])  # Batch [1, B=1, T]
# KTO's reference point needs mismatched (prompt, response) pairs: on the lake every response
# has the same prompt (the start state), so they are the batch's own two routes; WPO's
# weights need log sum_a pi(a | s)^2 at each state a route visits
both = to_batch([[best, second]])
log_sum_sq = torch.logsumexp(2 * log_pi, -1)  # [S]
logps = SequenceLogps(
    chosen=token_logps(log_pi, chosen),
    chosen_mask=chosen.mask[0],
    rejected=token_logps(log_pi, rejected),
    rejected_mask=rejected.mask[0],
    ref_chosen=token_logps(log_ref, chosen),
    ref_rejected=token_logps(log_ref, rejected),
    kl=token_logps(log_pi, both),
    kl_mask=both.mask[0],
    ref_kl=token_logps(log_ref, both),
    chosen_log_sum_sq=log_sum_sq[chosen.states[0]],
    rejected_log_sum_sq=log_sum_sq[rejected.states[0]],
)
print("chosen tokens:  ", logps.chosen.numpy().round(3))
print("rejected tokens:", logps.rejected.numpy().round(3))

# %% [markdown]
# ## 2. Two ways to reduce a response: $S(y)$ and $A(y)$
#
# * $S(y) = \sum_t m_t \log \pi(a_t \mid s_t)$, the log-probability of the whole response
#   (`sum_logps`): DPO;
# * $A(y) = S(y) / \sum_t m_t$, the mean token log-prob (`mean_logps`): SFT, IPO, ORPO, ASFT,
#   SimPO. IFT keeps the tokens and weights them (section 5).
#
# $m_t$ is the mask: 1 on response tokens, 0 on prompt and padding.

# %%
S_w, S_l = (
    sum_logps(logps.chosen, logps.chosen_mask),
    sum_logps(logps.rejected, logps.rejected_mask),
)
A_w, A_l = (
    mean_logps(logps.chosen, logps.chosen_mask),
    mean_logps(logps.rejected, logps.rejected_mask),
)
print(f"S(y_w) = {S_w.item():.3f}   S(y_l) = {S_l.item():.3f}")
print(f"A(y_w) = {A_w.item():.3f}   A(y_l) = {A_l.item():.3f}")

# %% [markdown]
# ## 3. The objectives, from formula to code
#
# Each loss is a pure tensor function in `lakelab.objectives` whose docstring holds the
# formula; `lakelab.registry` keeps, for each one, the one-line formula (the same text, tested),
# what it consumes ($S$: summed, $A$: mean log-probs, or per-token), its hyper-parameters and
# its paper, with $\mathrm{logodds}(y) = A(y) - \log\big(1 - \exp A(y)\big)$:

# %%
registry = pd.DataFrame(
    {
        name: {
            "formula (per sequence)": obj.formula,
            "reduction": obj.reduction,
            "needs pairs": obj.needs_pairs,
            "needs reference": obj.needs_reference,
            "hyper-parameters (default)": ", ".join(
                f"{h.name}={h.default}" for h in obj.hyperparams
            ),
            "paper": obj.citation,
        }
        for name, obj in OBJECTIVES.items()
    }
).T
registry

# %% [markdown]
# The formula, straight from the code that runs in training (here DPO; try any other name):

# %%
print(inspect.getdoc(OBJECTIVES["dpo"].loss_fn).split("\n\n")[1])

# %% [markdown]
# `compute_objective` applies the right reduction and calls the loss unchanged. Every loss
# returns `(loss, metrics)`, with metrics named as TRL logs them:

# %%
table = {}
for name in OBJECTIVES:
    loss, metrics = compute_objective(name, logps)
    table[name] = {
        "loss": loss.item(),
        **{k: v for k, v in metrics.items() if k.startswith(("rewards/", "logps/"))},
    }
table = pd.DataFrame(table).T
table

# %% [markdown]
# Look at `rewards/accuracies`. Relative to the uniform reference, most tokens of both routes
# became more likely, and the rejected route has 12 tokens against 8: its summed gain can
# be the larger one, so DPO's implicit reward (on $S$) can prefer the rejected route while the
# mean-based objectives prefer the chosen one. $S(y)$ grows with length; $A(y)$ does not.
# Which one happens here:

# %%
for name in ("dpo", "ipo", "orpo", "asft", "simpo"):
    prefers = "chosen" if table.loc[name, "rewards/accuracies"] == 1 else "rejected"
    margin = table.loc[name, "rewards/margins"]
    print(f"{name:>5}: implicit reward margin {margin:+.4f}, prefers the {prefers} route")

# %% [markdown]
#
# ### Exercise 1: DPO by hand
#
# Write the batch-mean DPO loss from its formula, given the four summed log-probs (B,) and
# `beta`. The check compares it with `compute_objective("dpo", ...)` on the pair above and on a
# random batch of 5 pairs of different lengths. (Hint: `torch.nn.functional.logsigmoid`.)


# %% tags=["exercise"]
def my_dpo_loss(S_w, S_l, S_ref_w, S_ref_l, beta):
    """DPO loss, averaged over the batch: a 0-d tensor."""
    # YOUR CODE HERE: replace the line below
    return torch.tensor(0.0, dtype=torch.float64)


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_dpo_loss(S_w, S_l, S_ref_w, S_ref_l, beta):
    """DPO loss, averaged over the batch: a 0-d tensor."""
    d = beta * ((S_w - S_ref_w) - (S_l - S_ref_l))  # (B,)
    return -torch.nn.functional.logsigmoid(d).mean()


# %% tags=["check"]
gen = torch.Generator().manual_seed(0)
B, T = 5, 7


def random_tokens():
    return -3 * torch.rand(B, T, generator=gen, dtype=torch.float64)  # (B, T) log-probs


def random_mask():
    return (torch.arange(T) < torch.randint(1, T + 1, (B, 1), generator=gen)).double()


mask_w, mask_l = random_mask(), random_mask()
random_batch = SequenceLogps(
    random_tokens(), mask_w, random_tokens(), mask_l, random_tokens(), random_tokens()
)
for batch in (logps, random_batch):
    sums = {
        "S_w": sum_logps(batch.chosen, batch.chosen_mask),
        "S_l": sum_logps(batch.rejected, batch.rejected_mask),
        "S_ref_w": sum_logps(batch.ref_chosen, batch.chosen_mask),
        "S_ref_l": sum_logps(batch.ref_rejected, batch.rejected_mask),
    }
    for beta in (0.1, 2.0):
        expected, _ = compute_objective("dpo", batch, {"beta": beta})
        mine = torch.as_tensor(my_dpo_loss(**sums, beta=beta), dtype=torch.float64)
        assert torch.isclose(mine, expected), f"DPO loss differs at beta={beta}"
print("Exercise 1: correct")

# %% [markdown]
# ## 4. Gradients: who moves, and how fast?
#
# `lakelab.analysis.sequence_gradients` treats the chosen and rejected log-probs as free
# variables (the "tabular" view of the ASFT paper and of Feng et al. 2024) and differentiates
# the very same loss functions with autograd. A gradient becomes a speed in one of two ways:
#
# * **log-prob flow** (`rate_*`): the log-probs follow the negative gradient,
#   $d \log p / dt = -\partial L / \partial \log p$, so
#   $dp/dt = p \cdot (-\partial L / \partial \log p)$;
# * **probability flow** (`prob_rate_*`, the papers' field): the probabilities follow it,
#   $dp/dt = -\partial L / \partial p = -(\partial L / \partial \log p) / p$.
#
# A real network is neither (its *parameters* follow the gradient), which is why both are shown.
# Take a point where the policy already prefers the chosen response, $p_w = 0.6$, $p_l = 0.1$,
# with the reference equal to the policy (the first step of training):

# %%
p_w, p_l = 0.6, 0.1
columns = [
    "dL/dlogp_chosen",
    "dL/dlogp_rejected",
    "rate_chosen",
    "rate_rejected",
    "rate_ratio",
    "prob_rate_chosen",
    "prob_rate_rejected",
    "prob_rate_ratio",
]
grads = {
    name: sequence_gradients(
        name, np.log(p_w), np.log(p_l), ref_chosen_logp=np.log(p_w), ref_rejected_logp=np.log(p_l)
    )
    for name in OBJECTIVES
}
at_point = pd.DataFrame({name: {c: float(g[c]) for c in columns} for name, g in grads.items()}).T
at_point

# %% [markdown]
# **The ASFT claim, read carefully.** For DPO,
# $\partial L / \partial \log p_l = -\partial L / \partial \log p_w$: the two
# *log*-probs receive equal and opposite pushes. What that means for the probabilities depends
# on the flow:
#
# * probability flow (`prob_rate_ratio`, the papers' view): the rejected probability falls
#   $p_w / p_l = 6$ times faster than the chosen one rises. **This is the claim**, and it holds
#   whenever $p_l < p_w$.
# * log-prob flow (`rate_ratio`): the rejected probability falls $p_l / p_w = 1/6$ as fast:
#   the same situation, the opposite conclusion.
#
# So "DPO lowers the rejected faster than it raises the chosen" is a statement about the
# gradient with respect to *probabilities*. SimPO and IPO share DPO's equal-and-opposite
# structure (on $A$ instead of $S$). SFT never touches the rejected response, and ORPO and ASFT
# add an absolute term on the chosen one. The asserts below check these statements on the
# table above:

# %%
for name in ("dpo", "ipo", "simpo"):  # equal and opposite pushes on the two log-probs
    assert np.isclose(
        at_point.loc[name, "dL/dlogp_rejected"], -at_point.loc[name, "dL/dlogp_chosen"]
    )
    assert np.isclose(at_point.loc[name, "prob_rate_ratio"], p_w / p_l)
    assert np.isclose(at_point.loc[name, "rate_ratio"], p_l / p_w)
for name in ("orpo", "asft"):  # here the chosen probability moves faster, in both views
    assert at_point.loc[name, "prob_rate_ratio"] < 1 and at_point.loc[name, "rate_ratio"] < 1
assert at_point.loc["sft", "dL/dlogp_rejected"] == 0

# %% [markdown]
#
# ### Exercise 2: DPO's speed ratios in closed form
#
# From the paragraph above, write both ratios as functions of $p_w$ and $p_l$ only. The check
# compares them with `sequence_gradients("dpo", ...)` at several points and betas.


# %% tags=["exercise"]
def my_dpo_ratios(p_w, p_l):
    """Return (rate_ratio, prob_rate_ratio) = |rejected speed| / |chosen speed| for DPO."""
    # YOUR CODE HERE: replace the line below
    return 1.0, 1.0


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_dpo_ratios(p_w, p_l):
    """Return (rate_ratio, prob_rate_ratio) = |rejected speed| / |chosen speed| for DPO."""
    # |dL/dlogp| is the same c for both: rate = p * c, prob_rate = c / p
    return p_l / p_w, p_w / p_l


# %% tags=["check"]
for pw, pl, beta in ((0.6, 0.1, 0.1), (0.2, 0.7, 0.5), (0.9, 0.05, 2.0), (0.3, 0.3, 0.1)):
    grad = sequence_gradients(
        "dpo",
        np.log(pw),
        np.log(pl),
        hparams={"beta": beta},
        ref_chosen_logp=np.log(0.5),
        ref_rejected_logp=np.log(0.4),
    )
    rate_ratio, prob_rate_ratio = my_dpo_ratios(pw, pl)
    assert np.isclose(rate_ratio, grad["rate_ratio"]), f"rate_ratio differs at {(pw, pl)}"
    assert np.isclose(prob_rate_ratio, grad["prob_rate_ratio"]), (
        f"prob_rate_ratio differs at {(pw, pl)}"
    )
print("Exercise 2: correct")

# %% [markdown]
# ### The whole field
#
# `gradient_field` evaluates the same quantities on a grid. Each arrow is the direction in
# which $(p_w, p_l)$ moves (lengths normalised, colour = $\log_{10}$ of the speed). Top row:
# probability flow; bottom row: log-prob flow. (For DPO the reference log-probs only shift the
# field; here they are equal.)

# %%
p_grid = np.linspace(0.05, 0.95, 10)
shown = ("dpo", "simpo", "orpo", "asft")
fig, axes = plt.subplots(2, len(shown), figsize=(3.2 * len(shown), 6.4), sharex=True, sharey=True)
for j, name in enumerate(shown):
    field = gradient_field(name, np.log(p_grid), np.log(p_grid))
    for i, prefix in enumerate(("prob_rate", "rate")):
        u, v = field[f"{prefix}_chosen"], field[f"{prefix}_rejected"]
        speed = np.hypot(u, v)
        ax = axes[i, j]
        ax.quiver(
            field["p_chosen"],
            field["p_rejected"],
            u / speed,
            v / speed,
            np.log10(speed),
            cmap="viridis",
            scale=14,
        )
        ax.plot([0, 1], [0, 1], color="gray", lw=0.5)
        ax.set_title(
            f"{name}: {'probability' if prefix == 'prob_rate' else 'log-prob'} flow", fontsize=9
        )
        ax.set_xlabel("p_chosen")
    axes[0, j].set_xlim(0, 1)
    axes[0, j].set_ylim(0, 1)
axes[0, 0].set_ylabel("p_rejected")
axes[1, 0].set_ylabel("p_rejected")
fig.tight_layout()

# %% [markdown]
# Below the diagonal ($p_w > p_l$: the policy already prefers the chosen response) DPO's and
# SimPO's probability-flow arrows point mostly *down*: they mostly push the rejected response
# away. ORPO's and ASFT's point mostly *right*. For each objective, on what share of the grid
# points of that region does the rejected probability move faster than the chosen one?

# %%
below = (
    np.log(p_grid)[None, :] > np.log(p_grid)[:, None]
)  # p_chosen > p_rejected, (rejected, chosen) grid
for name in OBJECTIVES:
    field = gradient_field(name, np.log(p_grid), np.log(p_grid))
    share = {flow: (field[f"{flow}_ratio"][below] > 1).mean() for flow in ("prob_rate", "rate")}
    print(
        f"{name:>5}: rejected faster on {share['prob_rate']:4.0%} of the region (probability flow),"
        f" {share['rate']:4.0%} (log-prob flow)"
    )

# %% [markdown]
#
# **Why do chosen log-probs go down during DPO training?** Not in this picture: here the
# chosen probability always rises. In a real model the chosen and rejected responses share
# parameters (on the lake: the states both routes visit), so pushing the rejected response down
# can drag the chosen one along. Notebook 03 follows the chosen route's log-prob through real
# training runs (`logp_optimal`, with online and with offline negatives).
#
# ## 5. IFT, ingredient 1: the temporal residual (eq. 17)
#
# SFT conditions every token on the *true* prefix (teacher forcing). IFT first runs the model
# without gradient to see what it would predict next, and mixes that prediction into the
# next input:
#
# $$\delta(s_i) = (1 - \lambda)\, s_i + \lambda\, \pi_\theta(s_{i-1}),$$
#
# with $\lambda = 0.2$ by default (the argument `lam`).
#
# On the lake an input is a one-hot state, and the model's "prediction of the next input" is
# the state its most likely action leads to (`greedy`, the official code) or the
# action-probability-weighted mixture of next states (`expected`, eq. 17 read literally).
# Here for a random policy along the optimal route:

# %%
rng = np.random.default_rng(1)
policy = rng.dirichlet(np.ones(lake.n_actions), size=lake.n_states)  # a random policy [S, A]
states = torch.tensor(best.states)  # (T,)
P = torch.tensor(lake.P)  # [S, A, S']
next_greedy = P[states, torch.tensor(policy.argmax(axis=1))[states]]  # (T, S') greedy
next_expected = torch.einsum("ta,tas->ts", torch.tensor(policy)[states], P[states])  # (T, S')
one_hot = torch.eye(lake.n_states, dtype=torch.float64)  # the "embedding" of one-hot inputs
inputs = one_hot[states][None]  # (B=1, T, S)
prompt = torch.zeros(1, len(states), dtype=torch.bool)  # position 0 is never mixed anyway

mixed = {
    variant: temporal_residual(
        inputs, predicted_inputs(nxt[None], one_hot, variant=variant), prompt, lam=0.2
    )
    for variant, nxt in (("greedy", next_greedy), ("expected", next_expected))
}
assert torch.equal(
    temporal_residual(inputs, predicted_inputs(next_greedy[None], one_hot), prompt, lam=0.0), inputs
)
assert torch.allclose(mixed["greedy"].sum(-1), torch.ones(1, len(states), dtype=torch.float64))

fig, axes = plt.subplots(1, 3, figsize=(12, 2.6), sharey=True)
for ax, (title, x) in zip(axes, (("true inputs (SFT)", inputs), *mixed.items()), strict=True):
    ax.imshow(x[0].numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_title(title if title.startswith("true") else f"mixed, {title}", fontsize=9)
    ax.set_xlabel("state (input unit)")
axes[0].set_ylabel("position in response")
fig.tight_layout()

# %% [markdown]
# Each row of a mixed input keeps 0.8 on the true state and spreads 0.2 over the predicted one.
# Predicted states can be cells the data never visits (even holes): IFT's training signal
# reaches beyond the demonstrations, the mechanism behind its "explored grid" in notebook 03.
# With $\lambda = 0$ the inputs are unchanged (the assert above).
#
# ## 6. IFT, ingredient 2: token weights
#
# Eq. 20 of the IFT paper sums the losses of *every prefix* of the response, so token $i$ is
# counted once for each prefix that contains it: earlier tokens weigh more, $W_i \propto N - i$
# (`weighting="prefix"`, $\gamma = 1$). The official code (`get_cumsum_weight`) softens this
# with a discount and, by default, with the later tokens' own losses (`weighting="loss"`):
#
# $$c_j = m_j (-\log p'_j)/N,\qquad W_i = \sum_{j \ge i} \gamma^{j-i} c_j,\qquad
#   W \leftarrow W \cdot N / \textstyle\sum_k W_k.$$
#
# Weights average 1 over the response. `"none"` gives all ones (SFT's weighting).
# **The $\gamma = 0$ special case:** the formula with $\gamma \to 0$ gives weights proportional
# to each token's own loss, but the official code (and `lakelab`) returns all ones at exactly
# $\gamma = 0$, so IFT with $\gamma = 0$ and $\lambda = 0$ *is* SFT. A deliberate discontinuity:

# %%
token_lp = torch.tensor(np.log(policy[list(best.states), list(best.actions)]))[None]  # (1, N)
mask = torch.ones_like(token_lp)
settings = [
    ("none", 1.0),
    ("prefix", 1.0),
    ("prefix", 0.95),
    ("loss", 0.95),
    ("loss", 1e-6),
    ("loss", 0.0),
]
weights = pd.DataFrame(
    {
        w if w == "none" else f"{w}, gamma={g:g}": ift_weights(
            token_lp, mask, gamma=g, weighting=w
        )[0].numpy()
        for w, g in settings
    }
).T
weights.columns = [f"t={t}" for t in range(token_lp.shape[1])]
weights.loc["token loss -logp"] = -token_lp[0].numpy()
weights

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.2))
for label, row in weights.drop(index="token loss -logp").iterrows():
    ax.plot(
        range(len(row)),
        row.to_numpy(),
        marker="o",
        label=label,
        ls="--" if label.endswith("=0") else "-",
    )
ax.set_xlabel("token position t")
ax.set_ylabel("weight W_t")
ax.legend(fontsize=7)
fig.tight_layout()

# %%
sft, _ = compute_objective("sft", logps)
ift_gamma0, _ = compute_objective("ift", logps, {"gamma": 0.0})
ift_default, _ = compute_objective("ift", logps)
print(f"SFT {sft.item():.5f}   IFT gamma=0 {ift_gamma0.item():.5f}", end="   ")
print(f"IFT default {ift_default.item():.5f}")
assert torch.isclose(sft, ift_gamma0)

# %% [markdown]
# (Here `compute_objective("ift", ...)` gets the true-input log-probs, i.e. $\lambda = 0$; in
# training the log-probs come from the mixed pass of section 5. IFT's `lam` and `residual` are
# *model-side* knobs that the training loop uses, which is why the loss ignores them.)
#
# ### Exercise 3: the prefix-count weights in closed form
#
# With `weighting="prefix"` and $\gamma = 1$, token $i$ (0-based) of an $N$-token response gets a
# weight proportional to $N - i$, rescaled so the weights average 1. Write them for any $N$.
# The check compares with `ift_weights` for $N = 1, \dots, 12$.


# %% tags=["exercise"]
def my_prefix_weights(N):
    """IFT prefix-count weights (gamma = 1) of an N-token response: array of shape (N,)."""
    # YOUR CODE HERE: replace the line below
    return np.ones(N)


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_prefix_weights(N):
    """IFT prefix-count weights (gamma = 1) of an N-token response: array of shape (N,)."""
    counts = N - np.arange(N)  # token i is in N - i prefixes
    return counts * N / counts.sum()  # = 2 (N - i) / (N + 1)


# %% tags=["check"]
T = 12
for N in range(1, T + 1):
    m = (torch.arange(T) < N).double()[None]  # (1, T): N response tokens, then padding
    lp = -torch.rand(1, T, generator=torch.Generator().manual_seed(N), dtype=torch.float64)
    expected = ift_weights(lp, m, gamma=1.0, weighting="prefix")[0, :N].numpy()
    assert np.allclose(my_prefix_weights(N), expected), f"weights differ for N={N}"
print("Exercise 3: correct")

# %% [markdown]
# ## 7. On-policy RL: GRPO's advantages and PPO's clipping
#
# The RL methods (`lakelab.policy_gradient`, [docs/rl.md](../docs/rl.md)) learn from episodes
# their own policy samples. Sample 8 episodes of a uniform policy on the lake and score them
# 1 for reaching the goal: GRPO's advantage is each reward minus the group's mean, over the
# group's standard deviation (`group_advantages`).

# %%
from lakelab.mlp.sampling import sample  # noqa: E402
from lakelab.policy_gradient import group_advantages, grpo_loss  # noqa: E402

uniform = np.full((lake.n_states, 4), 0.25)
episodes = sample(lake, uniform, 8, np.random.default_rng(3), max_len=100)
rewards = torch.tensor(lake.goal[episodes.final], dtype=torch.float64)  # 1: reached the goal
print("rewards:   ", rewards.numpy())
print("advantages:", group_advantages(rewards, 8).numpy().round(3))
print("all equal: ", group_advantages(torch.zeros(8, dtype=torch.float64), 8).numpy())

# %% [markdown]
# A group whose episodes all fail (or all succeed) gets zero advantages: GRPO learns nothing
# from it (TRL logs the share of such groups as `frac_reward_zero_std`). On a lake where the
# uniform policy almost never reaches the goal, most groups are like that at first.
#
# PPO and GRPO compare the current policy with the one that sampled, token by token:
# $\rho = \pi / \pi_{\mathrm{old}}$, clipped to $[1 - \epsilon, 1 + \epsilon]$. Once a token's
# ratio has left the trust region in the direction its advantage pushes, its gradient is zero:

# %%
ratios = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5], dtype=torch.float64)
for advantage in (1.0, -1.0):
    log_rho = ratios.log()[:, None].clone().requires_grad_(True)  # log pi, log pi_old = 0
    surrogate, _ = grpo_loss(log_rho, torch.zeros(5, 1, dtype=torch.float64),
                             torch.ones(5, 1, dtype=torch.bool),
                             torch.full((5,), advantage, dtype=torch.float64))  # fmt: skip
    (slope,) = torch.autograd.grad(surrogate, log_rho)
    print(f"A = {advantage:+}: rho {ratios.tolist()} -> gradient {slope[:, 0].numpy().round(3)}")

# %% [markdown]
# With $A > 0$ the ratio 1.5 (above 1.2) gets no gradient, with $A < 0$ the ratio 0.5 (below 0.8):
# one batch cannot push a token's probability far from where the sampling policy had it.
#
# ## Summary
#
# * DPO works on sums $S(y)$, the others (except IFT) on means $A(y)$; with responses of
#   different lengths they can disagree about which response is better.
# * DPO, IPO and SimPO push chosen and rejected log-probs equally and oppositely. Whether the
#   rejected probability then falls "faster" depends on the flow: in probability space (the
#   ASFT paper's view) yes, whenever $p_l < p_w$; in log-prob space, the reverse.
# * ORPO and ASFT keep an absolute likelihood term on the chosen response; SFT and IFT have only
#   that.
# * IFT = SFT on inputs mixed with the model's own predictions, with earlier tokens weighted
#   more; $\gamma = 0$ and $\lambda = 0$ recover SFT exactly.
#
# * GRPO's advantages are zero in a group whose rewards are all equal; PPO's and GRPO's
#   clipping stops a token's gradient once its ratio leaves $[1 - \epsilon, 1 + \epsilon]$.
#
# Notebook 03 trains with all of them on the lake.
