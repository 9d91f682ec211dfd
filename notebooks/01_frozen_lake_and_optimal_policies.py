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
# # 01 · Frozen Lake and its optimal policies, computed exactly
#
# **Learning goals.** After this notebook you can
#
# 1. read Frozen Lake as a Markov decision process: the arrays `lake.P`, `lake.R` and
#    `lake.terminal`, and where they come from in Gymnasium;
# 2. compute the optimal values and policy with value iteration, and check Bellman's equation
#    yourself (exercise 1);
# 3. evaluate any policy *exactly* (one linear solve), and get its success probability and its
#    state visitation;
# 4. say what Gymnasium's 100-step time limit does to "optimal" (finite horizons);
# 5. use soft value iteration, choose its temperature with the bound
#    $\tau \log 4 / (1 - \gamma)$, and recognise what happens when you ignore it (exercise 2).
#
# Every number here comes from `lakelab` (`lakelab.lakes`, `lakelab.solver`, `lakelab.plotting`);
# the notebook only calls it and looks at the results. It runs in a few seconds on a CPU.
# Exercises have a cell for you, a hidden solution cell (tagged `solution`) and a check cell
# whose `assert` your answer must pass.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

from lakelab import (
    finite_horizon_values,
    make_lake,
    policy_evaluation,
    soft_value_iteration,
    state_visitation,
    success_probability,
    value_iteration,
)
from lakelab.lakes import ACTIONS
from lakelab.plotting import draw_lake
from lakelab.solver import bellman_backup

np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. The lake as an MDP
#
# A lake is a grid: `S` start, `F` frozen, `H` hole, `G` goal (the gift). States are cells,
# numbered `row * ncol + col`; actions are 0 Left, 1 Down, 2 Right, 3 Up (Gymnasium's order).
# On a *slippery* lake the agent moves in the intended direction with probability 1/3 and to
# each perpendicular direction with 1/3; bumping into the border leaves it where it is.
# Holes and the goal are absorbing (the episode ends); the only reward is 1 for entering `G`.

# %%
lake = make_lake("4x4", slippery=True)
print(lake)
print(f"{lake.n_states} states, {lake.n_actions} actions {ACTIONS}, start state {lake.start}")
print("P:", lake.P.shape, "  R:", lake.R.shape, "  terminal:", np.flatnonzero(lake.terminal))
ax = draw_lake(lake, title="4x4 Frozen Lake")

# %% [markdown]
# `lake.P[s, a, s']` is the probability of landing in $s'$ after action $a$ in state $s$.
# From the start, "Right" goes right, or slips up (into the wall, so stays) or down:

# %%
s, a = lake.start, ACTIONS.index("Right")
for s_next in np.flatnonzero(lake.P[s, a]):
    print(f"P(s'={s_next} {lake.coords(s_next)} | s={s}, a=Right) = {lake.P[s, a, s_next]:.4f}")
assert np.allclose(lake.P.sum(axis=-1), 1.0)  # every (s, a) row is a distribution

# %% [markdown]
# `lake.R[s, a]` is the *expected* immediate reward, i.e. the probability that $(s, a)$ enters
# the goal. Only the cells next to `G` have any:

# %%
for s, a in np.argwhere(lake.R > 0):
    print(f"R[{s} {lake.coords(s)}, {ACTIONS[a]:>5}] = {lake.R[s, a]:.4f}")

# %% [markdown]
# These arrays are built from Gymnasium's own `env.unwrapped.P`, a dict of lists of
# `(prob, next_state, reward, terminated)` (entries can repeat a next state; `lakelab` sums
# them). The real environment is one call away, so the exact solver and the simulator can
# never disagree:

# %%
env = lake.make_env()
print(env.spec.id, "time limit:", env.spec.max_episode_steps)
print("Gymnasium's P[0][Right]:", env.unwrapped.P[0][2])

# %% [markdown]
# ## 2. Value iteration
#
# Bellman's optimality equation (Sutton & Barto, eq. 4.1-4.2):
#
# $$Q(s, a) = R(s, a) + \gamma \sum_{s'} P(s' \mid s, a)\, V(s'), \qquad V(s) = \max_a Q(s, a),$$
#
# with $V = 0$ on terminal states. Value iteration applies the right-hand side again and again
# from $V = 0$ until nothing changes. Frozen Lake's own criterion is undiscounted,
# $\gamma = 1$; `lakelab` allows it (every episode ends in a terminal state).

