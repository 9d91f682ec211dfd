"""LM track: data against an independent grid walker and BFS (tests/oracles.py), IFT on the
transformer, the reference cache, online negatives, divergence, and the held-out metrics (real
env, exact KL)."""

import numpy as np
import pytest
import torch
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv

from lakelab.lm import data as D
from lakelab.lm import metrics as M
from lakelab.lm import train as TR
from lakelab.lm.model import TinyGPT, model_config
from lakelab.lm.tokenizer import END_ID, decode, encode, parse_plan, plan_text
from lakelab.registry import compute_objective
from lakelab.solver import soft_value_iteration
from tests.helpers import TINY_LM, assert_close
from tests.oracles import shortest_moves, walk_plan

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one thread, as lakelab lm


@pytest.fixture(scope="module")
def tiny():
    """Data of seed 0 and a briefly pre-trained nano base model."""
    data = D.seed_data(TINY_LM, 0)
    base = TR.pretrain(TINY_LM, data.corpus, 0, log=lambda model, step: None)
    return data, base


# -- data ------------------------------------------------------------------------------------
def test_train_and_held_out_lakes_are_distinct_and_disjoint():
    train, test = D.lake_split(4, 0.8, 120, 30, 7)
    descs = [lake.desc for lake in train + test]
    assert len(train) == 120 and len(test) == 30
    assert len(set(descs)) == len(descs)  # no map twice, so none in both sets
    assert [lake.desc for lake in D.lake_split.__wrapped__(4, 0.8, 120, 30, 7)[1]] == descs[120:]
    with pytest.raises(ValueError, match=r"found only .* distinct 2x2 lakes"):
        D.lake_split(2, 0.8, 10, 5, 0)


def test_distinct_maps_are_random_maps_maps_in_its_order():
    """The block-drawn, flood-filled maps against lakes.random_map called one map at a time
    (its breadth-first search on the characters), for two sizes and densities."""
    from lakelab.lakes import random_map

    for size, p_frozen, need in ((4, 0.8, 300), (5, 0.6, 200)):
        rng = np.random.default_rng(3)
        expected: dict = {}
        while len(expected) < need:
            expected.setdefault(random_map(size, p_frozen=p_frozen, seed=rng))
        got = D.distinct_maps(size, p_frozen, need, np.random.default_rng(3), draws=10**6)
        assert got == list(expected)
    # at most `draws` maps looked at: 20 draws hold fewer than 100 distinct maps
    assert len(D.distinct_maps(4, 0.8, 100, np.random.default_rng(0), draws=20)) <= 20


def test_validation_lakes_are_disjoint_and_leave_the_others_as_they_were():
    cfg = TINY_LM.replace(n_val=24)
    train, test = D.tasks(cfg)
    _, val = D.tasks(cfg.replace(evaluate_on="validation"))

    def maps(tasks):
        return [t.lake.desc for t in tasks]

    fewer = D.tasks(cfg.replace(n_val=1))
    assert len(val) == 24 and (maps(train), maps(test)) == (maps(fewer[0]), maps(fewer[1]))
    descs = maps(train + test + val)
    assert len(set(descs)) == len(descs)  # three disjoint sets


@pytest.mark.slow  # ~2 s: a seed's data and reference cache
def test_a_methods_own_learning_rate_is_the_one_it_trains_with(monkeypatch):
    cfg = TINY_LM.replace(align_lr=1e-3, align_lrs={"dpo": 3e-4})
    assert (cfg.method_lr("dpo"), cfg.method_lr("sft")) == (3e-4, 1e-3)
    used = []
    real = TR.new_optimizer
    monkeypatch.setattr(TR, "new_optimizer", lambda m, lr, wd: used.append(lr) or real(m, lr, wd))
    data = D.seed_data(cfg, 0)
    base = TinyGPT(model_config(cfg.model), seed=0)
    ref = TR.ReferenceCache.build(base, data)
    for method in ("sft", "dpo"):
        TR.align(cfg.replace(align_steps=1), base, method, data, 0, reference=ref,
                log=lambda *a: None)  # fmt: skip
    assert used == [1e-3, 3e-4]
    with pytest.raises(ValueError, match=r"align_lrs: unknown method 'dop'"):
        cfg.replace(align_lrs={"dop": 1e-3})
    with pytest.raises(ValueError, match=r"align_lrs\['dpo'\] must be in \(0, inf\)"):
        cfg.replace(align_lrs={"dpo": 0.0})
    with pytest.raises(ValueError, match="evaluate_on must be one of"):
        cfg.replace(evaluate_on="train")


