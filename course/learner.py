"""The learner's process: runs a submission's cells and answers the judge's calls (``python -m course.learner``).

Started by the judge inside the sandbox (``course.sandbox``). Standard input
and output are the judge's channel (``course.wire`` frames); before anything
else runs they move to private descriptors, and what the learner's code prints
goes to standard error, which the judge reads and keeps, cut to a size.
With ``--uid N`` (the grader runs as root) the process becomes user N first.

Requests, one at a time: ``run`` a cell (IPython, so a notebook's syntax
works); ``describe`` a name of the notebook; ``call`` a function of the
notebook with the judge's arguments (tensors, numbers, models rebuilt from
their recipe, callbacks into the judge) and send back its result, which of
its tensor inputs it changed, and whether it called something the exercise
forbids; ``backward`` through the result of a call. Nothing here is trusted
by the judge: every answer is data, and the judge decides the score.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from course.crossing import _map, collect
from course.wire import Channel, LearnerGone, decode, encode

__all__ = ["main"]


class Learner:
    """The notebook's namespace and the judge's link."""

    def __init__(self, channel: Channel) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        self.channel = channel
        self.shell = InteractiveShell.instance()
        self.graphs: dict[int, tuple[list[Any], list[Any]]] = {}  # call id -> (leaves, outputs)

    # ------------------------------------------------------------------ requests

    def serve(self) -> None:
        while True:
            try:
                message, buffers = self.channel.receive()
            except LearnerGone:
                return
            op = message.get("op")
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                self.channel.send({"op": "error", "message": f"unknown request {op!r}"})
                continue
            handler(message, buffers)

    def op_run(self, message: dict[str, Any], buffers: list[bytes]) -> None:
        result = self.shell.run_cell(str(message.get("source", "")), store_history=False)
        error = result.error_before_exec or result.error_in_exec
        sys.stdout.flush()
        sys.stderr.flush()
        text = None if error is None else f"{type(error).__name__}: {str(error)[:500]}"
        self.channel.send({"op": "ran", "cell": message.get("cell"), "error": text})

    def op_describe(self, message: dict[str, Any], buffers: list[bytes]) -> None:
        name = str(message.get("name", ""))
        if name not in self.shell.user_ns:
            self.channel.send({"op": "described", "kind": "missing"})
            return
        obj = self.shell.user_ns[name]
        if not callable(obj):
            out: list[bytes] = []
            self.channel.send({"op": "described", "kind": "value", "value": encode(obj, out)}, out)
            return
        self.channel.send({"op": "described", "kind": "callable", "params": _parameters(obj),
                           "type": type(obj).__name__})

    def op_call(self, message: dict[str, Any], buffers: list[bytes]) -> None:
        import torch

        call_id = int(message.get("id", 0))
        fn = self.shell.user_ns.get(str(message.get("name", "")))
        tensors: list[Any] = []  # the inputs the judge may backpropagate to, in buffer order
        leaves: list[Any] = []

        def special(node: dict[str, Any]) -> Any:
            if node["$"] == "module":
                return _build_module(node, buffers)
            if node["$"] == "callback":
                return self._callback(int(node.get("id", 0)))
            raise ValueError(f"unknown tag {node['$']!r}")

        grad = bool(message.get("track"))  # the judge will backpropagate through this call
        args = decode(message.get("args"), buffers, special)
        kwargs = decode(message.get("kwargs"), buffers, special)
        if grad:
            args, kwargs = _clone_leaves((args, kwargs), leaves, tensors)
        else:
            collect((args, kwargs), tensors)
        before = [t.detach().clone() for t in tensors]
        watch = Tripwire(message.get("forbid") or [])
        raised = None
        value: Any = None
        try:
            with torch.set_grad_enabled(bool(message.get("grad_mode", True))), watch:
                value = fn(*args, **kwargs)
        except BaseException as err:  # the learner's error, SystemExit included, goes back as data
            raised = {"type": type(err).__name__, "message": str(err)[:2000]}
        changed = {}
        for i, (t, old) in enumerate(zip(tensors, before)):
            try:
                now = t.detach()
                if now.shape != old.shape or not torch.equal(now.nan_to_num(), old.nan_to_num()):
                    changed[i] = now
            except Exception:
                continue
        out: list[bytes] = []
        reply: dict[str, Any] = {"op": "result", "raised": raised, "hits": sorted(watch.hits)}
        try:
            reply["value"] = encode(value, out)
            reply["changed"] = encode(changed, out)
        except Exception as err:
            out.clear()
            reply.update(value=None, changed=None, raised={"type": type(err).__name__,
                                                           "message": f"its result could not be sent: {err}"})
        if grad and raised is None:
            self.graphs = {call_id: (leaves, _flat_tensors(value))}
        self.channel.send(reply, out)

    def op_backward(self, message: dict[str, Any], buffers: list[bytes]) -> None:
        import torch

        leaves, outputs = self.graphs.pop(int(message.get("id", -1)), ([], []))
        grads = decode(message.get("grads"), buffers)
        pairs = [(o, g) for o, g in zip(outputs, grads or [])
                 if g is not None and isinstance(o, torch.Tensor) and o.requires_grad]
        reply: dict[str, Any] = {"op": "gradients", "raised": None}
        out: list[bytes] = []
        try:
            found: list[Any] = [None] * len(leaves)
            wanted = [i for i, leaf in enumerate(leaves) if leaf is not None]
            if pairs and wanted:
                got = torch.autograd.grad([o for o, _ in pairs], [leaves[i] for i in wanted],
                                          [g for _, g in pairs], allow_unused=True)
                for i, g in zip(wanted, got):
                    found[i] = g
            reply["value"] = encode(found, out)
        except Exception as err:
            out.clear()
            reply.update(value=None, raised={"type": type(err).__name__, "message": str(err)[:2000]})
        self.channel.send(reply, out)

    # ------------------------------------------------------------------ callbacks into the judge

    def _callback(self, callback_id: int) -> Any:
        channel = self.channel

        def callback(*args: Any, **kwargs: Any) -> Any:
            out: list[bytes] = []
            channel.send({"op": "callback", "id": callback_id, "args": encode(list(args), out),
                          "kwargs": encode(dict(kwargs), out)}, out)
            reply, buffers = channel.receive()
            if reply.get("op") == "callback-error":
                raise RuntimeError(str(reply.get("message", "the callback failed")))
            return decode(reply.get("value"), buffers)

        return callback


# ---------------------------------------------------------------------- what the exercise forbids


class Tripwire:
    """Records, during a call, every call of a forbidden function, class or package.

    ``forbid`` holds dotted names: a function, a class (all its methods) or a package
    (all the code in its folder). A profile hook sees every Python call and every
    call of a built-in, however the learner's code got hold of the function.
    """

    def __init__(self, forbid: list[str]) -> None:
        self.codes: dict[Any, str] = {}
        self.builtins: dict[int, str] = {}
        self.methods: list[tuple[str, type, str]] = []  # methods of built-in types: (name, class, rule)
        self.folders: dict[str, str] = {}
        self.hits: set[str] = set()
        for name in forbid:
            self._add(str(name))

    def _add(self, name: str) -> None:
        import importlib
        import types

        obj: Any = None
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except Exception:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                return
            break
        if isinstance(obj, types.ModuleType):
            for folder in getattr(obj, "__path__", []) or [os.path.dirname(obj.__file__ or "")]:
                self.folders[os.path.realpath(folder) + os.sep] = name
            return
        functions = [obj]
        if isinstance(obj, type):
            functions = [v for v in vars(obj).values() if callable(v) or isinstance(v, (staticmethod, classmethod))]
            functions = [getattr(v, "__func__", v) for v in functions]
        for fn in functions:
            code = getattr(fn, "__code__", None)
            owner = getattr(fn, "__objclass__", None)
            if code is None and isinstance(owner, type):  # e.g. torch.Tensor.softmax: bound anew each call
                self.methods.append((getattr(fn, "__name__", ""), owner, name))
                continue
            if code is None:
                self.builtins[id(fn)] = name
                continue
            todo = [code]
            while todo:  # nested functions and lambdas too
                c = todo.pop()
                self.codes[c] = name
                todo.extend(k for k in c.co_consts if isinstance(k, types.CodeType))

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            name = self.codes.get(code)
            if name is None and self.folders:
                path = os.path.realpath(code.co_filename)
                name = next((n for f, n in self.folders.items() if path.startswith(f)), None)
            if name is not None:
                self.hits.add(name)
        elif event == "c_call":
            if id(arg) in self.builtins:
                self.hits.add(self.builtins[id(arg)])
            owner = getattr(arg, "__self__", None)
            for method, cls, name in self.methods:
                if getattr(arg, "__name__", None) == method and isinstance(owner, cls):
                    self.hits.add(name)

    def __enter__(self) -> "Tripwire":
        if self.codes or self.builtins or self.folders or self.methods:
            sys.setprofile(self._hook)
            threading.setprofile(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.setprofile(None)
        threading.setprofile(None)


# ---------------------------------------------------------------------- helpers


def _parameters(fn: Any) -> list[list[Any]] | None:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return [[p.name, int(p.kind), p.default is not inspect.Parameter.empty] for p in params]


def _build_module(node: dict[str, Any], buffers: list[bytes]) -> Any:
    """A model from its recipe: the course's (or torch's) class, its arguments and the judge's weights."""
    import importlib

    factory = str(node.get("factory", ""))
    module_name, _, qualname = factory.rpartition(":")
    if not (module_name.startswith("companion.") or module_name.startswith("torch.")):
        raise ValueError(f"expected a model of the course or of torch, got {factory!r}")
    obj: Any = importlib.import_module(module_name)
    for attr in qualname.split("."):
        obj = getattr(obj, attr)
    model = obj(*decode(node.get("args"), buffers), **decode(node.get("kwargs"), buffers))
    model.load_state_dict(decode(node.get("state"), buffers))
    model.train(bool(node.get("training")))
    return model


def _clone_leaves(value: Any, leaves: list[Any], tensors: list[Any]) -> Any:
    """Each tensor that requires grad becomes a leaf, and the learner's function gets a copy of it,
    as a check's copied input is in the judge's process (so writing into it behaves the same)."""
    def split(t: Any) -> Any:
        if t.requires_grad:
            leaves.append(t)
            t = t.clone()
        else:
            leaves.append(None)
        tensors.append(t)
        return t

    return _map(value, split)


def _flat_tensors(value: Any) -> list[Any]:
    found: list[Any] = []
    collect(value, found)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.learner")
    parser.add_argument("--uid", type=int, default=None)
    args = parser.parse_args(argv)
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)  # what the learner's code prints goes to the judge's log
    if args.uid is not None:
        os.setgroups([])
        os.setgid(args.uid)
        os.setuid(args.uid)
    for fd in (read_fd, write_fd):
        os.set_inheritable(fd, False)
    channel = Channel(read_fd, write_fd)
    import torch

    import companion  # noqa: F401  (warm: the first cell imports it)

    torch.set_num_threads(1)
    learner = Learner(channel)
    channel.send({"op": "ready", "uid": os.getuid(), "pid": os.getpid()})
    learner.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
