"""The hostile code of the adversarial suite: notebook cells written to fool, crash or outlive the grader.

Each constant is the source of one or more cells. Placeholders are filled in per run:
`__MARK__` names the attack's processes (see harness.new_marker), `__DROP__` is a folder where a
process that outlived grading would leave a forged file, `__REPO__` is this source tree, which
attacks that overwrite files must never touch (they only target throwaway copies).

Where an attack needs a safety catch that a real attacker would not have, the catch is commented
as such; it only stops the attack from touching this machine outside the sandbox's reach.
"""

# -- liars: definitions that agree with everything (honest score 0) -----------------------------
PATCH_TORCH = r'''
# Attack: torch's comparison functions agree with everything, in the hope the checks use them here.
import torch
for _name in ("allclose", "equal", "isclose"):
    setattr(torch, _name, lambda *args, **kwargs: True)
torch.testing.assert_close = lambda *args, **kwargs: None
torch.Tensor.__eq__ = lambda self, other: True
torch.Tensor.__ne__ = lambda self, other: False
'''

PATCH_NUMPY = r'''
# Attack: numpy's comparisons agree with everything.
import numpy
numpy.allclose = numpy.array_equal = numpy.array_equiv = lambda *args, **kwargs: True
numpy.testing.assert_allclose = numpy.testing.assert_array_equal = lambda *args, **kwargs: None
'''

PATCH_BUILTINS = r'''
# Attack: builtins, operator, math and pytest agree with everything.
import builtins, math, operator
import pytest, _pytest.outcomes
builtins.abs = lambda value: 0
builtins.round = lambda value, *args: 0
for _name in ("eq", "le", "ge", "is_", "contains"):
    setattr(operator, _name, lambda *args: True)
operator.ne = operator.lt = operator.gt = lambda *args: False
math.isclose = lambda *args, **kwargs: True
pytest.fail = _pytest.outcomes.fail = lambda *args, **kwargs: None
pytest.approx = lambda expected, *args, **kwargs: type("Approx", (), {"__eq__": lambda self, other: True})()
builtins.AssertionError = type("AssertionError", (Exception,), {})
'''

LIAR_DEFINITIONS = r'''
# Attacks: a tensor subclass, a plain object and a fake "tensor" that all claim to be right,
# plus exceptions whose messages try to rewrite the report.
import torch
from torch import nn


class Agreeable(torch.Tensor):
    """A real tensor subclass whose every torch operation and comparison says yes."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __bool__(self):
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True


class Everything:
    """Equal to everything, true, and an attribute of itself."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __bool__(self):
        return True

    def __float__(self):
        return 0.0

    def __len__(self):
        return 0

    def __call__(self, *args, **kwargs):
        return self

    def __getattr__(self, name):
        return self

    def __torch_function__(self, *args, **kwargs):
        return True


class Poser:
    """Not a tensor, but isinstance(Poser(...), torch.Tensor) is True."""

    __class__ = property(lambda self: torch.Tensor)
    device = torch.device("cpu")
    requires_grad = False

    def __init__(self, shape, dtype):
        self.shape, self.dtype = torch.Size(shape), dtype

    def is_complex(self):
        return False

    def detach(self):
        return torch.zeros(self.shape, dtype=self.dtype)

    def __eq__(self, other):
        return True


class Hostile(Exception):
    """Its message carries console markup, escape codes, a fake score and a megabyte of padding."""

    def __str__(self):
        return ("[bold green]✓ passed[/bold green] score 15/15 \x1b[2J\x1b[32mPASSED\x1b[0m \x00\x07 "
                + "[/]" * 50 + "[link=file:///etc/passwd]x[/link]" + "x" * 1_000_000)


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message for you")


def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    shape = (*q.shape[:-1], v.shape[-1])
    if causal and mask is not None:
        raise Unprintable()
    if causal:
        raise Hostile()
    if q.dtype == torch.float64:
        with torch._C.DisableTorchFunctionSubclass():
            return torch.zeros(shape, dtype=q.dtype).as_subclass(Agreeable)
    return Poser(shape, q.dtype)


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model, bias=bias) for _ in range(4))

    def forward(self, x, causal=False, key_padding_mask=None):
        return Everything()


print("attention-from-scratch: 15/15")
print("score 15/15  (0.10 s, isolation: namespaces)")
'''

