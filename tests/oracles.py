"""Independent reference implementations ("oracles") that the tests compare lakelab against.

Each oracle is written from the definition of what it computes, not from lakelab's code, and
none of them imports lakelab: a bug in lakelab cannot also be in the value it is checked
against. They are deliberately plain (Python loops over lists, the characters of a lake map,
Gymnasium's own transition table, `math`) and slow; correctness is all they are for.

- Lakes as character grids: `walk_plan`, `shortest_moves`, `simple_paths`. They read only the
  map rows ("S" start, "F" frozen, "H" hole, "G" goal) and Gymnasium's documented action order
  L D R U; no solver, no transition tensor, no Gymnasium env.
- Value iteration: `loop_value_iteration`, the textbook per-state loop over Gymnasium's
  ``env.unwrapped.P`` (what tutorials write), against lakelab's vectorised solver on its own
  dense tensors. ``benchmarks/bench_solver.py`` times this same loop.
- Objectives: one function per loss, on plain lists of floats, written from the formulas in
  docs/objectives.md and the papers (for IFT's token weights: eqs. 19-22 and the official
  code's `get_cumsum_weight` description). They loop over tokens where lakelab builds a
  discount matrix, use ``log(-expm1(x))`` for log(1 - e^x) everywhere where lakelab switches
  between two formulas, and ``log(1 / (1 + exp(-z)))`` for log sigmoid(z).
"""

from __future__ import annotations

import math
from collections import deque

# Gymnasium's FrozenLake actions 0..3 are Left, Down, Right, Up: (row, column) steps.
MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))


# -- lakes as character grids ----------------------------------------------------------------
def _start(desc) -> tuple[int, int]:
    return next((r, c) for r, row in enumerate(desc) for c, ch in enumerate(row) if ch == "S")


def walk_plan(desc, plan) -> tuple[str, int]:
    """Step through ``plan`` (action ids) on the map ``desc`` (a sequence of row strings) of a
    deterministic lake: (character of the last cell reached, moves made). A move into a wall
    leaves the agent in place; reaching a hole "H" or the goal "G" ends the walk, and the
    remaining moves are not made."""
    r, c = _start(desc)
    for k, a in enumerate(plan):
        dr, dc = MOVES[a]
        r = min(max(r + dr, 0), len(desc) - 1)
        c = min(max(c + dc, 0), len(desc[0]) - 1)
        if desc[r][c] in "GH":
            return desc[r][c], k + 1
    return desc[r][c], len(plan)


def shortest_moves(desc) -> int:
    """Fewest moves from "S" to "G" on a deterministic lake, never stepping on a hole, by
    breadth-first search over the cells. Raises AssertionError if the goal is unreachable."""
    start = _start(desc)
    dist, queue = {start: 0}, deque([start])
    while queue:
        r, c = queue.popleft()
        if desc[r][c] == "G":
            return dist[(r, c)]
        for dr, dc in MOVES:
            nr, nc = r + dr, c + dc
            inside = 0 <= nr < len(desc) and 0 <= nc < len(desc[0])
            if inside and desc[nr][nc] != "H" and (nr, nc) not in dist:
                dist[(nr, nc)] = dist[(r, c)] + 1
                queue.append((nr, nc))
    raise AssertionError(f"no route from S to G on {desc}")


def simple_paths(desc) -> list[tuple[tuple[int, int], ...]]:
    """Every simple path (no cell twice) from "S" to "G" avoiding holes, as tuples of
    (row, column) cells from start to goal, by depth-first enumeration. Exponential in the
    lake's size: for small maps only."""
    start = _start(desc)
    paths, stack = [], [(start, (start,))]
    while stack:
        (r, c), path = stack.pop()
        if desc[r][c] == "G":
            paths.append(path)
            continue
        for dr, dc in MOVES:
            nxt = (r + dr, c + dc)
            inside = 0 <= nxt[0] < len(desc) and 0 <= nxt[1] < len(desc[0])
            if inside and desc[nxt[0]][nxt[1]] != "H" and nxt not in path:
                stack.append((nxt, (*path, nxt)))
    return paths


