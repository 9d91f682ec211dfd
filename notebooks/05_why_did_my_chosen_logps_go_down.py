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
# # 05 · Why did my chosen log-probs go down?
#
# The question users of DPO ask more than any other: during training `rewards/chosen` and
# `logps/chosen` *fall*, while `rewards/margins` grows and `rewards/accuracies` sits at 1.0.
# Is the model getting better or worse? A real run cannot say: it has no exact judge. On a
# lake we have one, so we can watch the probability leave the chosen response and see where
# it goes.
#
# **Learning goals.** After this notebook you can
#
# 1. recognise the symptom in TRL's logged proxies and check it against the exact truth
#    (success probability, $V^\pi/V^*$, KL to $\pi^*$) with `lakelab.mlp.alarms`;
# 2. compute the log-likelihood of a route from a replayed policy (exercise 1);
# 3. split the change of $\pi(\cdot \mid s)$ into mass moved to the optimal action, to other
#    safe actions and to actions that can fall into a hole, the *benign* and *catastrophic*
#    likelihood displacement of Razin et al. (2024) (exercise 2, `lakelab.mlp.flow`);
# 4. explain where DPO's probability went, and why (exercise 3), and what keeps it on the
#    chosen route.
#
# Runs in about half a minute on a CPU.

# %%
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lakelab import make_lake, soft_value_iteration
from lakelab.mlp.alarms import alarms, format_alarms
from lakelab.mlp.config import preset
from lakelab.mlp.data import optimal_and_suboptimal_routes
from lakelab.mlp.flow import KINDS, RISKY, action_classes, mass_flow, mass_moved, optimum_weights
from lakelab.mlp.replay import load_replay
from lakelab.mlp.replay_plot import replay_figure
from lakelab.mlp.runs import run_lake

pd.set_option("display.precision", 3)

# %% [markdown]
# ## 1. The symptom
#
# The two-paths lake has one shortest route (8 moves: down the left edge, then right along the
# bottom) and one longer route (12 moves, along the top). We give every objective the same
# pair, again and again: the shortest route as the chosen response $y_w$, the longer one as
# the rejected $y_l$ (`chosen="single"`, `negatives="offline"`). Both are *safe*: a policy
# that learned either would always reach the goal.
#
# DPO's loss for the pair, with the initial policy $\pi_{\theta_0}$ as the reference:
#
# $$\mathcal{L}_\mathrm{DPO} = -\log \sigma\Big(\beta \big[\log \tfrac{\pi_\theta(y_w)}
#   {\pi_\mathrm{ref}(y_w)} - \log \tfrac{\pi_\theta(y_l)}{\pi_\mathrm{ref}(y_l)}\big]\Big),
#   \qquad \log \pi_\theta(y) = \sum_t \log \pi_\theta(a_t \mid s_t).$$
#
# Beside it: SFT (only $-\log \pi_\theta(y_w)$), IPO (DPO's margin pulled to a fixed target)
# and RPO (DPO plus SFT's term). Three seeds, 200 steps.

# %%
out = Path(tempfile.mkdtemp()) / "displacement"
config = preset("quick").replace(
    methods=("sft", "dpo", "ipo", "rpo"), chosen="single", negatives="offline",
    steps=200, log_every=20,
)  # fmt: skip
paths = run_lake(config, out)
metrics = pd.read_csv(paths["metrics"])
mean = metrics.groupby(["method", "step"], sort=False).mean(numeric_only=True)

# %% [markdown]
# What TRL would log for DPO (mean over seeds; the `batch/` values are from the batch of the
# step before), next to what only the exact judge knows:

# %%
proxies = ["batch/rewards/margins", "batch/rewards/accuracies", "batch/logps/chosen",
           "batch/logps/rejected"]  # fmt: skip
truth = ["success", "optimality", "kl_visitation", "logp_optimal"]
mean.loc["dpo", proxies + truth]

# %% [markdown]
# The margin grows and every pair is ranked right, yet $\log \pi(y_w)$ (`logp_optimal`, the
# exact log-likelihood of the chosen route) falls far below where it started, and the success
# probability, tiny at the start for every method, falls further instead of rising (SFT on the
# same pair ends near 1: `mean.loc["sft"]`). lakelab's alarms read the same table:

