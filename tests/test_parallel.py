"""tinytt.parallel: block splitting, ordering, errors, thread-count setting."""

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinytt import parallel


@given(n=st.integers(0, 10_000), parts=st.integers(1, 16), min_size=st.integers(1, 5000))
def test_split_range_covers_range_in_order(n, parts, min_size):
    blocks = parallel.split_range(n, parts, min_size)
    flat = [i for a, b in blocks for i in range(a, b)] if n <= 2000 else None
    if flat is not None:
        assert flat == list(range(n))
    assert len(blocks) <= parts
    if n:
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        assert all(b0[1] == b1[0] for b0, b1 in zip(blocks, blocks[1:]))
        sizes = [b - a for a, b in blocks]
        assert max(sizes) - min(sizes) <= 1
        if len(blocks) > 1:
            assert min(sizes) >= min_size
    else:
        assert blocks == []


def test_map_blocks_results_in_block_order_and_on_threads(monkeypatch):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "3")
    names = []

    def fn(a, b):
        names.append(threading.current_thread().name)
        return (a, b)

    out = parallel.map_blocks(fn, 30, min_size=10)
    assert out == [(0, 10), (10, 20), (20, 30)]
    # the caller takes one block, worker threads the others, all at once
    assert threading.current_thread().name in names
    assert sum(n.startswith("tinytt-worker") for n in names) == 2


def test_map_blocks_small_work_runs_inline(monkeypatch):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "4")
    names = []
    out = parallel.map_blocks(lambda a, b: names.append(threading.current_thread().name) or b - a,
                              5, min_size=100)
    assert out == [5] and names == [threading.current_thread().name]
    assert parallel.map_blocks(lambda a, b: 1, 0) == []


def test_map_blocks_reraises_errors(monkeypatch):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")

    def fn(a, b):
        if a:
            raise KeyError("second block")
        return a

    with pytest.raises(KeyError, match="second block"):
        parallel.map_blocks(fn, 10, min_size=1)


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_thread_count_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("TINYTT_NUM_THREADS", value)
    with pytest.raises(ValueError, match="TINYTT_NUM_THREADS"):
        parallel.num_threads()


def test_thread_count_default_and_setting(monkeypatch):
    monkeypatch.delenv("TINYTT_NUM_THREADS", raising=False)
    assert parallel.num_threads() >= 1
    monkeypatch.setenv("TINYTT_NUM_THREADS", " 3 ")
    assert parallel.num_threads() == 3


def test_run_blocks_waits_for_every_block_before_reraising(monkeypatch):
    """An error in one block is raised only after the other blocks finished (none keeps
    writing into shared buffers after the caller has moved on)."""
    import time

    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")
    finished = []

    def fn(a, b):
        if a == 0:
            raise ValueError("first block")
        time.sleep(0.05)
        finished.append((a, b))
        return b

    with pytest.raises(ValueError, match="first block"):
        parallel.run_blocks(fn, [(0, 1), (1, 2)])
    assert finished == [(1, 2)]
    assert parallel.run_blocks(lambda a, b: (a, b), [(0, 3), (3, 5), (5, 9)]) == [(0, 3), (3, 5), (5, 9)]
    assert parallel.run_blocks(lambda a, b: threading.current_thread().name, [(0, 1)]) == \
        [threading.current_thread().name]


def test_submit_runs_on_a_worker_and_returns_a_future(monkeypatch):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")
    future = parallel.submit(lambda: threading.current_thread().name)
    assert future.result(timeout=10).startswith("tinytt")


def test_run_tasks_first_inline_rest_on_workers_results_in_order(monkeypatch):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "3")
    caller = threading.current_thread().name
    out = parallel.run_tasks([lambda k=k: (k, threading.current_thread().name) for k in range(3)])
    assert [k for k, _ in out] == [0, 1, 2]
    assert out[0][1] == caller
    assert all(name.startswith("tinytt-worker") for _, name in out[1:])
    assert out[1][1] != out[2][1]          # two different workers, at once
    assert parallel.run_tasks([]) == []


def test_run_tasks_runs_at_once_and_reuses_its_workers(monkeypatch):
    # the tasks really overlap (each waits for the other), and later calls reuse the threads
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")
    for _ in range(50):
        barrier = threading.Barrier(2, timeout=10)
        parallel.run_tasks([barrier.wait, barrier.wait])
    assert len(parallel._all_lanes) <= 8


def test_run_tasks_worker_error_after_all_finished_and_lane_reusable(monkeypatch):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")

    def bad():
        raise KeyError("worker task")

    with pytest.raises(KeyError, match="worker task"):
        parallel.run_tasks([lambda: 1, bad])
    with pytest.raises(KeyboardInterrupt):
        parallel.run_tasks([lambda: 1, lambda: (_ for _ in ()).throw(KeyboardInterrupt())])
    assert parallel.run_tasks([lambda: 1, lambda: 2, lambda: 3]) == [1, 2, 3]


def test_run_tasks_more_tasks_than_lanes_run_inline(monkeypatch):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")
    monkeypatch.setattr(parallel, "_MAX_LANES", 0)          # no new lanes
    monkeypatch.setattr(parallel, "_all_lanes", [])         # and none to pick
    me = threading.current_thread().name
    assert parallel.run_tasks([lambda: threading.current_thread().name] * 3) == [me, me, me]


def test_run_tasks_waits_for_all_then_reraises(monkeypatch):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")
    done = threading.Event()

    def slow():
        done.wait(5)
        return "slow"

    def failing():
        try:
            raise ValueError("first task failed")
        finally:
            done.set()

    with pytest.raises(ValueError, match="first task failed"):
        parallel.run_tasks([failing, slow])