# -- value iteration -------------------------------------------------------------------------
def loop_value_iteration(env_P: dict, n_states: int, gamma: float, sweeps: int) -> list[float]:
    """``sweeps`` synchronous Bellman optimality backups from V = 0, state by state over
    Gymnasium's ``env.unwrapped.P`` (``P[s][a]`` lists (prob, next state, reward, terminated)
    and may name one successor twice): V(s) <- max_a sum prob (reward + gamma V(s')), where a
    terminating transition adds no future value. Returns V as a list."""
    V = [0.0] * n_states
    for _ in range(sweeps):
        new = []
        for s in range(n_states):
            best = -math.inf
            for a in range(4):
                q = 0.0
                for prob, s_next, reward, terminated in env_P[s][a]:
                    q += prob * (reward + (0.0 if terminated else gamma * V[s_next]))
                best = max(best, q)
            new.append(best)
        V = new
    return V


# -- objectives on plain lists ---------------------------------------------------------------
def log1mexp(x: float) -> float:
    """log(1 - e^x) for a log-probability x <= 0, clamped at x = -1e-6 as lakelab documents
    (log 0 would be -inf)."""
    return math.log(-math.expm1(min(x, -1e-6)))


def logsigmoid(z: float) -> float:
    """log sigmoid(z) = log(1 / (1 + e^-z)); below z = -30 the equal z - log(1 + e^z), as e^-z
    overflows for z < -709."""
    if z < -30:
        return z - math.log1p(math.exp(z))
    return math.log(1.0 / (1.0 + math.exp(-z)))


def log_odds(a: float) -> float:
    """log(p / (1 - p)) of p = e^a."""
    return a - log1mexp(a)


def masked_sum(row: list[float], mask: list[int]) -> float:
    """S(y): the sum of the values whose mask entry is 1."""
    total = 0.0
    for v, m in zip(row, mask, strict=True):
        if m:
            total += v
    return total


def masked_mean(row: list[float], mask: list[int]) -> float:
    """A(y): the mean of the values whose mask entry is 1."""
    return masked_sum(row, mask) / sum(mask)


def ift_weights(row: list[float], mask: list[int], gamma: float, weighting: str) -> list[float]:
    """IFT's per-token weights of one sequence: W_i = sum_{j >= i} gamma^(j - i) c_j over the
    response tokens, rescaled to sum to the number of response tokens N; c_j = -logp_j / N
    ("loss", the official code) or 1 ("prefix", the paper's eqs. 19-22); all 1 for "none" and
    for "loss" with gamma = 0. Zero on masked-out positions."""
    T, N = len(row), sum(mask)
    if weighting == "none" or (weighting == "loss" and gamma == 0):
        return [1.0 if m else 0.0 for m in mask]
    if weighting == "loss":
        c = [(-v / N) if m else 0.0 for v, m in zip(row, mask, strict=True)]
    else:
        c = [1.0 if m else 0.0 for m in mask]
    w = []
    for i in range(T):
        acc = 0.0
        for j in range(i, T):
            acc += gamma ** (j - i) * c[j]
        w.append(acc if mask[i] else 0.0)
    total = sum(w)
    return [wi * N / total for wi in w]


def ift_loss(rows, masks, gamma: float, weighting: str) -> float:
    """Batch mean over sequences of sum_i (-logp_i) W_i / N (weights from `ift_weights`)."""
    per_seq = []
    for row, mask in zip(rows, masks, strict=True):
        w = ift_weights(row, mask, gamma, weighting)
        s = 0.0
        for v, m, wi in zip(row, mask, w, strict=True):
            if m:
                s += -v * wi
        per_seq.append(s / sum(mask))
    return sum(per_seq) / len(per_seq)


def dpo_loss(c, r, rc, rr, beta: float, variant: str, eps: float) -> float:
    """DPO on summed log-probs (chosen c, rejected r, reference rc, rr), batch mean:
    d = beta [(c - rc) - (r - rr)]; "sigmoid": -(1 - eps) logsig(d) - eps logsig(-d) (label
    smoothing eps); "hinge": max(0, 1 - d); otherwise robust DPO:
    (-(1 - eps) logsig(d) + eps logsig(-d)) / (1 - 2 eps)."""
    losses = []
    for i in range(len(c)):
        d = beta * ((c[i] - rc[i]) - (r[i] - rr[i]))
        if variant == "sigmoid":
            losses.append(-(1 - eps) * logsigmoid(d) - eps * logsigmoid(-d))
        elif variant == "hinge":
            losses.append(max(0.0, 1 - d))
        else:
            losses.append((-(1 - eps) * logsigmoid(d) + eps * logsigmoid(-d)) / (1 - 2 * eps))
    return sum(losses) / len(losses)


