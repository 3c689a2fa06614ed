"""The learner's process: how it is started, what it may see, and its limits.

On Linux with bubblewrap (``bwrap``) the learner's process runs in a new mount,
network, PID, IPC and UTS namespace: no network; a file system built from the
system's and Python's folders only, read-only; a writable, size-limited
``/submission`` (its working folder) and ``/tmp``; none of the grader's files,
the course's sources or other submissions. When the grader runs as root the
learner's code runs as an unprivileged user of its own (one per parallel job),
so that the process limit counts its processes alone. In every case it gets
rlimits: address space (memory), processes, CPU time and file size. The judge
adds the wall-clock limits (per cell and per call).

Where ``bwrap`` is missing or cannot create namespaces (a container without
user namespaces), ``probe`` says why, and the learner's process runs with the
same limits and the same process boundary but sees what the grader's user sees;
the report names the sandbox in use.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "Sandbox", "apply_limits", "kill_user", "learner_uid", "probe"]

WORKDIR = "/submission"
BASE_UID = 61000


@dataclass(frozen=True)
class Limits:
    """What one learner's process may use."""

    memory_mb: int = 4096
    processes: int = 64
    cell_seconds: float = 120.0
    total_seconds: float = 900.0
    scratch_mb: int = 256

    def describe(self) -> str:
        return (f"{self.memory_mb} MB of memory, {self.processes} processes, {self.cell_seconds:g} s per cell, "
                f"{self.total_seconds:g} s per submission")


@dataclass(frozen=True)
class Sandbox:
    """The sandbox in use: ``kind`` is "bubblewrap" or "none"; ``reason`` says why when it is "none"."""

    kind: str
    reason: str = ""

    def describe(self, limits: Limits, uid: int | None) -> str:
        who = f", as uid {uid}" if uid is not None else ""
        if uid is None and os.geteuid() == 0 and self.kind != "bubblewrap":
            who = (", as root: the process limit does not hold for root (install Python where other users "
                   "can read it, and the learner gets a uid of its own)")
        if self.kind == "bubblewrap":
            return (f"bubblewrap: no network, a read-only file system apart from {WORKDIR} and /tmp "
                    f"({limits.scratch_mb} MB each){who}; {limits.describe()}")
        return (f"none ({self.reason}): the learner's process has its own process and the limits "
                f"({limits.describe()}){who}, but sees the files this user sees")

    def command(self, argv: list[str], uid: int | None, limits: Limits) -> tuple[list[str], dict[str, str]]:
        """The command that runs ``argv`` (a Python command line) in this sandbox, and its environment;
        the learner's process drops to ``uid`` itself, before it runs anything of the learner's."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        if uid is not None:
            argv = [*argv, "--uid", str(uid)]
        if self.kind != "bubblewrap":
            env["HOME"] = env["TMPDIR"] = env["MPLCONFIGDIR"] = os.environ.get("TMPDIR", "/tmp")
            return argv, env
        env["HOME"], env["TMPDIR"], env["MPLCONFIGDIR"] = WORKDIR, "/tmp", "/tmp"
        size = str(limits.scratch_mb * 2**20)
        cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid",
               "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if os.geteuid() != 0:
            cmd.append("--unshare-user")
        cmd += _mounts()
        cmd += ["--dev", "/dev", "--proc", "/proc",
                "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
                "--perms", "0777", "--size", size, "--tmpfs", WORKDIR,
                "--chdir", WORKDIR, "--"]
        return cmd + argv, env


def learner_uid(slot: int, sandbox: Sandbox) -> int | None:
    """The uid of parallel job ``slot``'s learner: its own when the grader is root (None: this user's).

    Without bubblewrap the interpreter must be readable by other users for that."""
    if os.geteuid() != 0:
        return None
    if sandbox.kind != "bubblewrap" and not _readable_by_others(Path(sys.executable)):
        return None
    return BASE_UID + slot


def _readable_by_others(path: Path) -> bool:
    """Whether every folder above ``path`` can be entered by any user."""
    return all(os.stat(folder).st_mode & 0o001 for folder in path.resolve().parents)


SYSTEM = ("/usr", "/etc", "/opt")


def _mounts() -> list[str]:
    """Read-only binds of the system's folders, Python and the two packages the learner's process imports.

    Nothing of a course checkout (a folder with ``_toc.yml``: the chapters, their solutions, the grader's
    copy of the tests) and no home folder is shown, apart from the package folders themselves."""
    import site
    import sysconfig

    args: list[str] = []
    for folder in SYSTEM:
        args += ["--ro-bind-try", folder, folder]
    for link in ("bin", "sbin", "lib", "lib64", "lib32"):
        path = Path("/") / link
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    needed = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    needed.update(Path(p) for p in sysconfig.get_paths().values())
    needed.update(Path(p) for p in site.getsitepackages())
    needed.update(Path(p) for p in sys.path if p and not (Path(p) / "_toc.yml").exists())
    needed.discard(Path.cwd())
    for name in ("companion", "course"):
        folder = _package_dir(name)
        if folder is not None:
            needed.add(folder)
    paths = sorted({p.resolve() for p in needed if p.is_dir()}, key=lambda p: len(p.parts))
    for home in (Path("/root"), Path("/home")):
        if any(_inside(p, home) for p in paths):
            args += ["--tmpfs", str(home)]  # an empty home: the binds below are all it holds
    kept: list[Path] = []
    for path in paths:
        if any(_inside(path, Path(f)) for f in SYSTEM) or any(_inside(path, k) for k in kept):
            continue
        if path == Path("/") or (path / "_toc.yml").exists():
            continue
        kept.append(path)
        for parent in reversed(path.parents):  # folders above it that any user may enter, as outside
            if parent not in (Path("/"), Path("/root"), Path("/home")):
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    return args


def _package_dir(name: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def probe() -> Sandbox:
    """Bubblewrap if it is installed and can build a sandbox here, else "none" and the reason."""
    if os.environ.get("COURSE_GRADER_SANDBOX") == "none":
        return Sandbox("none", "turned off by COURSE_GRADER_SANDBOX=none")
    if not sys.platform.startswith("linux"):
        return Sandbox("none", f"bubblewrap needs Linux, this is {sys.platform}")
    if shutil.which("bwrap") is None:
        return Sandbox("none", "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    sandbox = Sandbox("bubblewrap")
    cmd, env = sandbox.command([sys.executable, "-c", "print('ok')"], None, Limits())
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return Sandbox("none", f"bwrap could not start: {err}")
    if done.returncode != 0 or done.stdout.strip() != "ok":
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return Sandbox("none", f"bwrap cannot build a sandbox here: {why}")
    return sandbox


def apply_limits(limits: Limits, uid: int | None) -> None:
    """rlimits for the learner's process (run in the child before it starts, ``preexec_fn``)."""
    memory = limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(limits.total_seconds) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    files = limits.scratch_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (files, files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    processes = limits.processes
    if uid is None and os.geteuid() != 0:
        processes += _processes_of(os.getuid())  # the limit counts all of this user's processes
    if uid is not None or os.geteuid() != 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def _processes_of(uid: int) -> int:
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    count += int(line.split()[1]) == uid
                    break
        except OSError:
            continue
    return count


def kill_user(uid: int) -> None:
    """Kill every process of ``uid`` (a learner's own uid: what escaped its process group)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Uid:"):
                if int(line.split()[1]) == uid:
                    try:
                        os.kill(int(status.parent.name), 9)
                    except (ProcessLookupError, PermissionError):
                        pass
                break
