"""`labs start` for real: JupyterLab on loopback serves the student's notebook, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.test_cli_student import STARTER_CELLS, make_demo_pack

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 60  # JupyterLab starts in 2-5 s on an idle laptop, 10-20 s on a loaded 2-core runner
STOP_TIMEOUT_S = 15


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _wait_for_server_file(runtime: Path, process: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for path in runtime.glob("jpserver-*.json"):
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:  # being written
                pass
        if process.poll() is not None:
            pytest.fail(f"`labs start` exited with {process.returncode} before the server was up:\n{log.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"JupyterLab wrote no server file in {runtime} within {START_TIMEOUT_S} s")


def _get(url: str, token: str | None = None) -> tuple[int, dict | None]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


@pytest.mark.skipif(sys.platform == "win32", reason="signals and /proc are POSIX")
def test_start_serves_the_notebook_on_loopback_and_stops_without_leftovers(tmp_path):
    pack = make_demo_pack(tmp_path / "pack")
    workspace = tmp_path / "ws"
    runtime = tmp_path / "jupyter-runtime"
    env = {
        **os.environ,
        "GAPLABS_LABS_PATH": str(pack),
        "GAPLABS_WORKSPACE": str(workspace),
        "JUPYTER_RUNTIME_DIR": str(runtime),  # the server file lands where the test can find it
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),  # no user settings or workspaces touched
    }
    port = _free_port()
    command = [sys.executable, "-m", "cli", "start", "demo-lab", "--no-browser", "--port", str(port)]
    log = tmp_path / "labs-start.log"  # a file, not a pipe: nobody reads a pipe while the server runs, and it could fill
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   cwd=Path(__file__).resolve().parent.parent)
    server_pid = None
    try:
        server = _wait_for_server_file(runtime, process, log)
        server_pid = server["pid"]
        assert server["hostname"] == "127.0.0.1" and server["port"] == port, server
        assert Path(server["root_dir"]) == workspace / "demo-lab", "the server is rooted at the lab's folder"
        base = f"http://127.0.0.1:{port}"

        status, _ = _get(f"{base}/api/contents/demo-lab.ipynb")
        assert status in (401, 403), f"without the token the API must refuse, got HTTP {status}"
        status, model = _get(f"{base}/api/contents/demo-lab.ipynb?content=1", server["token"])
        assert status == 200 and model["type"] == "notebook" and model["name"] == "demo-lab.ipynb"
        sources = [cell["source"] for cell in model["content"]["cells"]]
        assert sources == STARTER_CELLS, "the server must serve the student's copy of the starter"
        status, listing = _get(f"{base}/api/contents?content=1", server["token"])
        assert {"demo-lab.ipynb", "helper.py"} <= {item["name"] for item in listing["content"]}

        process.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        assert process.wait(timeout=STOP_TIMEOUT_S) in (0, 130), log.read_text()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server_pid), "the Jupyter server outlived `labs start`"
        assert not list(runtime.glob("jpserver-*.json")), "the server did not shut down cleanly"
        assert nbformat.read(workspace / "demo-lab" / "demo-lab.ipynb", as_version=4).cells[1].source == STARTER_CELLS[1]
    finally:
        for pid in (process.pid, server_pid):  # only the processes this test started
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)
