"""scripts/bench_rasterizer.timed_interleaved: the alternation the 1- vs 2-thread ratios rest on."""

import pytest

from scripts.bench_rasterizer import timed_interleaved


def _recorder():
    calls, current = [], {}

    def set_threads(threads: int) -> None:
        current["threads"] = threads

    def make(key: int):
        def fn() -> None:
            assert current["threads"] == key, "a call ran under another key's thread setting"
            calls.append(key)
        return fn

    return calls, set_threads, make


@pytest.mark.parametrize("calls_per_turn", [1, 2, 3])
def test_keys_take_turns_in_blocks_of_calls_per_turn(calls_per_turn):
    calls, set_threads, make = _recorder()
    best = timed_interleaved({1: make(1), 2: make(2)}, 3, set_threads, calls_per_turn)
    block = [1] * calls_per_turn + [2] * calls_per_turn
    assert calls == [1, 2] + block * 3  # one warm-up call each, then 3 turns
    assert set(best) == {1, 2}
    for wall, cpu in best.values():
        assert 0 <= wall < 1e3 and cpu >= 0


def test_best_of_a_turn_is_reported():
    """The slow first call of every turn (cold after a switch) must not be the one reported."""
    import time

    state = {"last": None, "slow": 0}

    def set_threads(threads: int) -> None:
        state["switched"] = state["last"] != threads
        state["last"] = threads

    def fn() -> None:
        if state.pop("switched", False):
            state["slow"] += 1
            time.sleep(0.05)

    best = timed_interleaved({1: fn, 2: fn}, 2, set_threads, calls_per_turn=2)
    assert state["slow"] >= 4
    assert all(wall < 40 for wall, _ in best.values())


def test_calls_per_turn_must_be_positive():
    with pytest.raises(ValueError, match="calls_per_turn"):
        timed_interleaved({1: lambda: None}, 1, lambda _: None, calls_per_turn=0)
