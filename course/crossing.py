"""A check's call of a learner's function, judge side: arguments out, result, changes and gradients back.

``run`` sends one call (``Judge.exchange``) and turns the answer into what an
in-process call would have given the check: the result as data, the learner's
exception re-raised by name, inputs the learner wrote into updated, and, when a
check will backpropagate, a result joined to the check's autograd graph by
``RemoteCall``, whose backward asks the learner's process for the gradients.

Arguments cross as data. A model crosses as its recipe (``companion.exercises.built``
records it: the course's class, its arguments, the judge's weights); any other
callable stays here and crosses as a callback the learner's code may call.
"""

from __future__ import annotations

import builtins
from typing import Any, Callable

from course.wire import decode, encode

__all__ = ["RemoteCall", "collect", "rebuilt_exception", "run", "sender"]


def _map(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to every tensor in tuples, lists and dicts, the order the learner's side walks."""
    import torch

    if isinstance(value, torch.Tensor):
        return fn(value)
    if type(value) in (tuple, list):
        return type(value)(_map(v, fn) for v in value)
    if type(value) is dict:
        return {k: _map(v, fn) for k, v in value.items()}
    return value


def collect(value: Any, found: list[Any]) -> None:
    """Append every tensor of ``value`` to ``found``."""
    _map(value, lambda t: found.append(t) or t)


def sender(callbacks: dict[int, Any], buffers: list[bytes]) -> Callable[[Any], Any]:
    """The judge's extra encoding: models as recipes, other callables as callbacks (``buffers``: the
    message's)."""
    import torch

    def special(value: Any) -> Any:
        if isinstance(value, torch.nn.Module):
            recipe = getattr(value, "_course_recipe", None)
            if recipe is None:
                raise TypeError(f"a check passed a {type(value).__name__} without its recipe: build it with "
                                "companion.exercises.built(...)")
            factory, args, kwargs = recipe
            out_args = encode(list(args), buffers, special)
            out_kwargs = encode(dict(kwargs), buffers, special)
            state = {k: v.detach() for k, v in value.state_dict().items()}
            return {"$": "module", "factory": factory, "args": out_args, "kwargs": out_kwargs,
                    "state": encode(state, buffers), "training": value.training}
        if callable(value) and not isinstance(value, (torch.Tensor, type)):
            callbacks[len(callbacks)] = value
            return {"$": "callback", "id": len(callbacks) - 1}
        return None

    return special


def rebuilt_exception(raised: dict[str, Any]) -> Exception:
    """The learner's exception as an ``Exception`` here: a built-in type as itself, any other by its name."""
    name = str(raised.get("type", "Exception"))[:100]
    message = str(raised.get("message", ""))
    known = getattr(builtins, name, None)
    if isinstance(known, type) and issubclass(known, Exception):
        try:
            return known(message)
        except Exception:
            pass
    return type(name if name.isidentifier() else "Error", (Exception,), {})(message)


def _result(judge: Any, message: dict[str, Any], buffers: list[bytes], callbacks: dict[int, Any],
            inputs: list[Any]) -> Any:
    """Make the call; record forbidden calls, write changed inputs back, raise the learner's error."""
    import torch

    reply = judge.exchange(message, buffers, callbacks, "result")
    got = reply["buffers"]
    judge.hits.update(str(h) for h in reply.get("hits") or [] if isinstance(h, str))
    changed = decode(reply.get("changed"), got) if reply.get("changed") is not None else {}
    for index, new in (changed.items() if isinstance(changed, dict) else []):
        if isinstance(index, int) and 0 <= index < len(inputs) and isinstance(new, torch.Tensor):
            target = inputs[index]
            with torch.no_grad():
                if new.shape == target.shape:
                    target.copy_(new.to(target.dtype))
                else:
                    target.data = new.to(target.dtype)
    if reply.get("raised"):
        raise rebuilt_exception(reply["raised"])
    return decode(reply.get("value"), got)


class RemoteCall:
    """The autograd node of a call whose result a check will backpropagate through."""

    _class: Any = None

    @classmethod
    def function(cls) -> Any:
        if cls._class is not None:
            return cls._class
        import torch

        class _Call(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, box: dict[str, Any], *tensors: Any) -> Any:
                value = box["make"]()
                flat: list[Any] = []
                collect(value, flat)
                box["value"], ctx.box = value, box
                wants = [t.requires_grad for t in flat]
                outs = [t.detach() for t in flat] or [torch.zeros(())]
                ctx.mark_non_differentiable(*[o for o, w in zip(outs, wants + [False]) if not w])
                box["count"] = len(flat)
                return tuple(outs)

            @staticmethod
            def backward(ctx: Any, *grads: Any) -> Any:
                return (None, *ctx.box["backward"](grads))

        cls._class = _Call
        return _Call


def run(judge: Any, message: dict[str, Any], buffers: list[bytes], inputs: list[Any],
        callbacks: dict[int, Any]) -> Any:
    """The value the learner's function returned, as a check sees it."""
    if not message["track"]:
        return _result(judge, message, buffers, callbacks, inputs)
    import torch

    call_id = message["id"]

    def backward(grads: tuple[Any, ...]) -> list[Any]:
        out: list[bytes] = []
        reply = judge.exchange({"op": "backward", "id": call_id, "grads": encode(list(grads), out)}, out,
                               {}, "gradients")
        if reply.get("raised"):
            raise RuntimeError(str(reply["raised"].get("message", "the backward pass failed")))
        found = decode(reply.get("value"), reply["buffers"])
        found = list(found) if isinstance(found, list) else []
        found = (found + [None] * len(inputs))[: len(inputs)]
        return [g if isinstance(g, torch.Tensor) else None for g in found]

    box = {"make": lambda: _result(judge, message, buffers, callbacks, inputs), "backward": backward}
    outs = iter(RemoteCall.function().apply(box, *inputs))
    return _map(box["value"], lambda t: next(outs))