def ipo_loss(c, r, rc, rr, beta: float) -> float:
    """IPO, batch mean of (h - 1 / (2 beta))^2 with h = (c - rc) - (r - rr)."""
    total = 0.0
    for i in range(len(c)):
        total += ((c[i] - rc[i]) - (r[i] - rr[i]) - 1 / (2 * beta)) ** 2
    return total / len(c)


def orpo_loss(c, r, lam: float) -> float:
    """ORPO on mean log-probs, batch mean of -c - lam logsig(logodds(c) - logodds(r))."""
    total = 0.0
    for i in range(len(c)):
        total += -c[i] - lam * logsigmoid(log_odds(c[i]) - log_odds(r[i]))
    return total / len(c)


def asft_loss(c, r, lam: float, beta: float) -> float:
    """ASFT on mean log-probs, batch mean of
    -c - lam [logsig(beta logodds(c)) + logsig(-beta logodds(r))]."""
    total = 0.0
    for i in range(len(c)):
        absolute = logsigmoid(beta * log_odds(c[i])) + logsigmoid(-beta * log_odds(r[i]))
        total += -c[i] - lam * absolute
    return total / len(c)


def simpo_loss(c, r, beta: float, gamma: float) -> float:
    """SimPO on mean log-probs, batch mean of -logsig(beta (c - r) - gamma)."""
    total = 0.0
    for i in range(len(c)):
        total += -logsigmoid(beta * (c[i] - r[i]) - gamma)
    return total / len(c)


def sigmoid(z: float) -> float:
    return math.exp(logsigmoid(z))


def pairwise_loss(name: str, c, r, rc, rr, hp: dict) -> float:
    """The other pairwise losses of TRL's DPO trainer (lakelab.pairwise), batch mean, each per
    pair from the log-ratios w = c - rc and l = r - rr (summed log-probs; mean for dpo_norm):
    exo: q w-side sigmoid(beta (w - l)), q (log q - log(1 - eps)) + (1 - q)(log(1 - q) - log eps);
    nca: -logsig(beta w) - logsig(-beta w) / 2 - logsig(-beta l) / 2;
    bco_pair: -logsig(beta w - delta) - logsig(delta - beta l);
    sppo_hard: (w - 1 / (2 beta))^2 + (l + 1 / (2 beta))^2;
    apo zero: 1 - sig(beta w) + sig(beta l); apo down: sig(beta w) + 1 - sig(beta (w - l));
    discopop: rho = beta (w - l), m = sig(rho / tau): (1 - m)(-logsig(rho)) + m e^-rho;
    dpo_norm: -logsig(beta (w - l))."""
    beta = hp["beta"]
    losses = []
    for i in range(len(c)):
        w, l = c[i] - rc[i], r[i] - rr[i]
        if name == "exo":
            eps = hp["label_smoothing"]
            lq, lq_bar = logsigmoid(beta * (w - l)), logsigmoid(-beta * (w - l))
            loss = math.exp(lq) * (lq - math.log(1 - eps)) + math.exp(lq_bar) * (
                lq_bar - math.log(eps)
            )
        elif name == "nca":
            loss = -logsigmoid(beta * w) - logsigmoid(-beta * w) / 2 - logsigmoid(-beta * l) / 2
        elif name == "bco_pair":
            loss = -logsigmoid(beta * w - hp["delta"]) - logsigmoid(hp["delta"] - beta * l)
        elif name == "sppo_hard":
            loss = (w - 1 / (2 * beta)) ** 2 + (l + 1 / (2 * beta)) ** 2
        elif name == "apo" and hp["variant"] == "zero":
            loss = 1 - sigmoid(beta * w) + sigmoid(beta * l)
        elif name == "apo":
            loss = sigmoid(beta * w) + 1 - sigmoid(beta * (w - l))
        elif name == "discopop":
            rho = beta * (w - l)
            m = sigmoid(rho / hp["discopop_tau"])
            loss = (1 - m) * -logsigmoid(rho) + m * math.exp(-rho)
        elif name == "dpo_norm":
            loss = -logsigmoid(beta * (w - l))
        else:
            raise ValueError(f"no oracle for {name!r}")
        losses.append(loss)
    return sum(losses) / len(losses)


