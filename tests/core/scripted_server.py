"""A tiny scripted OpenAI-compatible chat server for tests (never used by the product).

Each POST to ``/v1/chat/completions`` takes its action from ``route(body)`` when that is set and returns one,
else the next action from ``script`` (then ``default``). ``script`` goes by arrival order, which threads of a
concurrent client do not keep; a test that needs a given task to get a given answer routes by the request.

- ``"ok"``: a valid answer built from the request (the ``response_format`` schema when present, else the
  prompt): ``{"samples": [...]}`` with the asked number of distinct texts, ``{"values": [...]}``, or an
  attribute summary with every schema property filled, or ``{"labels": [...]}`` (the schema's allowed labels in
  turn);
- ``"follow"``: like ``"ok"``, but samples start with what a feedback prompt says is missing;
- ``"garbage"`` (no JSON), ``"truncated"`` (JSON cut in the middle, as a server cuts an answer at the request's
  ``max_tokens``: that many completion tokens, finish_reason ``length``), ``"empty"`` (empty content),
  ``"few"`` (one sample only), ``"copy"`` (copies a demonstration text from the prompt verbatim);
- ``"loop"``: a samples answer that writes its first sample again and again (a small model's loop), each
  repeat long, so an answer stopped at the first repeat saves most of it;
- ``"badstream"``: a streamed answer whose second event is not JSON (an ordinary answer when not streamed);
- ``"429"`` / ``"500"``: that HTTP status; ``"stall"``: sleeps ``stall_seconds`` before answering ok
  (longer than the client's timeout); ``"close"``: drops the connection without answering;
- transport-level garbage with HTTP 200: ``"nochoices"`` (``{"choices": []}``), ``"plaintext"`` (a
  text/plain body), ``"badjson"`` (a JSON content type with a body that is not JSON), ``"notopenai"``
  (JSON that is not a chat completion).

:meth:`ScriptedLLMServer.kill` makes the server die mid-run: requests in flight get their connection
dropped and the port stops listening.

A request with ``"stream": true`` gets its answer as server-sent events of ``stream_piece`` characters each,
``stream_delay`` seconds apart, then a usage event (``stream_options.include_usage``) and ``[DONE]``; with
``"timings_per_token": true`` every event carries llama-server's ``timings`` (``cache_n``, ``prompt_n``,
``predicted_n``). ``stream_events`` records, per streamed request, how many content events were written before
the answer ended or the client left (``stream_left``: how many streams the client left early).

Every request body is recorded in ``calls`` (in arrival order) so tests can count calls.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


def valid_answer(body: dict) -> str:
    """A well-formed answer to ``body`` (deterministic: the same request gets the same answer)."""
    messages = body.get("messages", [])
    digest = _digest([messages, body.get("seed")])
    schema = (body.get("response_format") or {}).get("schema") or (
        (body.get("response_format") or {}).get("json_schema") or {}
    ).get("schema")
    if schema:
        properties = schema.get("properties", {})
        if "labels" in properties:  # zero-shot classification: the allowed labels in turn, one per text
            allowed, n = properties["labels"]["items"]["enum"], properties["labels"]["minItems"]
            return json.dumps({"labels": [allowed[i % len(allowed)] for i in range(n)]})
        if "samples" in properties or "values" in properties:
            key = "samples" if "samples" in properties else "values"
            n = properties[key].get("minItems", 3)
            return json.dumps({key: [f"scripted {key} {i} of request {digest} is fine" for i in range(n)]})
        return json.dumps({name: f"scripted description of {name.replace('_', ' ')}" for name in properties})
    # plain mode: read what is asked from the prompt
    all_text = " ".join(m["content"] for m in messages)
    n = int(m.group(1)) if (m := re.search(r"exactly (\d+)", all_text)) else 3
    if '"samples"' in all_text:
        return (
            "Sure! Here you go:\n```json\n"
            + json.dumps({"samples": [f"scripted sample {i} of request {digest} is fine" for i in range(n)]})
            + "\n```"
        )
    keys = re.findall(r'"(\w+)": "<', all_text)
    return json.dumps({k: f"scripted description of {k}" for k in keys})


def following_answer(body: dict) -> str:
    """Like :func:`valid_answer`, but a samples answer starts each text with what the prompt says is missing
    (``prompts.feedback_guidance``'s "too few of this kind: ..."): an LLM that does what it is asked."""
    answer = valid_answer(body)
    prompt = " ".join(m["content"] for m in body.get("messages", []))
    missing = re.search(r"too few of this kind: (.*?)\.\n", prompt)
    if missing is None or '"samples"' not in answer:
        return answer
    samples = json.loads(answer)["samples"]
    return json.dumps({"samples": [f"{missing.group(1)}: {text}" for text in samples]})


def _loop_answer(body: dict) -> str:
    """``{"samples": [...]}`` with the asked number of items, every one after the first a repeat of it."""
    schema = (body.get("response_format") or {}).get("schema") or {}
    n = schema.get("properties", {}).get("samples", {}).get("minItems", 3)
    text = "a scripted sample that the model will write again and again, " * 3
    return json.dumps({"samples": [text.strip()] * n})


def _first_demonstration(body: dict) -> str:
    for message in body.get("messages", []):
        if (m := re.search(r'"text": "((?:[^"\\]|\\.)*)"', message["content"])) is not None:
            return json.loads(f'"{m.group(1)}"')
    return "no demonstration in the prompt"


class ScriptedLLMServer:
    def __init__(
        self,
        script: list[str] | None = None,
        default: str = "ok",
        stall_seconds: float = 5.0,
        delay: float = 0.0,
        route: Callable[[dict], str | None] | None = None,
    ):
        self.script = list(script or [])
        self.route = route
        self.default = default
        self.stall_seconds = stall_seconds
        self.delay = delay
        self.calls: list[dict] = []
        self.actions: list[str] = []
        self.answered: list[dict] = []  # bodies of the requests that got a chat completion
        self.dead = False
        # when set, every answer's usage says this many prompt tokens came from the server's prompt cache
        # (usage.prompt_tokens_details.cached_tokens, as llama-server, vLLM and OpenAI report it)
        self.cached_prompt_tokens: int | None = None
        self.in_flight = 0
        self.stream_piece = 4
        self.stream_delay = 0.0
        self.stream_events: list[int] = []
        self.stream_left = 0
        self.max_in_flight = 0  # most requests handled at once
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # /v1/models
                self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.calls.append(body)
                    action = server.route(body) if server.route else None
                    if action is None:
                        action = server.script.pop(0) if server.script else server.default
                    server.actions.append(action)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                self._counted = True
                try:
                    self._answer(body, action)
                finally:
                    self._leave()

            def _leave(self) -> None:
                # A request stops counting as in flight before its answer is written: once the client has the
                # answer it may send its next request at once, which must not be counted as concurrent.
                if getattr(self, "_counted", False):
                    self._counted = False
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, body: dict, action: str) -> None:
                if server.delay:
                    time.sleep(server.delay)
                if server.dead:  # killed while this request was in flight
                    self.close_connection = True
                    self.connection.close()
                    return
                raw = {
                    "nochoices": ("application/json", json.dumps({"choices": []}).encode()),
                    "plaintext": ("text/plain; charset=utf-8", b"Internal proxy page: upstream is sleeping"),
                    "badjson": ("application/json", b"<html><body>Bad gateway</body></html>"),
                    "notopenai": ("application/json", json.dumps({"result": "hello", "status": "ok"}).encode()),
                }.get(action)
                if raw is not None:
                    self._send_raw(200, *raw)
                    return
                if action in ("429", "500", "503"):
                    self._send(
                        int(action), {"error": {"message": f"scripted {action}", "type": "server_error"}}
                    )
                    return
                if action == "close":
                    self.close_connection = True
                    self.connection.close()
                    return
                if action == "stall":
                    time.sleep(server.stall_seconds)
                content = {
                    "ok": lambda: valid_answer(body),
                    "follow": lambda: following_answer(body),
                    "stall": lambda: valid_answer(body),
                    "garbage": lambda: "I am sorry, I cannot help with that. Here are some thoughts instead.",
                    "truncated": lambda: valid_answer(body)[: max(5, len(valid_answer(body)) // 2)],
                    "empty": lambda: "",
                    "few": lambda: json.dumps({"samples": ["only one scripted sample here"]}),
                    "loop": lambda: _loop_answer(body),
                    "badstream": lambda: valid_answer(body),
                    "copy": lambda: json.dumps(
                        {
                            "samples": [_first_demonstration(body)] * 1
                            + [f"fresh scripted text {i} here" for i in range(20)]
                        }
                    ),
                }[action]()
                completion_tokens = max(1, len(content) // 4)
                if action == "truncated" and body.get("max_tokens"):
                    completion_tokens = int(body["max_tokens"])
                with server._lock:
                    if server.dead:
                        self.close_connection = True
                        self.connection.close()
                        return
                    server.answered.append(body)
                if body.get("stream"):
                    self._stream(body, content, action)
                    return
                self._send(
                    200,
                    {
                        "id": "chatcmpl-scripted",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "scripted"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "length" if action == "truncated" else "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 10,
                            "completion_tokens": completion_tokens,
                            "total_tokens": 10 + completion_tokens,
                            **(
                                {"prompt_tokens_details": {"cached_tokens": server.cached_prompt_tokens}}
                                if server.cached_prompt_tokens is not None
                                else {}
                            ),
                        },
                    },
                )

            def _stream(self, body: dict, content: str, action: str) -> None:
                self._leave()
                pieces = [content[i : i + server.stream_piece] for i in range(0, len(content), server.stream_piece)]
                written = 0
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for index, piece in enumerate(pieces):
                        if action == "badstream" and index == 1:
                            self.wfile.write(b"data: {not json\n\n")
                            self.wfile.flush()
                            break
                        event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                        if body.get("timings_per_token"):
                            event["timings"] = {"cache_n": 4, "prompt_n": 6, "predicted_n": index + 1}
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                        written += 1
                        time.sleep(server.stream_delay)
                    else:
                        usage = {"prompt_tokens": 10, "completion_tokens": len(pieces), "total_tokens": 10 + len(pieces)}
                        self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
                        self.wfile.write(b"data: [DONE]\n\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:
                        server.stream_left += 1
                finally:
                    with server._lock:
                        server.stream_events.append(written)
                self.close_connection = True

            def _send(self, status: int, payload: dict) -> None:
                self._send_raw(status, "application/json", json.dumps(payload).encode())

            def _send_raw(self, status: int, content_type: str, data: bytes) -> None:
                self._leave()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def n_calls(self) -> int:
        with self._lock:
            return len(self.calls)

    def start(self) -> ScriptedLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.httpd.shutdown()
        self.httpd.server_close()

    def kill(self) -> None:
        """Die: requests in flight lose their connection, new ones are refused."""
        with self._lock:
            self.dead = True
        self.stop()

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # manual use: python tests/core/scripted_server.py
    with ScriptedLLMServer() as s:
        print(s.url, flush=True)
        threading.Event().wait()
