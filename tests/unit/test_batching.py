"""The continuous batcher: batches form when the engine is free, bounded by size."""

from __future__ import annotations

import asyncio

import pytest

from promptserve.serving.batching import ContinuousBatcher


class Engine:
    """Records each batch; `gate` holds a batch in the engine until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if "boom" in items:
            raise RuntimeError("engine failed")
        return [i.upper() for i in items]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def test_items_arriving_while_the_engine_runs_form_the_next_batch():
    async def main():
        engine = Engine()
        engine.gate = asyncio.Event()
        b = ContinuousBatcher(engine, max_batch_size=8, batch_wait_timeout_s=0.0)
        first = asyncio.create_task(b("a"))
        await asyncio.sleep(0.05)  # "a" is in the engine now
        rest = [asyncio.create_task(b(x)) for x in "bcdef"]
        await asyncio.sleep(0.05)
        engine.gate.set()
        return await first, await asyncio.gather(*rest), engine.batches

    first, rest, batches = run(main())
    assert first == "A" and rest == list("BCDEF")
    assert batches == [["a"], list("bcdef")]


def test_size_bound_counts_item_sizes_and_keeps_order():
    async def main():
        engine = Engine()
        b = ContinuousBatcher(engine, max_batch_size=5, batch_wait_timeout_s=0.2, size_fn=len)
        out = await asyncio.gather(*(b(x) for x in ["aa", "bbb", "c", "dddd", "e"]))
        return out, engine.batches

    out, batches = run(main())
    assert out == ["AA", "BBB", "C", "DDDD", "E"]
    assert all(sum(map(len, batch)) <= 5 for batch in batches)
    assert [x for batch in batches for x in batch] == ["aa", "bbb", "c", "dddd", "e"]


def test_oversized_item_is_refused():
    b = ContinuousBatcher(Engine(), max_batch_size=2, batch_wait_timeout_s=0, size_fn=len)
    with pytest.raises(ValueError, match="exceeds max_batch_size"):
        run(b("abc"))


def test_engine_error_reaches_every_caller_of_that_batch_only():
    async def main():
        engine = Engine()
        b = ContinuousBatcher(engine, max_batch_size=8, batch_wait_timeout_s=0.05)
        results = await asyncio.gather(b("x"), b("boom"), return_exceptions=True)
        return results, await b("after")

    results, after = run(main())
    assert all(isinstance(r, RuntimeError) for r in results) and after == "AFTER"


def test_settings_change_at_run_time():
    async def main():
        engine = Engine()
        b = ContinuousBatcher(engine, max_batch_size=1, batch_wait_timeout_s=0.05)
        await asyncio.gather(b("a"), b("b"))
        b.set_max_batch_size(4)
        await asyncio.gather(b("c"), b("d"))
        return engine.batches

    assert run(main()) == [["a"], ["b"], ["c", "d"]]


@pytest.mark.parametrize("inflight", [1, 2])
def test_max_inflight_bounds_the_batches_in_the_engine(inflight):
    """With max_inflight 2 a second batch enters the engine while the first is held there;
    with 1 it waits and gathers everything that arrived meanwhile."""

    async def main():
        engine = Engine()
        engine.gate = asyncio.Event()
        b = ContinuousBatcher(
            engine, max_batch_size=8, batch_wait_timeout_s=0.0, max_inflight=inflight
        )
        first = asyncio.create_task(b("a"))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(b("b"))
        await asyncio.sleep(0.05)
        third = asyncio.create_task(b("c"))
        await asyncio.sleep(0.05)
        in_engine = [list(x) for x in engine.batches]
        engine.gate.set()
        return in_engine, await asyncio.gather(first, second, third), engine.batches

    in_engine, out, batches = run(main())
    assert out == ["A", "B", "C"]
    if inflight == 1:
        assert in_engine == [["a"]] and batches == [["a"], ["b", "c"]]
    else:  # "c" waits for a free slot, then goes alone
        assert in_engine == [["a"], ["b"]] and batches == [["a"], ["b"], ["c"]]