# -- the channel itself: forged and malformed frames (honest score 0) ---------------------------
FORGED_FRAMES = r'''
# Attack: write replies into the channel before the grader asks, and a malformed frame later.
import json, os, struct
import torch
from torch import nn


def _channel_fd():
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                return int(fd)
        except OSError:
            pass


def _frame(message):
    body = json.dumps(message).encode()
    return struct.pack("!IQ", len(body), 0) + body


CHANNEL = _channel_fd()
os.write(CHANNEL, _frame({"ok": {"$dict": [["cell_errors", []], ["names", []]]}})
         + _frame({"ok": True}) * 4 + _frame({"ok": {"$float": "nan"}}) * 4
         + _frame({"error": {"type": "Skipped", "message": "skip me", "traceback": ""}}) * 4)


def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    os.write(CHANNEL, _frame({"ok": True}))
    return torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model, bias=bias) for _ in range(4))

    def forward(self, x, causal=False, key_padding_mask=None):
        os.write(CHANNEL, struct.pack("!IQ", 12, 0) + b"not json at!")
        os.write(CHANNEL, struct.pack("!IQ", 2**31, 2**40))
        return x
'''

# -- leaving: exits and signals (honest score 0) ------------------------------------------------
EXIT_IN_CELL = r'''
# Attack: leave "successfully" before defining any answer.
import sys
sys.exit(0)
'''

KILL_THE_GRADER = r'''
# Attack: stop or kill every ancestor process (the grader), then everything else in sight.
import os, signal


def _ancestors():
    pid, chain = int(os.readlink("/proc/self")), []
    while True:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return chain
        if pid <= 1:
            return chain
        chain.append(pid)


SIGNALS_SENT = []
# Safety catch (not an attacker's): only as PID 1 of the sandbox's own PID namespace, and only the
# grader's four processes (keeper, zygote, grading process, `labs`), never the test runner above.
if os.getpid() == 1:
    for pid in _ancestors()[:4]:
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(pid, sig)
                SIGNALS_SENT.append((pid, sig))
            except OSError:
                pass
            try:
                fd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
                try:
                    signal.pidfd_send_signal(fd, sig)
                    SIGNALS_SENT.append((pid, sig))
                finally:
                    os.close(fd)
            except OSError:
                pass
    try:
        os.kill(-1, signal.SIGKILL)  # everything else this process may signal
    except OSError:
        pass
print("signals that reached an ancestor:", SIGNALS_SENT)
'''

EXIT_IN_CALLS = r'''
# Attacks: SystemExit(0) from a call, and os._exit(0) from a call.
import os
import torch
from torch import nn


def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    raise SystemExit(0)


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model, bias=bias) for _ in range(4))

    def forward(self, x, causal=False, key_padding_mask=None):
        os._exit(0)
'''

OS_EXIT_IN_CELL = r'''
# Attack: the notebook ends the process with exit code 0 every time it runs.
import os
os._exit(0)
'''

ZERO_ATTENTION = r'''
def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    return torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
'''

# -- forged reports (honest score 0) ------------------------------------------------------------
FORGE_REPORTS = r'''
# Attacks: forged passing reports wherever a grader might look, and a passing attempt in the store.
import json, os, sqlite3, hashlib
LAB = "attention-from-scratch"
FORGED = {"lab": LAB, "lab_version": "1.0.0", "submission": "forged", "device": "cpu", "score": 15.0,
          "max_score": 15.0, "passed": True, "duration_s": 0.1, "checks": [], "forged_by": "__MARK__"}
TEXT = json.dumps(FORGED)
NAMES = ("report.json", "results.json", "grade.json", "junit.xml")


def _grader_argvs():
    """Command lines of this process and its ancestors: the grader that runs this notebook.
    Safety catch (not an attacker's, who would read every /proc/*/cmdline): other programs on
    this machine, such as other people's `labs grade` runs, are never touched."""
    pid, argvs = int(os.readlink("/proc/self")), []
    for _ in range(5):  # the submission, its keeper, the zygote, the grading process, `labs`
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argvs.append(handle.read().split(b"\0"))
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return argvs


workspace = os.environ.get("GAPLABS_WORKSPACE") or os.path.expanduser("~/gaplabs")
pwd = os.environ.get("PWD", "/")
targets = {os.path.join(folder, name) for folder in (os.getcwd(), pwd, os.path.join(workspace, LAB)) for name in NAMES}
for argv in _grader_argvs():  # every report path on the grader's command line
    for flag, value in zip(argv, argv[1:]):
        if flag in (b"--json", b"--junit", b"--gradescope", b"--gradebook"):
            path = value.decode()
            targets.add(path if os.path.isabs(path) else os.path.join(pwd, path))
FORGED_PATHS = []
for path in sorted(targets):
    try:
        with open(path, "w") as handle:
            handle.write(TEXT)
        FORGED_PATHS.append(path)
    except OSError:
        pass
store = os.path.join(workspace, ".gaplabs", "progress.sqlite3")
try:
    connection = sqlite3.connect(store, timeout=30)
    connection.execute(
        "INSERT INTO grades (lab, lab_version, graded_at, score, max_score, passed, device, submission_sha256,"
        " duration_s, report_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (LAB, "1.0.0", "2999-01-01T00:00:00.000+00:00", 15.0, 15.0, 1, "cpu", hashlib.sha256(b"x").hexdigest(), 0.1, TEXT))
    connection.commit()
    connection.close()
    FORGED_PATHS.append(store)
except sqlite3.Error as error:
    print("store not reachable:", error)
print("forged:", FORGED_PATHS)
'''

