#!/usr/bin/env python3
"""Schemathesis against a running `kiln serve`, from the server's own GET /openapi.json: a
bounded number of generated requests per operation (valid and invalid), checked for no 5xx, only
documented status codes and content types, and every body (errors included) in its documented
schema. Afterwards the server must still be alive and answer /healthz: no crash, no hang.

Generated requests never carry a `webhook` (the hooks drop the field before it is sent), and
Kiln runs with every proxy variable pointing at a closed loopback port, so that nothing else it
might fetch leaves this machine.

Usage: schemathesis_test.py KILN_BINARY MODELS_DIR [MAX_EXAMPLES]
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from kiln_server import KilnServer  # noqa: E402

CHECKS = ",".join(["not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_schema_conformance"])


def main():
    kiln, models = sys.argv[1], sys.argv[2]
    examples = sys.argv[3] if len(sys.argv) > 3 else "25"
    dead_proxy = "http://127.0.0.1:9"
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY"):
        os.environ[var] = dead_proxy
    for var in ("no_proxy", "NO_PROXY"):
        os.environ.pop(var, None)
    schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    with KilnServer(kiln, models) as server:
        env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
                   PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
        # Schemathesis itself talks only to the server: no proxy for it.
        for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                    "ALL_PROXY"):
            env.pop(var, None)
        # One worker: with two, Hypothesis' shared caches once failed a run from inside
        # schemathesis (a KeyError in its strategy cache, "Inconsistent results").
        cmd = [schemathesis, "--no-color", "run", server.url + "/openapi.json", "--checks", CHECKS,
               "--max-examples", examples, "--seed", "20261128", "--workers", "1",
               "--request-timeout", "60", "--phases", "examples,coverage,fuzzing,stateful",
               "--suppress-health-check", "all"]
        print(" ".join(cmd), flush=True)
        try:
            # In a scratch folder: schemathesis keeps a cache (.schemathesis/) where it runs.
            with tempfile.TemporaryDirectory(prefix="kiln-schemathesis-") as scratch:
                rc = subprocess.run(cmd, env=env, cwd=scratch, timeout=1200).returncode
        except subprocess.TimeoutExpired:
            print("FAIL: schemathesis did not finish in 20 minutes (a hang?)")
            rc = 1
        alive = server.proc.poll() is None
        healthy = False
        if alive:
            try:
                healthy = server.get("/healthz") == 200
            except OSError as e:
                print(f"/healthz after the run: {e}")
        if not (alive and healthy) or rc != 0:
            print("--- server log ---\n" + server.tail())
    if not alive:
        print("FAIL: the server died during the run")
        return 1
    if not healthy:
        print("FAIL: the server does not answer /healthz after the run")
        return 1
    if rc != 0:
        print(f"FAIL: schemathesis exited with {rc}")
        return 1
    print("schemathesis: no failures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
