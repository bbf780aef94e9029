"""kill -9 a generation midway, run it again: only the unfinished calls are made, none is lost."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd

from .scripted_server import ScriptedLLMServer

N_CALLS = 12  # simprompt, 24 samples, 2 per call

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from synalign_kedro.core.generation import MethodConfig, generate_pool, merge_prompts
    from synalign_kedro.core.llm_client import LLMClient, LLMSettings, cache_identity, open_cache
    from synalign_kedro.core.llm_server import Endpoint

    url, cache_dir, out = sys.argv[1:4]
    llm = {"model": "scripted", "base_url": url, "structured_output": "json_object", "cache_dir": cache_dir,
           "show_progress": False, "backoff_initial_s": 0.01}
    settings = LLMSettings.model_validate(llm)
    identity = cache_identity(settings)
    client = LLMClient(settings, identity, lambda: Endpoint(url, "scripted", identity), open_cache(settings))
    prompts = merge_prompts({
        "stage1": "-", "stage2": "-", "one_stage": "-", "attrprompt": "-", "attribute_values": "-", "reask": "{error}", "feedback_guidance": "{guidance}",
        "simprompt": 'Write exactly {n} {label} {domain} texts as {json_format}',
    }, None)
    real = pd.DataFrame({"text": ["good film", "bad film"], "label": ["positive", "negative"]})
    profile = {"domain": "movie review", "labels": {"positive": "good", "negative": "bad"}}
    pool, report = generate_pool(client, MethodConfig(method="simprompt", n_samples=24, n_per_call=2), prompts, profile, real, None)
    pool.to_parquet(out)
    print(json.dumps({"calls": report["calls"], "cache_hits": report["cache_hits"]}))
    """
)


def run_script(script, server, cache_dir, out) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), server.url, str(cache_dir), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DO_NOT_TRACK": "true"},
    )


def cached_prompts(cache_dir) -> set[str]:
    with sqlite3.connect(cache_dir / "llm_calls.sqlite") as connection:
        rows = connection.execute("SELECT request FROM calls").fetchall()
    return {request_key(json.loads(r[0])["messages"], json.loads(r[0])["sampling"]["seed"]) for r in rows}


def request_key(messages, seed) -> str:
    return json.dumps([messages, seed], sort_keys=True)


def test_killed_generation_resumes_with_only_the_unfinished_calls(tmp_path):
    script = tmp_path / "generate.py"
    script.write_text(SCRIPT)
    cache_dir = tmp_path / "cache"
    with ScriptedLLMServer(delay=0.25) as server:
        first = run_script(script, server, cache_dir, tmp_path / "pool1.parquet")
        deadline = time.monotonic() + 60
        while server.n_calls < 5 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert first.returncode == -signal.SIGKILL, first.stderr.read()
        time.sleep(0.5)  # let the in-flight request (if any) reach the server
        calls_before_kill = server.n_calls
        finished = cached_prompts(cache_dir)
        assert 4 <= len(finished) < N_CALLS
        assert calls_before_kill - len(finished) in (0, 1)  # at most the in-flight call was lost

        second = run_script(script, server, cache_dir, tmp_path / "pool2.parquet")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        new_calls = server.calls[calls_before_kill:]
        assert len(new_calls) == N_CALLS - len(finished)
        assert not {request_key(c["messages"], c["seed"]) for c in new_calls} & finished
        assert json.loads(out.strip().splitlines()[-1]) == {
            "calls": N_CALLS - len(finished),
            "cache_hits": len(finished),
        }

        third = run_script(script, server, cache_dir, tmp_path / "pool3.parquet")
        out3, err3 = third.communicate(timeout=120)
        assert third.returncode == 0, err3
        assert server.n_calls == calls_before_kill + len(new_calls)  # a full re-run makes no call

    pool2 = pd.read_parquet(tmp_path / "pool2.parquet")
    pool3 = pd.read_parquet(tmp_path / "pool3.parquet")
    assert len(pool2) == 24 and pool2.equals(pool3)