def test_plans_agree_with_an_independent_grid_walker():
    train, test = D.tasks(TINY_LM)
    rng = np.random.default_rng(0)
    for task in train + test:
        shortest = shortest_moves(task.lake.desc)
        assert task.shortest == shortest
        for plan in (D.optimal_plan(task, None), D.optimal_plan(task, rng)):
            assert walk_plan(task.lake.desc, plan) == ("G", shortest)
            assert task.is_optimal(plan)
        rejected = D.rejected_plan(task, rng, TINY_LM.max_moves, 0.6)
        cell, moves = walk_plan(task.lake.desc, rejected)
        assert not (cell == "G" and moves == len(rejected) == shortest)  # never an optimal plan
        avoiding = D.walk(task, rng, TINY_LM.max_moves, avoid=True)
        assert len(avoiding) <= TINY_LM.max_moves
        assert walk_plan(task.lake.desc, avoiding)[1] == len(avoiding)  # never ends in a hole


def _walk_by_choice(task, rng, max_moves, avoid):
    """``data.walk`` as first written, with ``rng.choice`` over the allowed moves."""
    s, plan = task.lake.start, []
    while not task.lake.terminal[s] and len(plan) < max_moves:
        moves = [
            a
            for a in range(4)
            if not avoid or (task.step(s, a) != s and not task.lake.holes[task.step(s, a)])
        ]
        plan.append(int(rng.choice(moves)))
        s = task.step(s, plan[-1])
    return plan


def test_random_walks_and_tie_breaks_draw_as_rng_choice_does():
    train, _ = D.tasks(TINY_LM)
    for seed in range(3):
        ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
        for task in train:
            for avoid in (False, True):
                expected = _walk_by_choice(task, theirs, TINY_LM.max_moves, avoid)
                assert D.walk(task, ours, TINY_LM.max_moves, avoid=avoid) == expected
            plan, s = D.optimal_plan(task, ours), task.lake.start
            for a in plan:  # the same tie-break draws: rng.choice over the optimal moves
                assert a == int(theirs.choice(np.flatnonzero(task.optimal_moves[s])))
                s = task.step(s, a)
        assert ours.random() == theirs.random()  # both generators drew alike throughout


def test_seed_data_tokens_hold_the_plans_at_the_response_positions():
    data = D.seed_data(TINY_LM, 0)
    P = data.chosen.prompt_len
    for i in range(5):
        row = data.chosen[i]
        response = decode(row.targets[row.mask].tolist())
        assert response.endswith(".") and row.mask[P - 1]  # the first target follows ">"
        assert data.tasks[i].is_optimal(parse_plan(response))
        assert decode(row.inputs[:P].tolist()) == "/".join(data.tasks[i].lake.desc) + ">"
    assert torch.equal(D.seed_data(TINY_LM, 0).corpus.inputs, data.corpus.inputs)  # seeded
    assert not torch.equal(D.seed_data(TINY_LM, 1).corpus.inputs, data.corpus.inputs)


# -- IFT on the transformer ------------------------------------------------------------------
def _loss_and_grads(model, method, hp, batch):
    model.zero_grad()
    logps = TR.objective_logps(model, method, hp, batch)
    loss, _ = compute_objective(method, logps, hp)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_ift_with_lam_0_and_gamma_0_is_exactly_sft_on_the_transformer(tiny):
    data, base = tiny
    batch = data.chosen[:16]
    sft_loss, sft_grads = _loss_and_grads(base, "sft", {}, batch)
    hp = {"lam": 0.0, "gamma": 0.0, "residual": "greedy", "weighting": "loss"}
    ift_loss, ift_grads = _loss_and_grads(base, "ift", hp, batch)
    assert torch.equal(ift_loss, sft_loss)
    assert all(torch.equal(a, b) for a, b in zip(ift_grads, sft_grads, strict=True))
    # and the default lam = 0.2 does change both (the comparison can fail)
    ift2_loss, ift2_grads = _loss_and_grads(base, "ift", {}, batch)
    assert ift2_loss != sft_loss
    assert not torch.equal(ift2_grads[0], sft_grads[0])


def test_ift_lam_1_feeds_the_models_own_greedy_predictions(tiny):
    """With lam = 1 (greedy), pass 2 must equal a plain forward on the token sequence whose
    response inputs are replaced by the model's argmax from the previous position."""
    data, base = tiny
    batch = data.chosen[:8]
    got = TR.ift_logps(base, batch, lam=1.0, residual="greedy")
    with torch.no_grad():
        guess = base(batch.inputs).argmax(-1)  # (B, T) prediction for input t + 1
    inputs = batch.inputs.clone()
    P = batch.prompt_len
    inputs[:, P:] = guess[:, P - 1 : -1]  # every response input: the previous prediction
    expected = TR.token_logps(base, D.Tokens(inputs, batch.targets, batch.mask, P))
    assert_close(got, expected)
    assert not torch.allclose(got, TR.token_logps(base, batch))  # it is not the true pass


