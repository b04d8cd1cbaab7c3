"""A member changed while a request holds its old version: the old copy stays counted
against the budget until it is released (review finding)."""


from ops.serving.exceptions import Overloaded
from ops.serving.multimodel import ModelCache
from tests.asyncio_thread import run_async
from tests.unit.test_serving_multimodel import MB, Loader, catalog, entry, use


def test_changed_member_in_use_stays_accounted():
    """A member replaced while a request holds the old version: the old one is still in
    memory until released, so the budget must keep counting it."""
    loader = Loader()
    cache = ModelCache(catalog(entry("a", 2 * MB), entry("b", 1 * MB), budget=3 * MB), loader)

    async def scenario():
        old = await cache.acquire("a")                     # request holds a (v1, 2 MB)
        cache.replace_catalog(catalog(entry("a", 2 * MB, sha="1"), entry("b", 1 * MB),
                                      budget=3 * MB))
        # a (v2) loads: room is made while old a is counted (only 1 MB free -> b not loaded)
        # but v2 needs 2 MB: nothing idle to evict -> Overloaded is the honest answer.
        try:
            new = await cache.acquire("a")
        except Exception as e:
            old.release()
            return type(e).__name__
        held = 2 * MB + 2 * MB  # old a (in use) + new a
        old.release()
        new.release()
        return held

    result = run_async(scenario())
    assert result == "Overloaded", f"held {result} bytes with a budget of {3*MB}"


def test_old_version_in_use_is_forgotten_when_new_version_loads():
    loader = Loader()
    cache = ModelCache(catalog(entry("a", 2 * MB), entry("b", 2 * MB), budget=4 * MB), loader)

    async def scenario():
        old = await cache.acquire("a")                      # a v1 in use, 2 MB
        cache.replace_catalog(catalog(entry("a", 2 * MB, sha="1"), entry("b", 2 * MB),
                                      budget=4 * MB))
        new = await cache.acquire("a")                      # a v2 loaded, 2 MB (fits: 2+2)
        assert old.model is not new.model
        try:
            await use(cache, "b")                           # b 2 MB: is anything evicted?
        except Overloaded:
            pass                                            # the honest answer
        in_memory = 2 * MB + sum(e.size for e in cache._entries.values())  # + old a, held
        old.release()
        new.release()
        # Once released, the old copy is forgotten: only the new one is counted.
        assert cache.used_bytes == 2 * MB, cache.used_bytes
        return in_memory

    in_memory = run_async(scenario())
    assert in_memory <= 4 * MB, f"{in_memory / MB} MB held with a 4 MB budget"