# %%
sol = value_iteration(lake, gamma=1.0, tol=1e-12)
print(
    f"V*(start) = {sol.V[lake.start]:.6f} after {sol.iterations} sweeps   (14/17 = {14 / 17:.6f})"
)
ax = draw_lake(lake, values=sol.V, policy=sol.policy, title="V* and optimal policy, gamma = 1")

# %% [markdown]
# Arrows have length proportional to each action's probability. The greedy policy splits
# ties uniformly: at the start every action is equally good when time costs nothing (all its
# neighbours have the same value), and an argmax that always picked "Left" would be just as
# optimal. Some moves look odd: the intended direction happens only 1/3 of the time, so the
# agent often aims at a wall, or even at a hole, to make its sideways slips safe. In cell
# (1, 0) it pushes Left into the wall: it can then only slip up or down, never right into the
# hole next to it.
#
# ### Exercise 1: one Bellman backup
#
# Write one synchronous Bellman backup with `lake.P` and `lake.R`: given `V` [S] return
# $\max_a \big[R(s, a) + \gamma \sum_{s'} P(s' \mid s, a)\, V(s')\big]$ for every state, with 0
# on terminal states. The check compares it with `lakelab.solver.bellman_backup` on a random
# `V`, and checks that $V^*$ is a fixed point.


# %% tags=["exercise"]
def my_backup(V, gamma):
    """One Bellman optimality backup: V [S] -> V' [S] (0 on terminal states)."""
    # YOUR CODE HERE: replace the line below
    return np.zeros_like(V)


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_backup(V, gamma):
    """One Bellman optimality backup: V [S] -> V' [S] (0 on terminal states)."""
    Q = lake.R + gamma * lake.P @ V  # (S, A): P [S, A, S'] @ V [S']
    return np.where(lake.terminal, 0.0, Q.max(axis=1))


# %% tags=["check"]
V_random = np.random.default_rng(0).random(lake.n_states)
for gamma in (0.9, 1.0):
    expected, _ = bellman_backup(lake, V_random, gamma)
    assert np.allclose(my_backup(V_random, gamma), expected), f"backup differs at gamma={gamma}"
assert np.allclose(my_backup(sol.V, 1.0), sol.V, atol=1e-9), "V* should be a fixed point"
print("Exercise 1: correct")

# %% [markdown]
# ## 3. Exact policy evaluation, success and visitation
#
# For a fixed stochastic policy $\pi$ [S, A], the values solve a *linear* system on the
# non-terminal states:
#
# $$(I - \gamma P_\pi)\, V = r_\pi, \qquad \text{with} \qquad
#   P_\pi(s, s') = \sum_a \pi(a \mid s)\, P(s' \mid s, a).$$
#
# `policy_evaluation` does that solve: no iteration, no sampling. Evaluating the optimal policy
# gives back $V^*$; the uniformly random policy is far worse.

# %%
uniform = np.full((lake.n_states, lake.n_actions), 1 / lake.n_actions)
V_opt, _ = policy_evaluation(lake, sol.policy)
V_unif, _ = policy_evaluation(lake, uniform)
print("max |V^pi* - V*| =", np.abs(V_opt - sol.V).max())
print(f"uniform policy: V(start) = {V_unif[lake.start]:.4f}")

# %% [markdown]
# The only reward is 1 for entering the goal, so with $\gamma = 1$ a policy's value at the
# start *is* its probability of ever reaching the goal. `success_probability` computes that
# directly (and also works for other rewards and discounts, and under a horizon).

# %%
for name, pi, V in (("optimal", sol.policy, V_opt), ("uniform", uniform, V_unif)):
    p = success_probability(lake, pi)
    print(f"{name:>8}: success probability {p:.4f}   V(start) {V[lake.start]:.4f}")
    assert math.isclose(p, V[lake.start], abs_tol=1e-9)

# %% [markdown]
# `state_visitation` gives the expected number of visits to each cell in one episode (again
# one linear solve). Its terminal entries sum to 1, its goal entry is the success probability,
# and its non-terminal entries sum to the expected episode length.

# %%
d = state_visitation(lake, sol.policy)
print(
    f"expected episode length {d[~lake.terminal].sum():.1f} moves;",
    f"goal entry {d[lake.goal].sum():.4f} = success probability",
)
ax = draw_lake(
    lake,
    values=d,
    policy=sol.policy,
    cmap="magma",
    title="expected visits per episode, optimal policy",
)