# %%
print(format_alarms(alarms(metrics, batch_size=config.batch_size)))

# %% [markdown]
# ## 2. A route's likelihood from the replay
#
# Every run keeps each method's policy table $\pi(a \mid s)$ at every logged step
# (`lakelab.mlp.replay`). The log-likelihood of a route is the sum of its moves' log-probs,
# $\log \pi(y) = \sum_t \log \pi(a_t \mid s_t)$.
#
# **Exercise 1.** Write `my_route_logp(policy, route)` for a policy table `policy` [S, A] and a
# route (`route.states`, `route.actions`). The check compares it with the logged
# `logp_optimal` of every method and seed at every step.

# %%
lake = make_lake(config.lake)
best, second = optimal_and_suboptimal_routes(lake)
replays = {(m, s): load_replay(out, m, s) for m in config.methods for s in config.seed_list}
print("chosen route", best.actions, "\nrejected route", second.actions)
print("actions: 0 left, 1 down, 2 right, 3 up")


# %% tags=["exercise"]
def my_route_logp(policy, route):
    """log pi(route) = sum_t log pi(a_t | s_t) for a policy table [S, A]."""
    # YOUR CODE HERE: replace the line below
    return 0.0


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_route_logp(policy, route):
    """log pi(route) = sum_t log pi(a_t | s_t) for a policy table [S, A]."""
    return float(np.log(policy[list(route.states), list(route.actions)]).sum())


# %% tags=["check"]
for (method, seed), replay in replays.items():
    rows = metrics[(metrics.method == method) & (metrics.seed == seed)]
    for step, logged in zip(rows.step, rows.logp_optimal, strict=True):
        mine = my_route_logp(replay.at(step).astype(float), best)
        assert np.isclose(mine, logged, rtol=1e-4, atol=1e-4), (method, seed, step, mine, logged)
print("Exercise 1: correct")

# %% [markdown]
# ## 3. Where the probability went
#
# On a lake every action is one of three kinds, known exactly (`action_classes`): *optimal*
# ($Q^*(s, a)$ maximal), *other safe* (not optimal, no chance of a hole) or *hole-risking*.
# Between step 0 and step $t$, the mass each kind gained in state $s$ is
#
# $$\Delta_k(s) = \sum_{a \,\text{of kind}\, k} \big(\pi_t(a \mid s) - \pi_0(a \mid s)\big),
#   \qquad \sum_k \Delta_k(s) = 0.$$
#
# Mass lost by the chosen action and gained by another safe action is *benign* displacement
# (a detour); mass gained by a hole-risking action is *catastrophic*.
#
# **Exercise 2.** Write `my_flow(before, after, kinds)` returning $\Delta$ as an array
# [S, 3] (columns in the order of `KINDS`; terminal states, whose `kinds` are -1, get 0).

# %%
kinds = action_classes(lake, gamma=config.gamma)
print(KINDS)


# %% tags=["exercise"]
def my_flow(before, after, kinds):
    """Mass gained by each kind of action in each state: [S, 3]."""
    # YOUR CODE HERE: replace the line below
    return np.zeros((len(kinds), 3))


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_flow(before, after, kinds):
    """Mass gained by each kind of action in each state: [S, 3]."""
    change = after - before
    return np.stack([np.where(kinds == k, change, 0).sum(1) for k in range(3)], axis=1)


# %% tags=["check"]
for (method, seed), replay in replays.items():
    before, after = replay.policies[0].astype(float), replay.policies[-1].astype(float)
    expected = mass_flow(before, after, kinds)
    assert np.allclose(my_flow(before, after, kinds), expected, atol=1e-12), (method, seed)
print("Exercise 2: correct")

# %% [markdown]
# The replay of seed 0 at step 0 and at the end, every method side by side: the policy over
# the explored mass, the pair each step trains on, and $\Delta$ in every cell (bars: green
# optimal, blue other safe, red hole-risking; up is a gain):