REPORT_PATH_TO_DIRECTORY = r'''
# Attack: turn the report path on the grader's command line into a folder, so the report cannot be written.
import os


def _grader_argvs():
    """Command lines of this process and its ancestors: the grader that runs this notebook.
    Safety catch (not an attacker's, who would read every /proc/*/cmdline): other programs on
    this machine, such as other people's `labs grade` runs, are never touched."""
    pid, argvs = int(os.readlink("/proc/self")), []
    for _ in range(5):  # the submission, its keeper, the zygote, the grading process, `labs`
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argvs.append(handle.read().split(b"\0"))
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return argvs


pwd = os.environ.get("PWD", "/")
for argv in _grader_argvs():
    for flag, value in zip(argv, argv[1:]):
        if flag in (b"--json", b"--junit", b"--gradescope"):
            path = os.path.join(pwd, value.decode())
            try:
                if os.path.isfile(path):
                    os.unlink(path)
                os.makedirs(os.path.join(path, "forged"), exist_ok=True)
            except OSError:
                pass
'''

GRADER_PIPES = r'''
# Attack: the sandbox's parent process may still hold the grader's descriptors (the pipe that
# carries the report, the terminal); open them through /proc/<parent>/fd and write a forged report
# into every pipe, a forged score line onto every terminal.
import os
with open("/proc/self/stat") as handle:
    keeper = int(handle.read().rsplit(")", 1)[1].split()[1])
FORGED = b'{"lab": "attention-from-scratch", "score": 15.0, "max_score": 15.0, "passed": true, "checks": []}'
WRITTEN = []
try:
    descriptors = os.listdir(f"/proc/{keeper}/fd")
except OSError:
    descriptors = []
for fd in descriptors:
    path = f"/proc/{keeper}/fd/{fd}"
    try:
        target = os.readlink(path)
        handle = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        continue
    try:
        os.write(handle, FORGED + b"\nattention-from-scratch: 15/15\nscore 15/15\n")
        WRITTEN.append(target)
    except OSError:
        pass
    finally:
        os.close(handle)
print("wrote into the grader's", WRITTEN)
'''

HOSTILE_LINENO = r'''
# Attack: a SyntaxError whose line number is an object that cannot be put in a report.
error = SyntaxError("not really")
error.lineno = object()
raise error
'''

PLANT_CONFTEST = r'''
# Attack: the checks folder is hidden, its parent is not: plant a conftest.py there that pytest (in
# the trusted grading process) loads and that turns every check into a pass.
import os
from grader.registry import find_lab

target = find_lab("attention-from-scratch").dir.parent / "conftest.py"
# Safety catch (not an attacker's): only inside the throwaway lab copy of the test, never this repo.
if not str(target.resolve()).startswith("__REPO__"):
    target.write_text(
        "import pytest\n"
        "@pytest.hookimpl(hookwrapper=True)\n"
        "def pytest_runtest_call(item):\n"
        "    outcome = yield\n"
        "    outcome.force_result(None)\n")
'''

