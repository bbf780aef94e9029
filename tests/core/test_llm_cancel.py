"""Issue 12 (stop abandoned work): an interrupted run, or one whose task raises, stops at once.

The calls not started are cancelled and the requests in flight are abandoned (their connections shut down, so
the server sees the client leave and llama-server stops generating); ``run`` re-raises within moments, not
after the 30 s the stalled answers would take. Calls finished before the stop are cached, so a re-run with a
fresh client replays them and asks only the rest.

Bounds are generous (< 10 s against 30 s stalls): the machine is shared.
"""

from __future__ import annotations

import _thread
import signal
import socket
import threading
import time

import pytest

from synalign_kedro.core.llm_endpoints import CallAbandonedError, EndpointPool
from synalign_kedro.core.llm_server import Endpoint

from .scripted_server import ScriptedLLMServer
from .test_llm_client import make_client, sample_task

STALL_S = 30.0


@pytest.fixture
def server():
    with ScriptedLLMServer(default="stall", stall_seconds=STALL_S) as s:
        yield s


def stalling_client(server, tmp_path, concurrency: int):
    # llm.timeout (the whole answer of one request) longer than the stalls: only the abort can end them
    return make_client(server, tmp_path, max_concurrency=concurrency, timeout=120.0)


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting in the test"
        time.sleep(0.05)


def settled_calls(server, quiet_s: float = 0.5, seconds: float = 10.0) -> int:
    """The server's request count once it has not changed for ``quiet_s``: the requests sent before the stop
    are counted when the server's handler thread reads them, which on a loaded machine can be after ``run``
    has returned (seen: two of them counted during the re-run)."""
    deadline = time.monotonic() + seconds
    count = server.n_calls
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        if server.n_calls == count:
            return count
        count = server.n_calls
    return count


def rerun_asks_only_the_rest(server, tmp_path, tasks, finished: int) -> None:
    server.route, server.default = None, "ok"
    before = settled_calls(server)
    # a generous timeout: on a loaded machine a 2 s one times out and the retried request is counted twice
    client, _ = make_client(server, tmp_path, max_concurrency=4, timeout=60.0)
    results, usage = client.run(tasks)
    assert all(r.ok for r in results)
    assert usage.cache_hits == finished and usage.calls == len(tasks) - finished
    assert server.n_calls - before == len(tasks) - finished, f"transport retries: {usage.transport_retries}"


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt during the test. A process that a non-interactive shell starts in the
    background inherits SIGINT ignored, and then ``_thread.interrupt_main`` does nothing: the run would not be
    interrupted and the test would fail for how pytest was started, not for the client."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_stops_the_calls_in_flight_and_keeps_the_finished_ones(server, tmp_path, ctrl_c_raises):
    server.script = ["ok", "ok"]  # two answers arrive, every later request stalls
    client, cache = stalling_client(server, tmp_path, concurrency=4)
    tasks = [sample_task(f"t{i}", offset=i) for i in range(8)]

    def interrupt() -> None:  # Ctrl-C in the main thread once both answers are cached
        wait_for(lambda: len(cache) >= 2 and server.n_calls >= 4)
        time.sleep(0.3)
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        client.run(tasks)
    assert time.monotonic() - started < 10  # not the 30 s of the stalled answers
    assert len(cache) == 2
    sent = server.n_calls
    assert sent < len(tasks)  # the tasks not started were cancelled
    time.sleep(1.0)
    assert server.n_calls == sent  # the abandoned calls are not retried
    rerun_asks_only_the_rest(server, tmp_path, tasks, finished=2)


def answered_tasks(*task_ids: str):
    """A route: the requests of these tasks are answered at once, every other one stalls.

    Routing by task, not by arrival order: on a loaded machine the thread that took task 2 may send its request
    after another thread has sent tasks 3 and 4, and a script of "the first three requests" then stalls task 2
    (seen once in CI-like load: the run took the 30 s of the stall)."""
    wanted = {f"texts for {task_id}." for task_id in task_ids}

    def route(body: dict) -> str:
        prompt = " ".join(str(message.get("content", "")) for message in body["messages"])
        return "ok" if any(marker in prompt for marker in wanted) else "stall"

    return route


def test_a_task_that_raises_stops_the_run_at_once(server, tmp_path):
    server.route = answered_tasks("t0", "t1", "t2")
    client, cache = stalling_client(server, tmp_path, concurrency=3)
    tasks = [sample_task(f"t{i}", offset=i) for i in range(6)]

    def crash(parsed):  # once the answers of tasks 0 and 1 are cached (they arrive at about the same time)
        wait_for(lambda: len(cache) >= 2)
        raise RuntimeError("a bug in the validator, not a wrong answer")

    broken = [*tasks[:2], sample_task("t2", offset=2), *tasks[3:]]
    broken[2].validate = crash
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="a bug in the validator"):
        client.run(broken)
    assert time.monotonic() - started < 10
    assert len(cache) == 2  # tasks 0 and 1; the crashed validation stored nothing
    rerun_asks_only_the_rest(server, tmp_path, tasks, finished=2)


def read_request(connection: socket.socket) -> bytes:
    """One HTTP request: the headers, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def test_abort_shuts_the_connections_so_the_server_sees_the_client_leave():
    """A raw server that reads one request and never answers: after ``abort`` its read of the connection
    returns end-of-file at once, and the blocked client request fails instead of waiting for its timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict = {}
    got_request = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(20)
            seen["request"] = read_request(connection)
            got_request.set()
            began = time.monotonic()
            try:
                seen["after"] = connection.recv(1)  # b"": the client closed the connection
            except OSError as error:  # a reset is a disconnect too
                seen["after"] = error
            seen["eof_after_s"] = time.monotonic() - began

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    pool = EndpointPool([Endpoint(base_url=url, model="m", identity="m", api_key="k")], 1, timeout=120.0)
    state = pool.acquire()
    outcome: dict = {}

    def call() -> None:
        began = time.monotonic()
        try:
            state.client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        except Exception as error:  # noqa: BLE001 - the test looks at which
            outcome["error"] = error
        outcome["seconds"] = time.monotonic() - began

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    assert got_request.wait(20) and b"POST" in seen["request"]
    time.sleep(0.3)
    aborted_at = time.monotonic()
    assert pool.abort() == 1
    caller.join(10)
    assert not caller.is_alive() and "error" in outcome
    assert time.monotonic() - aborted_at < 10
    wait_for(lambda: "eof_after_s" in seen)
    assert seen["after"] == b"" or isinstance(seen["after"], OSError)
    assert seen["eof_after_s"] < 10
    with pytest.raises(CallAbandonedError):
        pool.acquire()
    with pytest.raises(CallAbandonedError):
        pool.pause(5.0)
    listener.close()
