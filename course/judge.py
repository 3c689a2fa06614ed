"""The judge: grades one submission from its own copy of the checks (``python -m course.judge``).

The judge never runs the learner's code. It starts the learner's process in
the sandbox (``course.sandbox``, ``course.learner``), sends it the notebook's
code cells one at a time, each under a time limit, and then runs every check
of every question here, in this clean process, from the grader's copy
(``course.spec``). A check's ``fn`` is a ``Remote``: calling it sends the
inputs across and brings the result back as data (``course.wire``); gradients
cross the same way, so the checks run unchanged. A cell or a call that kills,
hangs or breaks the learner's process costs that cell or that check: the judge
starts a fresh process, runs the cells again without the ones that broke it,
and goes on. A question whose answer calls what its exercise forbids scores 0.

Input (standard input, JSON): the submission's path, the chapter's spec, the
limits, the sandbox and the uid; output (standard output, JSON): the result.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from course.sandbox import Limits, Sandbox, apply_limits, kill_user
from course.wire import Channel, LearnerGone, WireError, decode, encode

__all__ = ["Judge", "Remote", "main"]

MAX_RESTARTS = 6
CALL_SECONDS = 60.0
CHECK_SECONDS = 120.0
KEEP_OUTPUT = 32 * 1024
RULE = ("an answer may not call the course's own implementation of what its exercise asks for, nor the "
        "course's checks (rule: no delegating to the reference)")


class LearnerStopped(Exception):
    """The learner's process ended or stopped answering during a check's call."""


class CellsBroke(Exception):
    """A cell broke the learner's process; the cells must run again without it."""


class Output:
    """What the learner's process prints: the first and the last KEEP_OUTPUT bytes, and the count."""

    def __init__(self, stream: Any) -> None:
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = self.total = 0
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream: Any) -> None:
        while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
            self.total += len(chunk)
            room = KEEP_OUTPUT - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail.append(chunk)
                self.tail_size += len(chunk)
                while self.tail_size - len(self.tail[0]) >= KEEP_OUTPUT:
                    self.tail_size -= len(self.tail.popleft())

    def text(self) -> str:
        self.thread.join(timeout=2)
        tail = b"".join(self.tail)[-KEEP_OUTPUT:]
        left_out = self.total - len(self.head) - len(tail)
        middle = f"\n[... {left_out} bytes left out ...]\n" if left_out > 0 else ""
        return (bytes(self.head) + middle.encode() + tail).decode("utf-8", errors="replace")