# %% [markdown]
# ## 4. Time limits: what the real environment does
#
# Gymnasium ends a 4x4 episode after 100 steps. A Monte Carlo run of the real environment
# with the optimal policy does *not* reach the goal 82% of the time:

# %%
rng = np.random.default_rng(0)
cumulative = sol.policy.cumsum(axis=1)
n_episodes, wins = 400, 0
for episode in range(n_episodes):
    s, _ = env.reset(seed=episode)
    done = False
    while not done:
        a = min(int(np.searchsorted(cumulative[s], rng.random())), lake.n_actions - 1)
        s, reward, terminated, truncated, _ = env.step(a)
        done = terminated or truncated
    wins += reward
H = env.spec.max_episode_steps
exact_H = success_probability(lake, sol.policy, horizon=H)
stderr = math.sqrt(exact_H * (1 - exact_H) / n_episodes)
print(f"Monte Carlo, {n_episodes} episodes: {wins / n_episodes:.3f}")
print(f"exact, episodes cut at {H} steps: {exact_H:.4f} (Monte Carlo std. error {stderr:.3f})")
assert abs(wins / n_episodes - exact_H) < 4 * stderr

# %% [markdown]
# Exact and sampled agree, and both are far below $V^* = 0.8235$: with $\gamma = 1$ the
# "optimal" policy is in no hurry (at the start it dithers uniformly) and many episodes run
# out of time. Two fixes:
#
# * **A clock-aware agent.** `finite_horizon_values(lake, H)` is the best any agent can do
#   knowing that $H$ steps remain (backward induction; its policy changes with the time left).
# * **A discount.** With $\gamma < 1$ later rewards are worth less, so the optimal policy hurries;
#   it still reaches the goal with the same probability eventually.

# %%
fast = value_iteration(lake, gamma=0.99)
print(f"clock-aware optimum, {H} steps:         {finite_horizon_values(lake, H)[lake.start]:.4f}")
print(f"gamma = 1 policy, cut at {H} steps:     {exact_H:.4f}")
fast_H = success_probability(lake, fast.policy, horizon=H)
print(
    f"gamma = 0.99 policy, cut at {H} steps:  {fast_H:.4f}"
    f"   (no limit: {success_probability(lake, fast.policy):.4f})"
)

horizons = np.arange(0, 301, 10)
curves = {
    "clock-aware optimum": [finite_horizon_values(lake, int(h))[lake.start] for h in horizons],
    "gamma = 1 policy, cut": [
        success_probability(lake, sol.policy, horizon=int(h)) for h in horizons
    ],
    "gamma = 0.99 policy, cut": [
        success_probability(lake, fast.policy, horizon=int(h)) for h in horizons
    ],
}
fig, ax = plt.subplots(figsize=(6, 3.5))
for label, values in curves.items():
    ax.plot(horizons, values, label=label)
ax.axhline(sol.V[lake.start], color="gray", ls="--", label="V* (no limit)")
ax.axvline(H, color="gray", ls=":")
ax.set_xlabel("horizon (steps)")
ax.set_ylabel("success probability from start")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 5. Soft value iteration and its temperature
#
# A softmax policy network can only reach a one-hot policy with infinite weights, so the
# alignment experiments (notebook 03) use the *soft* optimum. With temperature $\tau$:
#
# $$V(s) = \tau \log \sum_a \exp\big(Q(s, a)/\tau\big), \qquad
#   \pi^*(a \mid s) = \exp\big((Q(s, a) - V(s))/\tau\big),$$
#
# and $Q$ as before. This is the optimum of "reward plus $\tau$ times the policy's entropy".
# As $\tau \to 0$ it tends to value iteration. Each step can add at most $\tau \log 4$ of entropy
# (4 actions), so the soft value exceeds the hard one by at most
#
# $$0 \le V_{\mathrm{soft}}(s) - V^*(s) \le \frac{\tau \log 4}{1 - \gamma}.$$
#
# Soft value iteration needs $\gamma < 1$: with $\gamma = 1$ an agent that bumps into a wall
# forever would collect unbounded entropy. We use the deterministic `two-paths` lake of the
# experiment: exactly two hole-free routes, 8 and 12 moves.

# %%
two = make_lake("two-paths")
gamma = 0.95
hard = value_iteration(two, gamma=gamma)
live = ~two.terminal
next_to_goal = two.state(4, 3)
print(two)

