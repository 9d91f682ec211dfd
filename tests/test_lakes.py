"""Lakes: presets, transition tensors from Gymnasium, validation, random lakes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakelab.lakes import MAX_SIDE, PRESETS, make_lake, random_lake, validate_map
from tests.oracles import simple_paths

# -- transition tensors --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("slippery", [False, True])
def test_P_rows_are_distributions(name, slippery):
    lake = make_lake(name, slippery=slippery)
    assert lake.P.dtype == np.float64
    assert lake.P.shape == (lake.n_states, 4, lake.n_states)
    assert (lake.P >= 0).all()
    np.testing.assert_allclose(lake.P.sum(-1), 1.0, atol=1e-12)


def test_P_sums_duplicate_gymnasium_entries():
    # In the 4x4 corner state 0, slippery action Left lists "stay in 0" twice (Left and Up
    # both bump into walls): the dense P must hold their sum, 2/3.
    lake = make_lake("4x4", slippery=True)
    assert lake.P[0, 0, 0] == pytest.approx(2 / 3)
    assert lake.P[0, 0, 4] == pytest.approx(1 / 3)
    env_entries = lake.make_env().unwrapped.P[0][0]
    assert sum(p for p, s, _, _ in env_entries if s == 0) == pytest.approx(2 / 3)


def test_P_matches_gymnasium_entry_by_entry():
    lake = make_lake("8x8", slippery=True, success_rate=0.5)
    gym_P = lake.make_env().unwrapped.P
    P = np.zeros_like(lake.P)
    R = np.zeros_like(lake.R)
    for s in range(lake.n_states):
        for a in range(4):
            for prob, s_next, reward, _ in gym_P[s][a]:
                P[s, a, s_next] += prob
                R[s, a] += prob * reward
    np.testing.assert_array_equal(P, lake.P)
    np.testing.assert_array_equal(R, lake.R)


def test_slippery_success_rate_splits_probability():
    lake = make_lake("4x4", slippery=True, success_rate=0.6)
    s = lake.state(2, 1)  # open ice on all sides: Right goes right 0.6, up/down 0.2 each
    assert lake.P[s, 2, lake.state(2, 2)] == pytest.approx(0.6)
    assert lake.P[s, 2, lake.state(1, 1)] == pytest.approx(0.2)
    assert lake.P[s, 2, lake.state(3, 1)] == pytest.approx(0.2)


def test_reward_terminal_start_and_goal():
    lake = make_lake("4x4")
    assert lake.start == 0
    assert lake.terminal.sum() == 5  # 4 holes + 1 goal
    assert lake.goal.nonzero()[0].tolist() == [15]
    # Only moving into G pays: from (3, 2) Right, and from (2, 3)... which is a hole.
    assert lake.R.sum() == 1.0 and lake.R[14, 2] == 1.0
    # Terminal states are absorbing.
    for s in np.flatnonzero(lake.terminal):
        np.testing.assert_array_equal(lake.P[s, :, s], 1.0)


def test_desc_forms_agree():
    a = make_lake(["SFF", "FHF", "FFG"])
    b = make_lake("SFF/FHF/FFG")
    c = make_lake("SFF\nFHF\nFFG\n")
    for other in (b, c):
        assert other.desc == a.desc
        np.testing.assert_array_equal(other.P, a.P)


def test_make_env_is_the_same_lake():
    lake = make_lake("two-paths")
    env = lake.make_env()
    obs, _ = env.reset(seed=0)
    assert obs == lake.start
    assert env.spec.max_episode_steps == lake.time_limit()
    # Walk the optimal route (down 4, right 4) in the real env.
    total = 0.0
    for a in [1, 1, 1, 1, 2, 2, 2, 2]:
        obs, reward, terminated, _, _ = env.step(a)
        total += reward
    assert terminated and total == 1.0 and lake.goal[obs]


def test_rgb_render_works():
    frame = make_lake("4x4").make_env(render_mode="rgb_array")
    frame.reset(seed=0)
    img = frame.render()
    assert img.ndim == 3 and img.shape[2] == 3


# -- the two-paths lake -----------------------------------------------------------------------


def test_two_paths_has_exactly_two_routes_of_different_length():
    # simple hole-free paths, enumerated on the map's characters (tests/oracles.py)
    moves = sorted(len(p) - 1 for p in simple_paths(make_lake("two-paths").desc))
    assert moves == [8, 12]


def test_4x4_has_more_than_two_routes():
    # the enumeration can find more than two (so the two-paths test can fail)
    assert len(simple_paths(make_lake("4x4").desc)) > 2


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desc", "message"),
    [
        ([], "no rows"),
        (["SFF", "", "FFG"], "row 1 .* is empty"),
        (["SFF", "FF", "FFG"], "ragged lake map: row 1 has 2 cells but row 0 has 3"),
        (["SFF", "FXF", "FFG"], r"unknown character 'X' at row 1, column 1"),
        (["sFF", "FFF", "FFG"], r"unknown character 's' at row 0, column 0"),
        (["FFF", "FHF", "FFG"], "no start cell 'S'"),
        (["SFS", "FHF", "FFG"], r"2 start cells 'S' at \(row, column\) \[\(0, 0\), \(0, 2\)\]"),
        (["SFF", "FHF", "FFF"], "no goal cell 'G'"),
        (["SHF", "HFF", "FFG"], r"no goal 'G' can be reached from the start at .* \(0, 0\)"),
        (["S" + "F" * MAX_SIDE, "G" * (MAX_SIDE + 1)], "too large: at most 64 rows"),
        ("5x5", "unknown lake preset '5x5'"),
        (42, "preset name or a sequence of strings"),
    ],
)
def test_bad_maps_are_rejected_by_message(desc, message):
    with pytest.raises(ValueError, match=message):
        make_lake(desc)


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5, float("nan"), "high", True])
def test_bad_success_rate(rate):
    with pytest.raises(ValueError, match="success_rate"):
        make_lake("4x4", slippery=True, success_rate=rate)


def test_success_rate_one_is_deterministic():
    a = make_lake("4x4", slippery=True, success_rate=1.0)
    b = make_lake("4x4", slippery=False)
    np.testing.assert_allclose(a.P, b.P)


def test_largest_allowed_lake_builds():
    rows = ["S" + "F" * (MAX_SIDE - 1)] + ["F" * MAX_SIDE] * (MAX_SIDE - 2) + ["F" * 63 + "G"]
    validate_map(rows)  # the full P would be 0.5 GB, so validate only


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="SFHGx. ", min_size=0, max_size=6), min_size=0, max_size=6))
def test_random_strings_give_a_lake_or_a_value_error(rows):
    try:
        lake = make_lake(rows)
    except ValueError:
        return
    # whatever was accepted is a real, solvable lake
    assert lake.desc == tuple(rows)
    np.testing.assert_allclose(lake.P.sum(-1), 1.0)
    assert lake.goal.any() and not lake.terminal[lake.start]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="SFHG/\n", max_size=40))
def test_random_one_line_maps_give_a_lake_or_a_value_error(text):
    try:
        make_lake(text)
    except ValueError:
        pass


# -- random lakes ---------------------------------------------------------------------------


def test_random_lake_is_seeded_and_solvable():
    a = random_lake(6, seed=3)
    b = random_lake(6, seed=3)
    c = random_lake(6, seed=4)
    assert a.desc == b.desc
    assert a.desc != c.desc
    assert a.desc[0][0] == "S" and a.desc[-1][-1] == "G"


def test_random_lake_gives_up_with_a_clear_error():
    with pytest.raises(ValueError, match="no 8x8 lake with a reachable goal found in 5 tries"):
        random_lake(8, p_frozen=0.05, seed=0, max_tries=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 1}, "no room"),
        ({"size": 0}, "size must be"),
        ({"size": 65}, "size must be"),
        ({"size": 4, "p_frozen": 0.0}, "p_frozen"),
        ({"size": 4, "max_tries": 0}, "max_tries"),
    ],
)
def test_random_lake_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_lake(**kwargs)
