#!/usr/bin/env python3
"""Time to resume an edited conversation on a hybrid (Mamba2) model.

Sends one long chat conversation (TURNS user/assistant pairs of about WORDS
words each) to a running `moeserve serve`, then the same conversation with
its EDIT-th user message changed, and reports for each request the prompt
tokens, how many came from the cache (`timings.cache_n`) and the time to the
answer's first token. Run it against a server started with and without the
checkpoint ladder (`--checkpoint-min-step N` with the default
`--ctx-checkpoints 32`, against `--ctx-checkpoints 4`) to see what the
snapshots at message starts save when an agent edits or compacts its history.

Standard library only:  bench/checkpoint_ladder.py --url http://127.0.0.1:8080
"""
import argparse
import json
import time
import urllib.request

WORDS = ["river", "stone", "light", "garden", "paper", "window", "cloud", "music",
         "winter", "bridge", "forest", "candle", "silver", "market", "harbor", "letter"]


def text(seed, n):
    return " ".join(WORDS[(i * 7 + seed) % len(WORDS)] for i in range(n))


def chat(url, messages):
    body = json.dumps({"messages": messages, "max_tokens": 1, "temperature": 0}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=3600) as r:
        answer = json.load(r)
    seconds = time.monotonic() - t0
    t = answer["timings"]
    return {"prompt": t["prompt_n"] + t["cache_n"], "cached": t["cache_n"], "evaluated": t["prompt_n"],
            "seconds": round(seconds, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--edit", type=int, default=3, help="the user message to change (1 = the first)")
    a = ap.parse_args()
    messages = [{"role": "system", "content": "You are a careful assistant. " + text(0, a.words)}]
    for turn in range(a.turns):
        messages.append({"role": "user", "content": f"Question {turn}: " + text(turn + 1, a.words)})
        messages.append({"role": "assistant", "content": text(turn + 2, a.words)})
    messages.append({"role": "user", "content": "And now?"})
    first = chat(a.url, messages)
    edited = json.loads(json.dumps(messages))
    edited[1 + 2 * (a.edit - 1)]["content"] = f"Question {a.edit - 1} (edited): " + text(99, a.words)
    again = chat(a.url, edited)
    print(json.dumps({"conversation": first, "edited": again}))


if __name__ == "__main__":
    main()