rows = []
for tau in (0.001, 0.005, 0.01, 0.02, 0.05, 0.1):
    soft = soft_value_iteration(two, tau=tau, gamma=gamma)
    gap = (soft.V - hard.V)[live]
    bound = tau * math.log(4) / (1 - gamma)
    assert -1e-9 <= gap.min() and gap.max() <= bound + 1e-9  # the bound holds
    length = state_visitation(two, soft.policy)[live].sum()  # expected moves per episode
    rows.append((tau, bound, gap.max(), soft.policy[next_to_goal, ACTIONS.index("Right")], length))
print("   tau   bound  max gap  pi*(Right | next to goal)  expected moves")
for tau, bound, gap, p_right, length in rows:
    print(f"{tau:6.3f} {bound:7.3f} {gap:8.3f} {p_right:26.3f} {length:15.1f}")
    # the claims of the text below, checked: bound well below 1, it finishes; above 1, it does not
    if bound < 0.5:
        assert p_right > 0.9
    if bound > 1:
        assert p_right < 0.5

# %% [markdown]
# Read the last two rows. Once $\tau \log 4 / (1 - \gamma)$ exceeds the goal's reward of 1,
# staying on the lake and collecting entropy is worth more than finishing: the cell right
# next to the goal **walks away from it**, and episodes get long (the soft agent still reaches
# the goal eventually, it is just in no hurry). Pick $\tau$ and $\gamma$ with the bound well below
# 1; `lakelab.mlp.config.LakeConfig` refuses configurations where it is not.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
draw_lake(two, values=hard.V, policy=hard.policy, ax=axes[0], title=f"hard optimum, gamma={gamma}")
for ax, tau in zip(axes[1:], (0.01, 0.05), strict=True):
    soft = soft_value_iteration(two, tau=tau, gamma=gamma)
    bound = tau * math.log(4) / (1 - gamma)
    draw_lake(
        two, values=soft.V, policy=soft.policy, ax=ax, title=f"soft, tau={tau} (bound {bound:.2f})"
    )
fig.tight_layout()

# %% [markdown]
# ### Exercise 2: the soft-optimal policy from $Q$
#
# `soft_value_iteration` returns `Q` [S, A]. Turn it into
# $\pi^*(a \mid s) = \exp\big((Q(s, a) - V(s))/\tau\big)$ with
# $V(s) = \tau \cdot \mathrm{logsumexp}_a \big(Q(s, a)/\tau\big)$. The check compares your policy
# with `lakelab`'s on the live states at two temperatures, including $\tau = 0.001$: there
# $\exp(Q/\tau)$ overflows, so compute it stably (subtract each row's maximum first).


# %% tags=["exercise"]
def my_soft_policy(Q, tau):
    """Soft-optimal policy [S, A] from soft Q-values [S, A] at temperature tau."""
    # YOUR CODE HERE: replace the line below (this is the uniform policy)
    return np.full_like(Q, 1 / Q.shape[1])


# %% tags=["solution"] jupyter={"source_hidden": true}
def my_soft_policy(Q, tau):
    """Soft-optimal policy [S, A] from soft Q-values [S, A] at temperature tau."""
    z = (Q - Q.max(axis=1, keepdims=True)) / tau  # <= 0, so exp never overflows
    weights = np.exp(z)
    return weights / weights.sum(axis=1, keepdims=True)  # the max cancels in the ratio


# %% tags=["check"]
for tau in (0.001, 0.05):
    soft = soft_value_iteration(two, tau=tau, gamma=0.95)
    mine = my_soft_policy(soft.Q, tau)
    assert np.all(np.isfinite(mine)), f"non-finite probabilities at tau={tau}"
    assert np.allclose(mine[live], soft.policy[live], atol=1e-8), f"policy differs at tau={tau}"
print("Exercise 2: correct")

# %% [markdown]
# ## What next
#
# * Notebook 02 takes the policies' *log-probabilities* as given and looks at the alignment
#   objectives (SFT, IFT, DPO, IPO, ORPO, ASFT, SimPO) and their gradients.
# * Notebook 03 trains a small network on the soft optimum of the two-paths lake with each
#   objective, and scores it with the exact tools of this notebook (success probability,
#   visitation, KL to $\pi^*$).
# * Try: `make_lake("8x8", slippery=True)`, a map of your own (`make_lake("SFF/FHF/FFG")`),
#   or a broken one (`make_lake("SFH/FFF")`) to see `lakelab`'s error message.