# -- reference cache -------------------------------------------------------------------------
def test_cached_reference_logps_equal_fresh_ones_and_are_never_recomputed(tiny, monkeypatch):
    data, base = tiny
    cache = TR.ReferenceCache.build(base, data)
    assert cache.chosen.shape == data.chosen.inputs.shape

    def forbidden(*args, **kwargs):
        raise AssertionError("reference recomputed during training")

    monkeypatch.setattr(TR, "reference_logps", forbidden)
    for method in ("dpo", "ipo"):
        model = TR.align(TINY_LM, base, method, data, 0, reference=cache, log=lambda *a: None)
    monkeypatch.undo()
    idx = np.array([3, 0, 17, 42])
    batch = data.chosen[idx]
    assert_close(cache.chosen[idx], TR.reference_logps(base, batch))
    assert_close(cache.rejected[idx], TR.reference_logps(base, data.rejected[idx]))
    # the trained policy moved away from the reference, so the check above can fail
    assert (TR.token_logps(model, batch) - cache.chosen[idx])[batch.mask].abs().max() > 1e-3


def test_online_negatives_never_reject_an_optimal_plan(tiny, monkeypatch):
    data, base = tiny
    idx = np.arange(6)
    failing = encode("UUUL.")  # bumps the top wall, then walks left: never the goal

    def fake_generate(model, prompts, max_new, **kwargs):
        rows = []
        for k, i in enumerate(idx):
            plan = D.optimal_plan(data.tasks[i], None) if k % 2 == 0 else None
            ids = encode(plan_text(plan)) if plan is not None else failing
            rows.append(ids + [0] * (max_new - len(ids)))
        return torch.tensor(rows)

    monkeypatch.setattr(TR, "generate", fake_generate)
    rejected, fallbacks = TR.online_rejected(base, data, idx, TINY_LM, torch.Generator())
    assert fallbacks == 3
    for k, i in enumerate(idx):
        if k % 2 == 0:  # optimal sample: replaced by the lake's offline rejected plan
            assert torch.equal(rejected.targets[k], data.rejected.targets[i])
        else:
            assert decode(rejected.targets[k][rejected.mask[k]].tolist()) == "UUUL."


def _recorder(logged):
    return lambda *args: logged.append(args)


@pytest.mark.parametrize("negatives", ["offline", "online"])
def test_every_objective_trains_and_logs(tiny, negatives):
    data, base = tiny
    cfg = TINY_LM.replace(negatives=negatives)
    cache = TR.ReferenceCache.build(base, data)
    before = [p.detach().clone() for p in base.parameters()]
    for method in cfg.methods:
        logged: list[tuple] = []
        model = TR.align(cfg, base, method, data, 0, reference=cache, log=_recorder(logged))
        assert [step for _, step, _ in logged] == [0, 3, 6]
        assert np.isfinite(logged[-1][2]["loss"])
        moved = max((p - q).abs().max() for p, q in zip(model.parameters(), before, strict=True))
        assert moved > 0
    # the base model itself is untouched
    assert all(torch.equal(p, q) for p, q in zip(base.parameters(), before, strict=True))


@pytest.mark.slow  # every objective beyond the seven, one after another
def test_the_trl_family_trains_on_the_transformer(tiny):
    """Every built-in objective beyond the default seven runs on the LM track as well: the
    loop knows none of them by name (lakelab.registry)."""
    from lakelab.configs import METHODS
    from lakelab.registry import BUILTINS

    data, base = tiny
    others = tuple(m for m in BUILTINS if m not in METHODS)
    assert len(others) >= 10
    cfg = TINY_LM.replace(methods=others)
    cache = TR.ReferenceCache.build(base, data)
    for method in others:
        logged: list[tuple] = []
        TR.align(cfg, base, method, data, 0, reference=cache, log=_recorder(logged))
        assert np.isfinite(logged[-1][2]["loss"]), method
        assert logged[-1][2]["loss"] != logged[0][2]["loss"], method  # it trained


def test_a_diverging_run_names_method_seed_and_step(tiny, monkeypatch):
    data, base = tiny
    real = TR.compute_objective
    calls = []

    def poisoned(method, logps, hp=None):
        calls.append(method)
        loss, metrics = real(method, logps, hp)
        return (loss * float("nan") if len(calls) > 2 else loss), metrics

    monkeypatch.setattr(TR, "compute_objective", poisoned)
    with pytest.raises(FloatingPointError, match=r"orpo diverged at step 2 \(seed 5\)"):
        TR.align(TINY_LM, base, "orpo", data, 5, reference=None, log=lambda *a: None)


