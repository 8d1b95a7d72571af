"""A `kiln serve` for a Python test: on 127.0.0.1, on a port the server picks itself (--port 0,
read back from its "listening" log line), with its own data folder; always stopped (SIGTERM, then
SIGKILL) when the `with` block ends. The log is kept for the test's failure messages."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

# Straight to the server, whatever proxy variables the environment (or a test) sets.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class KilnServer:
    def __init__(self, kiln, models, *extra_args, start_timeout=90):
        self.kiln, self.models, self.extra_args = kiln, models, list(extra_args)
        self.start_timeout = start_timeout
        self.proc = None
        self.data = None
        self.log = []
        self.url = None
        self._listening = threading.Event()

    def __enter__(self):
        self.data = tempfile.mkdtemp(prefix="kiln-e2e-")
        cmd = [self.kiln, "serve", "--host", "127.0.0.1", "--port", "0", "--models", self.models,
               "--data", self.data, "--log-level", "info", *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _read(self):
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))
            del self.log[:-400]
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("msg") == "listening" and not self.url:
                self.url = record["url"]
                self._listening.set()

    def _wait_ready(self):
        deadline = time.monotonic() + self.start_timeout
        while not self._listening.wait(0.2):
            if self.proc.poll() is not None:
                raise RuntimeError("kiln exited before listening:\n" + self.tail())
            if time.monotonic() > deadline:
                raise RuntimeError("kiln did not start listening:\n" + self.tail())
        while True:  # the models warm up before /readyz says 200
            try:
                if self.get("/readyz") == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("kiln exited before it was ready:\n" + self.tail())
            if time.monotonic() > deadline:
                raise RuntimeError("kiln was not ready in time:\n" + self.tail())
            time.sleep(0.1)

    def get(self, path, timeout=10):
        """The status of GET `path` (raises OSError when the server does not answer)."""
        try:
            with _DIRECT.open(self.url + path, timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def tail(self, lines=60):
        return "\n".join(self.log[-lines:])

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1])

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.data:
            shutil.rmtree(self.data, ignore_errors=True)
        return False
