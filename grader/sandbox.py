"""Submission processes: forked from a clean zygote, contained by namespaces and limits, killed whole.

Process tree of one grading run (Linux):

    grading process (trusted: runs pytest and the checks)
     └─ zygote: forked before any check loads or CUDA starts; forks one submission process per request
         └─ keeper: sets limits, then (when the kernel allows it) enters new user, PID and mount
             │     namespaces; reports the submission's pid and waits for it
             └─ submission (PID 1 of its own PID namespace): runs the student's code

Why a zygote: a process that has initialised CUDA cannot fork children that use CUDA, and a fresh
interpreter would pay the torch import (about 1 s) again for every submission. Forking from the
zygote shares the already imported torch copy-on-write, so a submission process costs milliseconds
and little memory.

Containment, strongest first: in its own PID namespace the submission cannot see or signal the
grader, and every process it starts dies with it (the kernel kills a namespace when its PID 1
exits); in its own mount namespace the hidden checks, mutants and solutions are covered by empty
tmpfs mounts. Where user namespaces are not allowed (some CI hosts), the submission gets its own
session and process group instead, the zygote becomes a child subreaper so that processes which
detach are reparented to it, and everything left is killed when grading ends. Both ways:
RLIMIT_AS (CPU runs), RLIMIT_CORE=0, RLIMIT_CPU, a memory watchdog on the grading side, and
PR_SET_PDEATHSIG so nothing outlives the grader if it is killed itself.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    return _c().prctl(option, value, 0, 0, 0) == 0


def make_undumpable() -> None:
    """No ptrace and no /proc/<pid>/mem for other processes of the same user (Linux)."""
    _prctl(PR_SET_DUMPABLE, 0)


def _make_dumpable() -> None:
    _prctl(PR_SET_DUMPABLE, 1)


@dataclass
class WorkerSpec:
    """What a submission process needs: where to run, what to hide, how much it may use."""

    workdir: str
    device: str = "cpu"
    memory_mb: int = 4096
    cpu_seconds: int = 600
    num_threads: int | None = None
    hide: list[str] = field(default_factory=list)
    isolate: bool = True  # try namespaces; False forces the fallback (used by tests)


@dataclass
class WorkerProcess:
    """A running submission process as the grading side sees it."""

    sock: socket.socket
    output_fd: int
    pid: int  # the submission itself (in the grader's PID namespace)
    keeper_pid: int
    isolation: str  # "namespaces" or "process-group"

    def alive(self) -> bool:
        return _alive(self.pid)

    def rss_bytes(self) -> int:
        try:
            with open(f"/proc/{self.pid}/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def kill(self) -> None:
        for target in (self.pid, self.keeper_pid):
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:  # the fallback's process group (the keeper called setsid, so its pid is the group id)
            os.killpg(self.keeper_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        if sys.platform.startswith("linux"):
            return False
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def descendants(root: int) -> list[int]:
    """Every living process below `root`, found by walking /proc (Linux)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_descendants(root: int, rounds: int = 20) -> int:
    """SIGKILL everything below `root` until nothing is left (a fork storm may refill the tree)."""
    killed = 0
    for _ in range(rounds):
        pids = [pid for pid in descendants(root) if _alive(pid)]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        _reap_children()
        time.sleep(0.01)
    return killed


