"""TEST DOUBLE of the ``vllm serve`` process: what the deployer's lifecycle code sees of vLLM, with no GPU.

It takes vLLM's argv, prints it (JSON) to its log, starts a worker child as vLLM starts its engine
process, and only after a start-up delay listens for ``/health`` and ``/v1/models``, so a caller
that does not wait for readiness is caught. SIGTERM is logged and ends it. It generates nothing.
Standard library only: it runs under any interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTUP_DELAY_S = 1.0


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def served_name(argv: list[str]) -> str:
    lora = option(argv, "--lora-modules")
    return lora.split("=", 1)[0] if lora else option(argv, "--served-model-name") or argv[1]


def main() -> None:
    argv = sys.argv[1:]
    print("argv " + json.dumps(argv), flush=True)
    exit_code = option(argv, "--double-exit-code")
    if exit_code is not None:
        print("RuntimeError: CUDA out of memory (double)", flush=True)
        sys.exit(int(exit_code))
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"worker {worker.pid}", flush=True)

    def on_term(signum: int, frame: object) -> None:
        print("SIGTERM", flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    time.sleep(STARTUP_DELAY_S)
    name = served_name(argv)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                body = b""
            elif self.path == "/v1/models":
                body = json.dumps({"object": "list", "data": [{"id": name, "object": "model"}]}).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((option(argv, "--host") or "127.0.0.1", int(option(argv, "--port") or 8000)), Handler)
    print(f"listening {time.time()}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
