"""Scheduling: interactive first, batch never starved; positions match the real order."""

from __future__ import annotations

import threading

from PIL import Image

from impasto.options import EngineOptions
from impasto.server.jobqueue import Job, JobQueue


def job(priority: str) -> Job:
    return Job(content=Image.new("RGB", (8, 8)), styles=[], options=EngineOptions(),
               priority=priority, peer=b"p", req=None)


def test_interactive_first_but_batch_not_starved() -> None:
    q = JobQueue(batch_every=2)
    batch = [job("batch") for _ in range(2)]
    inter = [job("interactive") for _ in range(5)]
    for j in batch + inter:
        q.put(j)
    predicted = [j.id for j in q.snapshot()]
    taken = []
    while len(q):
        j = q.take(0)
        taken.append(j)
        q.finished(j)
    assert [j.id for j in taken] == predicted
    kinds = [j.priority[0] for j in taken]
    assert kinds == ["i", "i", "b", "i", "i", "b", "i"]


def test_position_counts_the_running_job() -> None:
    q = JobQueue()
    first = job("interactive")
    assert q.put(first) == 0
    assert q.take(0) is first
    assert q.put(job("batch")) == 1
    assert q.put(job("interactive")) == 1  # jumps ahead of the batch job
    q.finished(first)
    assert q.put(job("interactive")) == 1  # behind the other interactive job only


def test_position_counts_every_running_job() -> None:
    # A cluster runs several jobs at once: each one still running is ahead of a new job.
    q = JobQueue()
    a, b = job("interactive"), job("interactive")
    q.put(a)
    q.put(b)
    assert (q.take(0), q.take(0)) == (a, b)
    assert q.put(job("interactive")) == 2
    q.finished(a)
    assert q.put(job("interactive")) == 2  # b and the one queued before


def test_remove_and_close() -> None:
    q = JobQueue()
    a, b = job("interactive"), job("batch")
    q.put(a)
    q.put(b)
    assert q.remove(b.id) is b and q.remove("nope") is None
    assert q.close() == [a]
    assert q.take(0) is None


def test_take_blocks_until_put() -> None:
    q = JobQueue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.take(5)))
    t.start()
    j = job("batch")
    q.put(j)
    t.join(5)
    assert got == [j]


def test_computed_positions_equal_the_simulated_order() -> None:
    """put() computes positions in constant time; they must be where the job really is
    in the order take() follows, for every mix of lanes, skips and batch_every."""
    import random

    rng = random.Random(0)
    for trial in range(300):
        q = JobQueue(batch_every=rng.randint(1, 4), per_owner=1000)
        for _ in range(rng.randint(1, 25)):
            if rng.random() < 0.25 and len(q):
                q.finished(q.take(0))
                continue
            j = job(rng.choice(["interactive", "batch"]))
            pos = q.put(j)
            assert pos == [x.id for x in q.snapshot()].index(j.id) + len(q.running), trial


def test_one_client_cannot_fill_the_queue() -> None:
    import pytest

    from impasto.errors import ImpastoError

    q = JobQueue(max_jobs=10, per_owner=3)
    for _ in range(3):
        q.put(Job(content=Image.new("RGB", (8, 8)), styles=[], options=EngineOptions(),
                  priority="batch", peer=b"p", req=None, owner="greedy"))
    with pytest.raises(ImpastoError) as e:
        q.put(Job(content=Image.new("RGB", (8, 8)), styles=[], options=EngineOptions(),
                  priority="batch", peer=b"p", req=None, owner="greedy"))
    assert e.value.code == "queue_full" and "you have 3 jobs queued" in e.value.message
    q.put(Job(content=Image.new("RGB", (8, 8)), styles=[], options=EngineOptions(),
              priority="interactive", peer=b"p", req=None, owner="someone else"))
    assert q.take(0).owner == "someone else"  # interactive first
    taken = q.take(0)  # then one of the greedy client's: it may queue one more
    assert taken.owner == "greedy"
    q.finished(taken)
    q.put(Job(content=Image.new("RGB", (8, 8)), styles=[], options=EngineOptions(),
              priority="batch", peer=b"p", req=None, owner="greedy"))