def test_run_tasks_inside_a_worker_runs_in_turn(monkeypatch):
    # a worker waiting on the pool could deadlock it: nested use runs serially
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")

    def nested():
        me = threading.current_thread().name
        return [name == me for name in parallel.run_tasks([lambda: threading.current_thread().name] * 3)]

    assert parallel.submit(nested).result(timeout=10) == [True, True, True]


@given(weights=st.lists(st.integers(0, 1000), max_size=30), groups=st.integers(1, 5))
def test_deal_balances_and_keeps_every_job_once(weights, groups):
    jobs = [(w, k) for k, w in enumerate(weights)]
    dealt = parallel.deal(jobs, groups)
    assert sorted(k for g in dealt for k in g) == list(range(len(weights)))
    assert len(dealt) <= groups and all(dealt)
    if dealt:
        loads = [sum(weights[k] for k in g) for g in dealt]
        # largest-first greedy: no group exceeds the lightest by more than the largest job
        assert max(loads) - min(loads) <= max(weights) or len(dealt) < groups
    assert parallel.deal(jobs, groups) == dealt   # the same split every time


@pytest.mark.parametrize("threads", ["1", "2", "4"])
def test_run_jobs_runs_every_job_once(monkeypatch, threads):
    monkeypatch.setenv("TINYTT_NUM_THREADS", threads)
    hits = [0] * 20

    def job(k):
        hits[k] += 1

    for gemm in (False, True):
        hits[:] = [0] * 20
        parallel.run_jobs([(k + 1, lambda k=k: job(k)) for k in range(20)], gemm=gemm)
        assert hits == [1] * 20
    # below min_weight: inline, in order
    order = []
    parallel.run_jobs([(1, lambda k=k: order.append(k)) for k in range(5)], min_weight=100)
    assert order == list(range(5))


def test_run_jobs_with_a_huge_thread_count_deals_no_more_groups_than_jobs(monkeypatch):
    # deal() made one list per thread: TINYTT_NUM_THREADS=10**9 ran out of memory
    monkeypatch.setenv("TINYTT_NUM_THREADS", str(10 ** 9))
    hits = [0] * 5
    parallel.run_jobs([(1, lambda k=k: hits.__setitem__(k, hits[k] + 1)) for k in range(5)])
    assert hits == [1] * 5


def _alarm_interrupts(period_s: float, armed: list):
    """SIGALRM every ``period_s`` raising KeyboardInterrupt in the main thread while
    ``armed[0]`` is true (a Ctrl-C storm confined to the code under test); returns a
    function that stops it."""
    import signal

    def handler(signum, frame):
        if armed[0]:
            armed[0] = False
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, period_s, period_s)

    def stop():
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)

    return stop


@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="needs signal.setitimer")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # interrupts in gc callbacks
def test_run_tasks_survives_a_storm_of_interrupts(monkeypatch):
    # interrupts anywhere in run_tasks (while starting lanes, running the caller's task or
    # waiting): never a stale or wrong result afterwards, no dead or lost lanes, no hang,
    # and an interrupted call returns only after its lane task finished
    import time

    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")
    running = []

    def lane_task(k):
        running.append(k)
        time.sleep(0.0002)
        running.remove(k)
        return ("lane", k)

    interrupted = 0
    armed = [False]
    results = []
    stop = _alarm_interrupts(0.00073, armed)
    try:
        for k in range(3000):
            try:
                armed[0] = True
                out = parallel.run_tasks([lambda k=k: ("caller", k), lambda k=k: lane_task(k)])
                armed[0] = False
            except KeyboardInterrupt:
                armed[0] = False
                interrupted += 1
                continue
            results.append((k, out))
    finally:
        armed[0] = False
        stop()
    assert all(out == [("caller", k), ("lane", k)] for k, out in results)
    assert interrupted > 0
    time.sleep(0.05)
    assert running == []                   # nothing left running after the calls returned
    for k in range(50):                    # and the lanes still work, with the right results
        assert parallel.run_tasks([lambda k=k: k, lambda k=k: -k]) == [k, -k]
    assert len(parallel._all_lanes) <= 8
    assert all(t.is_alive() for t in threading.enumerate() if t.name.startswith("tinytt-worker-lane"))


def test_parallel_helpers_work_in_a_forked_child(monkeypatch):
    # the child has none of the parent's threads: lanes, the executor and the lock are reset
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no os.fork")
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")
    assert parallel.run_tasks([lambda: 1, lambda: 2]) == [1, 2]
    assert parallel.submit(lambda: 3).result(timeout=10) == 3
    pid = os.fork()
    if pid == 0:   # child: exit 0 only if both helpers work
        code = 1
        try:
            ok = parallel.run_tasks([lambda: 1, lambda: 2]) == [1, 2]
            ok = ok and parallel.submit(lambda: 3).result(timeout=10) == 3
            code = 0 if ok else 1
        finally:
            os._exit(code)
    import time
    deadline = time.time() + 20
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the forked child hung in run_tasks or submit")


def test_helpers_check_their_integer_arguments():
    from tinytt import parallel

    for args in ((10, 0), (10, -2), (10.5, 2), (10, 2.5)):
        with pytest.raises(ValueError, match="split_range"):
            parallel.split_range(*args)
    for n_groups in (0, 2.0):
        with pytest.raises(ValueError, match="n_groups"):
            parallel.deal([(1, None)], n_groups)
    with pytest.raises(TypeError, match="min_weight"):
        parallel.run_jobs([(1, lambda: None)], min_weight="x")
    import numpy
    assert parallel.split_range(numpy.int64(10), numpy.int64(2)) == [(0, 5), (5, 10)]
    assert parallel.split_range(10, 4, 0) == [(0, 2), (2, 5), (5, 7), (7, 10)]   # min_size 0 counts as 1