# -- held-out metrics ------------------------------------------------------------------------
def test_plans_are_executed_in_the_real_gymnasium_env(tiny, monkeypatch):
    _, test = D.tasks(TINY_LM)
    rng = np.random.default_rng(1)
    held = M.held_out(TINY_LM)
    for task, env in zip(test, held.envs, strict=True):
        for _ in range(5):
            plan = rng.integers(0, 4, size=int(rng.integers(1, 10))).tolist()
            cell, moves = walk_plan(task.lake.desc, plan)
            assert M.execute(env, plan) == (cell == "G", moves)
    steps = []
    real_step = FrozenLakeEnv.step
    monkeypatch.setattr(FrozenLakeEnv, "step", lambda env, a: steps.append(a) or real_step(env, a))
    _, base = tiny
    metrics = M.evaluate(base, held)
    assert steps  # evaluate went through Gymnasium's own step
    # and its success rate is what the independent walker says about the same greedy plans
    generated = TR.generate(base, held.chosen.prompts, held.max_new)
    plans = [parse_plan(decode(row)) for row in generated.tolist()]
    reached = [
        p is not None and walk_plan(t.lake.desc, p)[0] == "G"
        for t, p in zip(test, plans, strict=True)
    ]
    assert metrics["success"] == pytest.approx(np.mean(reached))


def test_token_kl_and_log_likelihoods_match_an_independent_loop(tiny):
    _, base = tiny
    held = M.held_out(TINY_LM)
    got = M.evaluate(base, held)
    kls, logps = [], []
    for task in held.tasks:
        pi = soft_value_iteration(task.lake, tau=TINY_LM.tau, gamma=TINY_LM.gamma).policy
        plan = D.optimal_plan(task, None)
        prompt = encode("/".join(task.lake.desc) + ">")
        ids = encode(plan_text(plan))
        s, per_token, total = task.lake.start, [], 0.0
        for t in range(len(ids)):  # one forward per prefix, no padding, no batching
            with torch.no_grad():
                logp = base(torch.tensor([prompt + ids[:t]]))[0, -1].log_softmax(-1).double()
            total += logp[ids[t]].item()
            if t < len(plan):
                q = np.zeros(12)
                q[[7, 8, 9, 10]] = pi[s]  # L D R U token ids
                s = task.step(s, plan[t])
            else:
                q = np.eye(12)[END_ID]
            nz = q > 0
            per_token.append(float((q[nz] * (np.log(q[nz]) - logp.numpy()[nz])).sum()))
        kls.append(np.mean(per_token))
        logps.append(total)
    assert got["token_kl"] == pytest.approx(np.mean(kls), rel=1e-5)
    assert got["logp_chosen"] == pytest.approx(np.mean(logps), rel=1e-5)


# -- on-policy RL ----------------------------------------------------------------------------
@pytest.mark.slow  # three methods, sampling plans each step
def test_rl_methods_train_on_plans_the_model_samples(tiny, monkeypatch):
    """GRPO, RLOO and REINFORCE on the transformer: the loop samples batch_size plans a step,
    each at least one token, and logs a finite loss and the batch's mean reward (a group of
    equal rewards, common for a weak base model, gives GRPO a zero loss: tests/
    test_policy_gradient.py)."""
    from lakelab.lm import rl
    from lakelab.lm.tokenizer import decode, parse_plan

    data, base = tiny
    seen = []
    real = rl.sampled_responses

    def spy(generated):
        responses = real(generated)
        seen.append(responses)
        return responses

    monkeypatch.setattr(rl, "sampled_responses", spy)
    cfg = TINY_LM.replace(
        methods=("grpo", "rloo", "reinforce"), hparams={"grpo": {"group_size": 4}}
    )
    for method in cfg.methods:
        logged: list[tuple] = []
        rl.align_rl(cfg, base, method, data, 0, log=_recorder(logged))
        extra = [entry[2] for entry in logged]
        assert all(np.isfinite(e["loss"]) and 0 <= e["reward"] <= 1 for e in extra[1:]), method
    plans = [parse_plan(decode(r)) for r in seen[-1]]
    assert len(plans) == cfg.batch_size and all(len(r) >= 1 for r in seen[-1])


def test_the_lm_track_takes_grpo_but_not_ppo():
    assert TINY_LM.replace(methods=("grpo",)).method_hparams("grpo")["group_size"] == 8
    with pytest.raises(ValueError, match="ppo: its value head and inner steps run on the lake"):
        TINY_LM.replace(methods=("ppo",))
    with pytest.raises(ValueError, match="batch_size 16 must be a multiple of group_size 5"):
        TINY_LM.replace(methods=("rloo",), hparams={"rloo": {"group_size": 5}})