def reference_free_loss(name: str, c, r, hp: dict) -> float:
    """The CPO trainer's other losses (lakelab.reference_free), batch mean, per pair of the
    policy's log-probs c, r (summed for cpo, mean for the others): cpo sigmoid
    -(1 - eps) logsig(beta (c - r)) - eps logsig(-beta (c - r)), hinge max(0, 1 - beta (c - r));
    cpo_ipo (c - r - 1 / (2 beta))^2; alphapo -logsig(beta (u(c) - u(r)) - gamma) with
    u(a) = (1 - e^(-alpha a)) / alpha (a at alpha = 0)."""
    beta = hp["beta"]
    losses = []
    for i in range(len(c)):
        if name == "cpo" and hp["variant"] == "sigmoid":
            d, eps = beta * (c[i] - r[i]), hp["label_smoothing"]
            loss = -(1 - eps) * logsigmoid(d) - eps * logsigmoid(-d)
        elif name == "cpo":
            loss = max(0.0, 1 - beta * (c[i] - r[i]))
        elif name == "cpo_ipo":
            loss = (c[i] - r[i] - 1 / (2 * beta)) ** 2
        elif name == "alphapo":
            alpha = hp["alpha"]

            def u(a: float, alpha=alpha) -> float:
                return a if alpha == 0 else (1 - math.exp(-alpha * a)) / alpha

            loss = -logsigmoid(beta * (u(c[i]) - u(r[i])) - hp["gamma"])
        else:
            raise ValueError(f"no oracle for {name!r}")
        losses.append(loss)
    return sum(losses) / len(losses)


def ld_dpo_loss(rows: dict, masks: dict, beta: float, alpha: float) -> float:
    """LD-DPO, batch mean, from per-token rows: each response's first n = min(|y_w|, |y_l|)
    tokens count fully, the rest alpha times; then DPO on those weighted sums."""
    losses = []
    for b in range(len(rows["chosen"])):
        kept = {k: [v for v, m in zip(rows[k][b], masks[k][b], strict=True) if m] for k in rows}
        n = min(len(kept["chosen"]), len(kept["rejected"]))

        def weighted(values: list[float], n: int = n) -> float:
            return sum(values[:n]) + alpha * sum(values[n:])

        w = weighted(kept["chosen"]) - weighted(kept["ref_chosen"])
        l = weighted(kept["rejected"]) - weighted(kept["ref_rejected"])
        losses.append(-logsigmoid(beta * (w - l)))
    return sum(losses) / len(losses)


def aot_loss(c, r, rc, rr, beta: float, variant: str, eps: float) -> float:
    """AOT, batch mean over quantiles: "paired" sorts the policy's margins c - r and the
    reference's rc - rr and pairs them by rank; "unpaired" sorts the chosen log-ratios c - rc
    and the rejected r - rr; then DPO's -(1 - eps) logsig(beta delta) - eps logsig(-beta delta)."""
    if variant == "paired":
        a = sorted(ci - ri for ci, ri in zip(c, r, strict=True))
        b = sorted(x - y for x, y in zip(rc, rr, strict=True))
    else:
        a = sorted(ci - x for ci, x in zip(c, rc, strict=True))
        b = sorted(ri - y for ri, y in zip(r, rr, strict=True))
    losses = []
    for x, y in zip(a, b, strict=True):
        d = beta * (x - y)
        losses.append(-(1 - eps) * logsigmoid(d) - eps * logsigmoid(-d))
    return sum(losses) / len(losses)


def unpaired_loss(name: str, d, u, rd, ru, hp: dict, kl=None, ref_kl=None) -> float:
    """KTO, BCO and APO-zero on unpaired examples (lakelab.unpaired), the mean over every
    example: desirable summed log-probs d with the reference's rd, undesirable u with ru;
    KTO's reference point z0 = max(0, mean(kl - ref_kl)) from the mismatched pairs."""
    beta = hp["beta"]
    losses = []
    if name == "kto":
        z0 = max(0.0, sum(k - q for k, q in zip(kl, ref_kl, strict=True)) / len(kl))
        losses += [hp["desirable_weight"] * (1 - sigmoid(beta * (x - y - z0)))
                   for x, y in zip(d, rd, strict=True)]  # fmt: skip
        losses += [hp["undesirable_weight"] * (1 - sigmoid(beta * (z0 - (x - y))))
                   for x, y in zip(u, ru, strict=True)]  # fmt: skip
    elif name == "bco":
        losses += [-logsigmoid(beta * (x - y) - hp["delta"]) for x, y in zip(d, rd, strict=True)]
        losses += [-logsigmoid(-(beta * (x - y) - hp["delta"])) for x, y in zip(u, ru, strict=True)]
    else:  # apo_unpaired
        losses += [1 - sigmoid(beta * (x - y)) for x, y in zip(d, rd, strict=True)]
        losses += [sigmoid(beta * (x - y)) for x, y in zip(u, ru, strict=True)]
    return sum(losses) / len(losses)