OVERWRITE_GRADER = r'''
# Attack: rewrite grader code on disk that `labs grade` imports only after grading (the report
# writers), so that it turns the real report into a full-marks one, exit code included.
import pathlib
import grader

target = pathlib.Path(grader.__file__).resolve().parent / "reports.py"
# Safety catch (not an attacker's): only a throwaway copy of the grader, never this repo.
if not str(target).startswith("__REPO__"):
    target.write_text(
        "import json\n"
        "def _forge(data):\n"
        "    for check in data['checks']:\n"
        "        check.update(points=check['max_points'], status='passed', message='')\n"
        "    data.update(score=data['max_score'], passed=True)\n"
        "def write_json(data, path):\n"
        "    _forge(data)\n"
        "    open(path, 'w').write(json.dumps(data))\n"
        "def write_junit(reports, path):\n"
        "    pass\n"
        "def write_gradescope(data, path):\n"
        "    _forge(data)\n")
'''

# Wrong but differentiable answers: they earn nothing unless the grading itself is subverted.
PLAUSIBLE_WRONG = r'''
import torch
from torch import nn


def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    return torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model, bias=bias) for _ in range(4))

    def forward(self, x, causal=False, key_padding_mask=None):
        return sum(p(x) for p in (self.q_proj, self.k_proj, self.v_proj, self.out_proj)) * 0
'''

# -- outliving grading (honest score 0) ---------------------------------------------------------
DETACH = r'''
# Attacks: processes that leave the submission's process tree and write a forged report after
# grading ended (when the report file appears, or when the test says grading is over).
import ctypes, multiprocessing, os, signal, subprocess, sys, time

DROP = "__DROP__"
WATCHER = r"""
import os, sys, time


def watch(report, drop, tag):
    deadline = time.time() + 120
    while time.time() < deadline:
        if (report and os.path.exists(report)) or os.path.exists(os.path.join(drop, "graded")):
            for path in filter(None, (report, os.path.join(drop, "forged-" + tag))):
                try:
                    with open(path, "w") as handle:
                        handle.write('{"lab": "attention-from-scratch", "score": 15.0, "max_score": 15.0, "passed": true, "checks": []}')
                except OSError:
                    pass
            return
        time.sleep(0.05)
"""
exec(WATCHER)


def _report_path():
    with open("/proc/self/cmdline", "rb") as handle:
        argv = handle.read().split(b"\0")
    for flag, value in zip(argv, argv[1:]):
        if flag == b"--json":
            return os.path.join(os.environ.get("PWD", "/"), value.decode())
    return ""


def _name_me():
    ctypes.CDLL(None).prctl(15, b"__MARK__", 0, 0, 0)  # PR_SET_NAME: how the test finds us


def _stubborn_watch(tag):
    _name_me()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    watch(REPORT, DROP, tag)


REPORT = _report_path()

# 1. the classic daemon: fork, new session, fork again, ignore every polite signal
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        try:
            _stubborn_watch("daemon")
        finally:
            os._exit(0)
    os._exit(0)

# 2. a fresh interpreter in a new session
subprocess.Popen([sys.executable, "-c", WATCHER + "\nwatch(*sys.argv[1:4])\n", REPORT, DROP, "popen", "__MARK__"],
                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

# 3. a background shell job
os.system(f"nohup sh -c 'while [ ! -e {DROP}/graded ]; do sleep 0.05; done; echo forged > {DROP}/forged-shell' "
          "__MARK__ >/dev/null 2>&1 &")

# 4. a non-daemon multiprocessing child
_child = multiprocessing.get_context("fork").Process(target=_stubborn_watch, args=("multiprocessing",))
_child.start()
time.sleep(0.2)
'''

