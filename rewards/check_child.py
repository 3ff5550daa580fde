"""The child process that runs ``answers_match`` for ``rewards.sandbox``.

Protocol: one JSON object per line. The child first writes ``{"ready": true}``; then for
each request ``{"answer", "gold", "rel_tol", "pi_numeric"}`` it writes either
``{"match": bool}`` or ``{"error": "parse_error", "detail": str}``. Anything a library
prints goes to stderr, so stdout carries only the protocol.
"""

from __future__ import annotations

import json
import os
import resource
import sys

# sympy can try to build 10^(10^10) digits: cap the address space so that becomes a
# MemoryError (a parse error) instead of swapping the machine before the parent kills us.
MEMORY_LIMIT_BYTES = int(os.environ.get("BPPO_REWARD_CHILD_MEMORY_BYTES", 3 * 2**30))


def main() -> None:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ValueError, OSError):
        pass  # a hard limit already below ours: keep it
    sys.setrecursionlimit(5000)

    from rewards.equivalence import UnparsableAnswer, answers_match

    answers_match("1", "\\frac{2}{2}\\sqrt{1}")  # warm up math-verify's parser before "ready"
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            match = answers_match(
                request["answer"], request["gold"],
                rel_tol=request["rel_tol"], pi_numeric=request["pi_numeric"],
            )
            reply = {"match": bool(match)}
        except (UnparsableAnswer, MemoryError, RecursionError, Exception) as error:  # noqa: BLE001
            # Untrusted text can make any parser raise anything: it is a parse error, never a crash.
            reply = {"error": "parse_error", "detail": f"{type(error).__name__}: {error}"[:300]}
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