# %%
pi_star = soft_value_iteration(lake, tau=config.tau, gamma=config.gamma).policy
weights = optimum_weights(lake, pi_star, gamma=config.gamma)
seed0 = {m: replays[(m, config.first_seed)] for m in config.methods}
replay_figure(lake, seed0, config.steps, classes=kinds, weights=weights)

# %% [markdown]
# On the chosen route's states, averaged over seeds: what each kind of move gained
# ($\Delta$ summed over the route's 8 states), and, over the whole lake weighted by
# $\pi^*$'s visits, the gains of the hole-risking moves alone (`mass_moved(..., "gained")`):

# %%
rows = []
for method in config.methods:
    flows = [mass_flow(replays[(method, s)].policies[0], replays[(method, s)].policies[-1], kinds)
             for s in config.seed_list]  # fmt: skip
    flow = np.mean(flows, axis=0)
    rows.append({"method": method, **{f"{k} (route sum)": v for k, v in
                 zip(KINDS, flow[list(best.states)].sum(0), strict=True)},
                 "hole-risking gained (pi*-weighted)": mass_moved(flow, weights, "gained")[RISKY],
                 "final success": mean.loc[(method, config.steps), "success"]})  # fmt: skip
pd.DataFrame(rows).set_index("method")

# %% [markdown]
# SFT, IPO and RPO move mass *to* the optimal actions of the route. DPO takes it away, and a
# good part of it goes to actions that can fall into a hole: catastrophic displacement. (Off
# the route, on the left edge, DPO also moves mass away from hole-risking moves: the replay's
# bars show both.)
#
# ## 4. Why DPO does this
#
# DPO only needs the margin $\log \pi(y_w) - \log \pi(y_l)$ (against the reference) to grow.
# $\log \pi(y_w)$ can rise at most to 0, while $\log \pi(y_l)$ can fall without bound, so the
# loss is lowered most cheaply by pushing the rejected route down, and nothing says where its
# mass goes. The network is shared between states (one-hot inputs, but one hidden layer and
# one output layer for all of them), so a change that lowers the rejected moves in the top
# states also changes the chosen route's states.
#
# **Exercise 3.** Averaged over DPO's seeds and over the chosen route's states, which action
# (0 left, 1 down, 2 right, 3 up) gained the most probability between step 0 and the end? Set
# `my_action` to its index, computed from `replays`.

# %% tags=["exercise"]
# YOUR CODE HERE: replace the line below
my_action = None

# %% tags=["solution"] jupyter={"source_hidden": true}
gains = np.mean(
    [(r.policies[-1] - r.policies[0])[list(best.states)].mean(0)
     for (m, s), r in replays.items() if m == "dpo"], axis=0)  # fmt: skip
my_action = int(np.argmax(gains))

# %% tags=["check"]
dpo_gain = np.mean(
    [replays[("dpo", s)].policies[-1] - replays[("dpo", s)].policies[0] for s in config.seed_list],
    axis=0,
)[list(best.states)].mean(0)  # per action [A]
assert my_action == int(np.argmax(dpo_gain)), f"action {my_action} gained {dpo_gain}"
unused = set(range(4)) - set(best.actions) - set(second.actions)
print(f"Exercise 3: correct. Action {my_action} gained {dpo_gain[my_action]:+.2f} per state;")
print(f"the actions that neither the chosen nor the rejected route takes: {sorted(unused)}")

# %% [markdown]
# The probability went to the move that *neither* response uses. Pushing the rejected route
# down moves mass away from right, down and left (its moves) in the top states; through the
# shared layers the same shift reaches the bottom row, where "up" leads into the holes above
# it. The chosen log-prob falls although every update makes the margin larger: the rejected
# log-prob simply falls faster.
#
# What keeps the mass on the chosen route: a likelihood term on $y_w$ (SFT alone, or RPO's
# DPO + NLL), a bounded margin (IPO aims at a fixed margin instead of an ever larger one), or
# rejected responses sampled from the current policy (`negatives="online"`, notebook 03), which
# follow the mass wherever it goes. In the app, the experiment page replays any run step by
# step; `lakelab lake` prints the same alarms at the end of a run.