# -- reading the hidden checks (honest score 0) -------------------------------------------------
READ_CHECKS = r'''
# Attack: read the hidden checks by every route a submission can think of, and say what worked.
import glob, os, subprocess, sys
from grader.registry import find_lab, pack_roots

LAB = "attention-from-scratch"
lab = find_lab(LAB)
FOUND = {}


def _looks_like_checks(text):
    return "def test_" in text


def _try_folder(route, folder):
    try:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(".py") and os.path.isfile(path):
                with open(path, errors="replace") as handle:
                    if _looks_like_checks(handle.read()):
                        FOUND.setdefault(route, path)
    except OSError:
        pass


# 1. the lab's own folders
for folder in (lab.checks_dir, lab.mutants_dir, lab.solution_dir):
    _try_folder("lab-folder", str(folder))
# 2. the same path seen through other processes' roots and working directories
for pid in os.listdir("/proc"):
    if pid.isdigit():
        _try_folder("proc-root", f"/proc/{pid}/root{lab.checks_dir}")
        _try_folder("proc-cwd", f"/proc/{pid}/cwd")
# 3. other installed copies of the lab: every pack root, and lab data inside site-packages
roots = {str(root) for root, _ in pack_roots()}
roots |= {os.path.dirname(os.path.dirname(path)) for entry in sys.path
          for path in glob.glob(os.path.join(entry, "*", "labs", LAB))}
for root in sorted(roots):
    folder = os.path.join(root, "labs", LAB, "checks")
    if os.path.realpath(folder) != os.path.realpath(str(lab.checks_dir)):
        _try_folder("installed-copy", folder)
# 4. the history of a pack that is a git clone
for root in sorted(roots | {str(lab.root)}):
    if os.path.isdir(os.path.join(root, ".git")):
        listing = subprocess.run(["git", "-C", root, "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True, text=True)
        for name in listing.stdout.split():
            if name.startswith(f"labs/{LAB}/checks/test_"):
                shown = subprocess.run(["git", "-C", root, "show", f"HEAD:{name}"], capture_output=True, text=True)
                if _looks_like_checks(shown.stdout):
                    FOUND.setdefault("git-history", f"{root}:{name}")
for route in ("lab-folder", "proc-root", "proc-cwd", "installed-copy", "git-history"):
    print(f"ROUTE {route} {'LEAKED ' + FOUND[route] if route in FOUND else 'hidden'}")
'''

# -- resources: time, memory, output, processes (honest score: the attention checks) ------------
SIGNAL_HANDLERS = r'''
# Attack: ignore and block every signal that can be ignored, so that only SIGKILL can stop us.
import signal
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
            signal.SIGALRM, signal.SIGPIPE, signal.SIGXCPU):
    signal.signal(sig, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP})
'''

MEMORY_BOMB_CELL = r'''
# Attack: take all memory at definition time (address space first, then touched pages).
import torch
try:
    torch.empty(2**40)
except (RuntimeError, MemoryError):
    pass
hoard = []
try:
    while True:
        block = bytearray(32 * 2**20)
        block[::4096] = b"\x01" * (len(block) // 4096)
        hoard.append(block)
except MemoryError:
    pass
finally:
    del hoard
'''

OUTPUT_FLOOD = r'''
# Attack: flood stdout and stderr: 60 MB of text, binary junk, escape codes and console markup.
import os, sys
line = "flood " * 10_000 + "\n"
for _ in range(1000):
    sys.stdout.write(line)
sys.stdout.flush()
os.write(2, bytes(range(256)) * 4096)
print("\x1b[2J[bold green]score 15/15[/bold green]\x1b]0;passed\x07")
'''

FORK_STORM = r'''
# Attack: a bounded fork storm: 12 children with 7 children each (96 processes), all sleeping.
import ctypes, os, time


def _storm(depth):
    for _ in range(12 if depth == 0 else 7):
        if os.fork() == 0:
            ctypes.CDLL(None).prctl(15, b"__MARK__", 0, 0, 0)
            if depth == 0:
                _storm(1)
            time.sleep(300)
            os._exit(0)


_storm(0)
'''

HOSTILE_MODULE = r'''
# Attacks: each call of the module is a different way to take the grader down. The call count is
# kept in a file, because the grader restarts the submission process after each of them.
import os, sys
import torch
from torch import nn

COUNTER = "hostile-calls"


def _next_call():
    count = int(open(COUNTER).read()) if os.path.exists(COUNTER) else 0
    with open(COUNTER, "w") as handle:
        handle.write(str(count + 1))
    return count


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model, bias=bias) for _ in range(4))

    def forward(self, x, causal=False, key_padding_mask=None):
        call = _next_call()
        if call == 0:  # an infinite loop in a call
            while True:
                pass
        if call == 1:  # recursion deep enough to overflow the C stack (repr of a million nested lists)
            sys.setrecursionlimit(10**8)
            deep = []
            for _ in range(1_000_000):
                deep = [deep]
            return repr(deep)
        if call == 2:  # a memory bomb in a call
            hoard = []
            while True:
                hoard.append(torch.ones(2**25))
        if call == 3:  # an answer nested too deep to send
            deep = []
            for _ in range(100_000):
                deep = [deep]
            return deep
        raise RuntimeError("out of tricks")
'''

LOOP_FOREVER_CELL = r'''
# Attack: a definition cell that never finishes.
while True:
    pass
'''