def _reap_children(statuses: dict[int, int] | None = None) -> None:
    """Reap every exited child without blocking, recording exit codes in `statuses` when given."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if statuses is not None:
            statuses[pid] = os.waitstatus_to_exitcode(status)


# -- namespaces (Linux) ------------------------------------------------------------------------
def _enter_namespaces() -> bool:
    """Unshare user, PID and mount namespaces, mapping our uid/gid; False when not allowed."""
    if not sys.platform.startswith("linux"):
        return False
    uid, gid = os.getuid(), os.getgid()
    if _c().unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS) != 0:
        return False
    try:
        with open("/proc/self/setgroups", "w") as handle:
            handle.write("deny")
        with open("/proc/self/uid_map", "w") as handle:
            handle.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as handle:
            handle.write(f"{gid} {gid} 1")
    except OSError:
        return False
    return True


_SYS_MOUNT_SETATTR = 442  # the same number on x86_64 and arm64 (the generic syscall table)
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
MS_BIND = 4096
MS_RDONLY = 1


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _mount(source: bytes | None, target: str, fstype: bytes | None, flags: int, data: bytes | None) -> bool:
    mount = _c().mount
    mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return mount(source, target.encode(), fstype, flags, data) == 0


def _set_readonly(path: str, readonly: bool, recursive: bool) -> bool:
    attr = _MountAttr(_MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else _MOUNT_ATTR_RDONLY, 0, 0)
    syscall = _c().syscall
    syscall.restype = ctypes.c_long
    result = syscall(ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(_AT_FDCWD), ctypes.c_char_p(path.encode()),
                     ctypes.c_uint(_AT_RECURSIVE if recursive else 0), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    return result == 0


def _confine_filesystem(spec: WorkerSpec) -> str:
    """Inside the private mount namespace: everything read-only but the working folder and
    /dev/shm, the hidden paths covered, and a /proc that shows only the submission's processes.

    Returns a word for the report: "read-only" when the whole tree could be made read-only (Linux
    5.12+), "hidden-only" when only the hidden paths could be covered.
    """
    if not _mount(None, "/", None, MS_REC | MS_PRIVATE, None):
        return "none"
    for path in spec.hide:
        if os.path.isdir(path):
            _mount(b"tmpfs", path, b"tmpfs", MS_RDONLY, b"size=4k,mode=000")
    os.makedirs(os.path.join(spec.workdir, ".tmp"), exist_ok=True)
    level = "hidden-only"
    if _mount(spec.workdir.encode(), spec.workdir, None, MS_BIND, None) and _set_readonly("/", True, recursive=True):
        level = "read-only"
        _set_readonly(spec.workdir, False, recursive=False)
        if os.path.ismount("/dev/shm"):  # torch.multiprocessing shares tensors through it
            _set_readonly("/dev/shm", False, recursive=False)
    # Only the submission's own processes in /proc: the grader's command line and descriptors
    # (the report path, its pipes) are out of sight.
    _mount(b"proc", "/proc", b"proc", 0, None)
    return level


def _close_fds(keep: set[int]) -> None:
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _limit_self(spec: WorkerSpec) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        # Each thread's malloc arena reserves 64 MB of address space; on a many-core GPU host that
        # alone would eat the allowance below. Two arenas serve a grading process well.
        _c().mallopt(-8, 2)  # M_ARENA_MAX
    resource.setrlimit(resource.RLIMIT_CPU, (spec.cpu_seconds, spec.cpu_seconds + 5))
    if spec.device == "cpu" and sys.platform.startswith("linux"):
        # Address space = what the zygote already maps (torch's libraries) + the lab's allowance.
        # CUDA reserves huge virtual ranges, so on CUDA the grading side's RSS watchdog does this job.
        with open("/proc/self/statm") as handle:
            mapped = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = mapped + spec.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _become_submission(sock: socket.socket, out_w: int, spec: WorkerSpec, isolated: bool) -> None:
    """Final set-up inside the submission process, then serve requests; never returns."""
    code = 0
    try:
        if isolated:
            _confine_filesystem(spec)
        # tempfile works under a read-only /tmp (and forgets the folder the grader had cached).
        os.makedirs(os.path.join(spec.workdir, ".tmp"), exist_ok=True)
        os.environ["TMPDIR"] = os.path.join(spec.workdir, ".tmp")
        import tempfile

        tempfile.tempdir = None
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        _close_fds({sock.fileno()})
        # The parent's sys.stdout may be a wrapper around another descriptor (pytest's capture,
        # a rich console): rebind the Python streams to the descriptors just set up.
        sys.stdin = sys.__stdin__ = open(0, closefd=False)
        sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, closefd=False, errors="replace")
        sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False, errors="replace")
        os.chdir(spec.workdir)
        _limit_self(spec)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from grader.worker import serve_submission

        serve_submission(sock, spec.device, spec.num_threads)
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _keeper(sock: socket.socket, out_w: int, info_w: int, spec: WorkerSpec) -> None:
    """The submission's parent: enters namespaces, forks the submission, reports its pid, waits."""
    status_code = 71
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # The grading processes are non-dumpable (no ptrace by the same user); this process must be
        # dumpable again, or the kernel will not let it write its own uid_map.
        _make_dumpable()
        os.setsid()
        isolated = spec.isolate and _enter_namespaces()
        if not isolated:
            os.write(info_w, json.dumps({"pid": os.getpid(), "isolation": "process-group"}).encode())
            os.close(info_w)
            _become_submission(sock, out_w, spec, isolated=False)
        pid = os.fork()
        if pid == 0:
            os.close(info_w)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            _become_submission(sock, out_w, spec, isolated=True)
        sock.close()
        os.close(out_w)
        os.write(info_w, json.dumps({"pid": pid, "isolation": "namespaces"}).encode())
        os.close(info_w)
        _, status = os.waitpid(pid, 0)
        status_code = os.waitstatus_to_exitcode(status)
        status_code = 128 - status_code if status_code < 0 else status_code
    except BaseException:
        pass
    os._exit(status_code & 0xFF)