class Judge:
    """One submission: its learner's process (restarted when it breaks), its cells and its scores."""

    def __init__(self, cells: list[tuple[int, str]], sandbox: Sandbox, limits: Limits, uid: int | None) -> None:
        self.cells, self.sandbox, self.limits, self.uid = cells, sandbox, limits, uid
        self.deadline = time.monotonic() + limits.total_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.outputs: list[Output] = []
        self.skipped: dict[int, str] = {}  # cell -> why it broke the process
        self.errors: dict[int, str] = {}  # cell -> the error it raised
        self.events: list[str] = []
        self.starts = 0
        self.hits: set[str] = set()
        self.calls = 0

    # ------------------------------------------------------------------ the learner's process

    def _start(self) -> None:
        self.starts += 1
        cmd, env = self.sandbox.command([sys.executable, "-m", "course.learner"], self.uid, self.limits)
        scratch = Path(os.environ.get("TMPDIR", "/tmp"))
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=scratch,
            start_new_session=True, preexec_fn=lambda: apply_limits(self.limits, self.uid), bufsize=0)
        self.outputs.append(Output(self.proc.stderr))
        self.channel = Channel(self.proc.stdout.fileno(), self.proc.stdin.fileno())
        reply = self._expect("ready", time.monotonic() + 120)
        if self.uid is not None and reply.get("uid") != self.uid:
            raise LearnerGone(f"the learner's process runs as uid {reply.get('uid')}, expected {self.uid}")

    def stop(self) -> str:
        """Kill the learner's process and everything it started; say how it had ended."""
        if self.proc is None:
            return "not running"
        code = self.proc.poll()
        try:
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        if self.uid is not None:
            kill_user(self.uid)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.proc, self.channel = None, None
        return "it was stopped" if code is None else f"the process ended with exit status {code}"

    def _expect(self, op: str, deadline: float) -> dict[str, Any]:
        message, buffers = self.channel.receive(min(deadline, self.deadline))
        if message.get("op") != op:
            raise WireError(f"expected a {op!r} message, got {str(message.get('op'))[:40]!r}")
        message["buffers"] = buffers
        return message

    def ready(self) -> None:
        """A learner's process that has run every cell that does not break it (fresh when needed)."""
        while self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.stop()
            if self.starts > MAX_RESTARTS or time.monotonic() > self.deadline:
                raise LearnerStopped("the notebook's process could not be started again (too many restarts, "
                                     "or the time for this submission is up)")
            try:
                self._start()
                self._run_cells()
            except CellsBroke:
                continue
            except (LearnerGone, WireError) as err:
                self.events.append(f"the learner's process did not start: {err}")
                self.stop()

    def _run_cells(self) -> None:
        for index, source in self.cells:
            if index in self.skipped:
                continue
            started = time.monotonic()
            try:
                self.channel.send({"op": "run", "cell": index, "source": source})
                reply = self._expect("ran", started + self.limits.cell_seconds)
            except (LearnerGone, WireError) as err:
                timed_out = time.monotonic() - started >= self.limits.cell_seconds - 0.5
                how = self.stop()
                why = (f"ran past the limit of {self.limits.cell_seconds:g} s and was stopped" if timed_out
                       else f"broke the notebook's process ({err}; {how})")
                self.skipped[index] = why
                self.events.append(f"cell {index} {why}; the cells run again without it")
                raise CellsBroke() from None
            if reply.get("error") and index not in self.errors:
                self.errors[index] = str(reply["error"])[:500]

    # ------------------------------------------------------------------ calls across the boundary

    def describe(self, name: str, forbid: list[str]) -> Any:
        """What a check gets for ``name``: None (not defined), a value, or a ``Remote``."""
        self.ready()
        try:
            self.channel.send({"op": "describe", "name": name})
            reply = self._expect("described", time.monotonic() + CALL_SECONDS)
        except (LearnerGone, WireError) as err:
            self.stop()
            raise LearnerStopped(f"the notebook's process stopped ({err})") from None
        if reply.get("kind") == "missing":
            return None
        if reply.get("kind") == "value":
            return decode(reply.get("value"), reply["buffers"])
        return Remote(self, name, reply.get("params"), forbid)

    def call(self, remote: "Remote", args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        import torch

        from course import crossing

        self.ready()
        inputs, callbacks, buffers = [], {}, []
        payload = (list(args), dict(kwargs))
        crossing.collect(payload, inputs)
        special = crossing.sender(callbacks, buffers)
        message = {
            "op": "call", "id": self.calls, "name": remote.name, "forbid": remote.forbid,
            "args": encode(payload[0], buffers, special), "kwargs": encode(payload[1], buffers, special),
            "grad_mode": torch.is_grad_enabled(),
            "track": torch.is_grad_enabled() and any(t.requires_grad for t in inputs),
        }
        self.calls += 1
        return crossing.run(self, message, buffers, inputs, callbacks)

    def exchange(self, message: dict[str, Any], buffers: list[bytes], callbacks: dict[int, Any],
                 answer: str) -> dict[str, Any]:
        """Send a request and wait for its answer, serving the learner's callbacks meanwhile."""
        try:
            self.channel.send(message, buffers)
            while True:
                reply, got = self.channel.receive(min(time.monotonic() + CALL_SECONDS, self.deadline))
                if reply.get("op") != "callback":
                    if reply.get("op") != answer:
                        raise WireError(f"expected {answer!r}, got {str(reply.get('op'))[:40]!r}")
                    reply["buffers"] = got
                    return reply
                self._serve_callback(reply, got, callbacks)
        except (LearnerGone, WireError) as err:
            self.stop()
            raise LearnerStopped(f"the notebook's process stopped during the call ({err})") from None
        except BaseException:  # a check's time limit: the process is busy and out of step
            self.stop()
            raise

    def _serve_callback(self, reply: dict[str, Any], got: list[bytes], callbacks: dict[int, Any]) -> None:
        target = callbacks.get(reply.get("id"))
        out: list[bytes] = []
        try:
            if target is None:
                raise ValueError("no such callback")
            value = target(*decode(reply.get("args"), got), **decode(reply.get("kwargs"), got))
            self.channel.send({"op": "callback-result", "value": encode(value, out)}, out)
        except (LearnerGone, WireError):
            raise
        except Exception as err:  # the learner passed the callback something it cannot take
            self.channel.send({"op": "callback-error", "message": f"{type(err).__name__}: {err}"[:2000]})

    # ------------------------------------------------------------------ grading

    def grade(self, spec: dict[str, Any]) -> dict[str, Any]:
        from companion.exercises import CheckTimeout, time_limit

        questions: dict[str, Any] = {}
        everywhere = list(spec.get("forbid_everywhere", []))
        for question in spec["questions"]:
            forbid = everywhere + list(question.get("forbid", []))
            self.hits = set()
            tests: list[dict[str, Any]] = []
            for test in question["tests"]:
                passed, message = False, ""
                if tests and not tests[-1]["passed"] and self.proc is None:
                    message = "not run: an earlier check of this question stopped the notebook's process"
                    tests.append({"name": test["name"], "points": test["points"], "hidden": test["hidden"],
                                  "passed": False, "message": message})
                    continue
                try:
                    check = _compile_check(test)
                    values = {p: self.describe(p, forbid) for p in inspect.signature(check).parameters}
                    with time_limit(CHECK_SECONDS):
                        check(**values)
                    passed = True
                except AssertionError as err:
                    message = str(err) or "the check failed"
                except CheckTimeout:
                    message = f"the checks ran past {CHECK_SECONDS:g} s"
                except LearnerStopped as err:
                    message = str(err)
                except Exception as err:  # a value the check could not handle: a failed check
                    message = f"the check could not use the answer: {type(err).__name__}: {err}"[:2000]
                tests.append({"name": test["name"], "points": test["points"], "hidden": test["hidden"],
                              "passed": passed, "message": message})
            possible = float(sum(t["points"] for t in tests))
            score = float(sum(t["points"] for t in tests if t["passed"]))
            note = ""
            if self.hits:
                named = ", ".join(sorted(self.hits))
                note = f"the answer called {named}: {RULE}; scored 0"
                score = 0.0
            questions[question["name"]] = {"score": min(max(score, 0.0), possible), "possible": possible,
                                           "tests": tests, "message": note}
        return questions


class Remote:
    """A learner's function as a check sees it: calling it calls it in the learner's process."""

    def __init__(self, judge: Judge, name: str, params: Any, forbid: list[str]) -> None:
        self.judge, self.name, self.forbid = judge, name, forbid
        self.__name__ = self.__qualname__ = name
        if isinstance(params, list):
            try:
                self.__signature__ = inspect.Signature([
                    inspect.Parameter(str(p[0]), inspect._ParameterKind(int(p[1])),
                                      default=None if p[2] else inspect.Parameter.empty)
                    for p in params])
            except (ValueError, TypeError, IndexError, KeyError):
                pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.judge.call(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<the learner's {self.name}>"


def _compile_check(test: dict[str, Any]) -> Any:
    namespace: dict[str, Any] = {"__name__": "course_check"}
    exec(compile(test["source"], f"<check {test['name']}>", "exec"), namespace)
    return namespace[test["name"]]


def read_cells(path: Path) -> list[tuple[int, str]]:
    """The code cells of a notebook, as (cell number, source); ``ValueError`` when it is not one."""
    import nbformat

    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    except Exception as err:
        raise ValueError(f"not a Jupyter notebook ({type(err).__name__}: {str(err)[:200]})") from None
    return [(i, str(c.get("source", ""))) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]


def judge_submission(job: dict[str, Any]) -> dict[str, Any]:
    """Grade one submission as the job says; the result and the lines of its log."""
    started = time.monotonic()
    limits = Limits(**job["limits"])
    sandbox = Sandbox(**job["sandbox"])
    uid = job.get("uid")
    try:
        cells = read_cells(Path(job["submission"]))
    except (ValueError, OSError) as err:
        return {"error": str(err)}
    judge = Judge(cells, sandbox, limits, uid)
    try:
        questions = judge.grade(job["spec"])
    finally:
        judge.stop()
    output = "\n".join(o.text() for o in judge.outputs)
    return {
        "chapter": job["spec"]["chapter"],
        "questions": questions,
        "sandbox": sandbox.describe(limits, uid),
        "seconds": round(time.monotonic() - started, 2),
        "starts": judge.starts,
        "events": judge.events,
        "cell_errors": {str(k): v for k, v in judge.errors.items()},
        "output": output,
    }


def main() -> int:
    job = json.loads(sys.stdin.read())
    result = judge_submission(job)
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