# -- the zygote ----------------------------------------------------------------------------------
_REQUEST = struct.Struct("!I")


def _send_json(sock: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode()
    payload = _REQUEST.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [payload], fds)
    else:
        sock.sendall(payload)


def _recv_json(sock: socket.socket, want_fds: int = 0) -> tuple[dict | None, list[int]]:
    if want_fds:
        data, fds, _, _ = socket.recv_fds(sock, 1 << 16, want_fds)
    else:
        data, fds = sock.recv(1 << 16), []
    if not data:
        return None, fds
    (length,) = _REQUEST.unpack_from(data)
    body = data[_REQUEST.size:]
    while len(body) < length:
        more = sock.recv(length - len(body))
        if not more:
            return None, fds
        body += more
    return json.loads(body), list(fds)


def _zygote_loop(control: socket.socket) -> None:
    # Nothing the grading process holds (its report pipe, the terminal) may reach a submission.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    _close_fds({control.fileno()})
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    statuses: dict[int, int] = {}
    while True:
        request, _ = _recv_json(control)
        _reap_children(statuses)
        if request is None or request.get("op") == "exit":
            kill_descendants(os.getpid())
            os._exit(0)
        if request.get("op") == "status":
            pid = request["pid"]
            deadline = time.monotonic() + float(request.get("wait", 0.5))
            while pid not in statuses and time.monotonic() < deadline:
                time.sleep(0.01)
                _reap_children(statuses)
            _send_json(control, {"status": statuses.get(pid)})
            continue
        spec = WorkerSpec(**request["spec"])
        parent_end, child_end = socket.socketpair()
        out_r, out_w = os.pipe()
        info_r, info_w = os.pipe()
        keeper = os.fork()
        if keeper == 0:
            control.close()
            parent_end.close()
            os.close(out_r)
            os.close(info_r)
            _keeper(child_end, out_w, info_w, spec)
        child_end.close()
        os.close(out_w)
        os.close(info_w)
        info = b""
        while True:
            chunk = os.read(info_r, 4096)
            if not chunk:
                break
            info += chunk
        os.close(info_r)
        details = json.loads(info) if info else {"pid": keeper, "isolation": "unknown"}
        _send_json(control, {"keeper": keeper, **details}, fds=[parent_end.fileno(), out_r])
        parent_end.close()
        os.close(out_r)


class Zygote:
    """A forked copy of this (clean) process that forks submission processes on request."""

    def __init__(self) -> None:
        parent, child = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # keep the collector from copying the pages the fork shares
        pid = os.fork()
        if pid == 0:
            parent.close()
            try:
                _zygote_loop(child)
            finally:
                os._exit(0)
        child.close()
        self.pid = pid
        self.control = parent

    def spawn(self, spec: WorkerSpec) -> WorkerProcess:
        _send_json(self.control, {"op": "spawn", "spec": spec.__dict__})
        reply, fds = _recv_json(self.control, want_fds=2)
        if reply is None or len(fds) != 2:
            raise RuntimeError("the zygote did not answer a spawn request")
        sock = socket.socket(fileno=fds[0])
        return WorkerProcess(sock=sock, output_fd=fds[1], pid=reply["pid"], keeper_pid=reply["keeper"],
                             isolation=reply["isolation"])

    def exit_status(self, worker: WorkerProcess, wait: float = 0.5) -> int | None:
        """The keeper's exit code: the submission's own code, or 128+N when signal N killed it."""
        try:
            _send_json(self.control, {"op": "status", "pid": worker.keeper_pid, "wait": wait})
            reply, _ = _recv_json(self.control)
        except OSError:
            return None
        return None if reply is None else reply.get("status")

    def close(self) -> None:
        try:
            _send_json(self.control, {"op": "exit"})
        except OSError:
            pass
        self.control.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                return
            time.sleep(0.005)
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the submission process ended"
    if code >= 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"the submission process was killed by {name}"
    return f"the submission process exited with code {code}"

