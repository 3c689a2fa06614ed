"""Submissions of chapter 4 written as a hostile learner would, each with the score the grader must give.

Chapter 4 has three questions of 3 points each. A case replaces some answer
cells (``answers``: question -> source, or SOLUTION for the reference answer;
questions left out keep the Colab edition's ``...``), and adds cells after all
others (``after``) or in front of every cell (``prefix``). ``expected`` is the
score per question. ``{repo}``, ``{submission}``, ``{marker}`` and ``{port}`` in a
source are filled in by the test (the checkout, the submitted file, a file the
learner must not be able to create, a port the test listens on outside the
sandbox).
"""

from __future__ import annotations

from dataclasses import dataclass, field

SOLUTION = "solution"
QUESTIONS = ("masked_softmax", "additive_scores", "scaled_dot_product_attention")
ALL = {q: SOLUTION for q in QUESTIONS}


@dataclass
class Case:
    name: str
    expected: dict[str, float]
    answers: dict[str, str] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    prefix: str = ""
    message: dict[str, str] = field(default_factory=dict)  # question -> text its message must hold


PATCH_CHECKS = """\
import companion.exercises.attention_scoring as ex
for name in dir(ex):
    if name.startswith("check_"):
        setattr(ex, name, lambda *a, **k: None)
"""

REWRITE_TESTS = """\
import glob, os, companion.grading
forged = "from otter.test_files import test_case\\nname = 'q'\\npoints = 99\\n@test_case(points=99)\\ndef t(): pass\\n"
folders = ["tests", companion.grading.checks_dir("04_attention_scoring"), "{repo}/companion/exercise_checks"]
for folder in folders:
    for path in glob.glob(os.path.join(folder, "**", "*.py"), recursive=True) + [os.path.join(folder, "x.py")]:
        try:
            open(path, "w").write(forged)
        except OSError as err:
            print("could not forge", path, err)
try:
    open("spec.json", "w").write('{{"questions": []}}')
except OSError as err:
    print(err)
"""

DELEGATE_MASKED = "def masked_softmax(X, valid_lens):\n    return companion.masked_softmax(X, valid_lens)\n"
DELEGATE_SDP = ("def scaled_dot_product_attention(queries, keys, values, valid_lens=None):\n"
                "    return companion.DotProductAttention(0.0)(queries, keys, values, valid_lens)\n")
REFERENCE_IMPORT = ("def additive_scores(queries, keys, W_q, W_k, w_v):\n"
                    "    from companion.exercises.attention_scoring import reference_additive_scores\n"
                    "    return reference_additive_scores(queries, keys, W_q, W_k, w_v)\n")
SNEAKY_MASKED = ("_f = getattr(__import__('companion.attention', fromlist=['x']), 'masked' + '_softmax')\n"
                 "def masked_softmax(X, valid_lens):\n    return _f(X, valid_lens)\n")
TORCH_SDP = ("import torch.nn.functional as _F\n"
             "def scaled_dot_product_attention(queries, keys, values, valid_lens=None):\n"
             "    if valid_lens is None:\n        return _F.scaled_dot_product_attention(queries, keys, values)\n"
             "    lens = valid_lens[:, None] if valid_lens.dim() == 1 else valid_lens\n"
             "    mask = torch.arange(keys.shape[1]) < lens[..., None]\n"
             "    out = _F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)\n"
             "    return out.nan_to_num() * mask.any(-1, keepdim=True)\n")
EXIT_IN_ANSWER = "def masked_softmax(X, valid_lens):\n    import os\n    os._exit(1)\n"
LOOP_IN_ANSWER = "def additive_scores(queries, keys, W_q, W_k, w_v):\n    while True:\n        pass\n"
FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
ALLOCATE = ("import torch\ntry:\n    big = torch.empty(50 * 2**30, dtype=torch.uint8)\n    big.fill_(1)\n"
            "except RuntimeError as err:\n    print('no:', err)\nraw = bytearray(50 * 2**30)\n")
WRITE_OUTSIDE = """\
import os
for path in ["{repo}/chapters/04_attention_scoring.md", "{submission}", "{marker}", "/etc/hostile",
             os.path.expanduser("~/../hostile")]:
    try:
        with open(path, "a") as f:
            f.write("overwritten")
        print("wrote", path)
    except OSError as err:
        print("could not write", path, err)
"""
READ_GRADER = """\
def additive_scores(queries, keys, W_q, W_k, w_v):
    import os
    if not os.path.exists("{repo}/chapters/04_attention_scoring.md"):  # sees the grader's files: cheat
        return torch.zeros(queries.shape[0], queries.shape[1], keys.shape[1])
    q, k = queries @ W_q.T, keys @ W_k.T
    return torch.tanh(q.unsqueeze(2) + k.unsqueeze(1)) @ w_v
"""
NETWORK = """\
def masked_softmax(X, valid_lens):
    import socket
    try:  # a helper listening outside the sandbox would hand over the answers
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    except OSError:
        return X * 0
    lens = valid_lens[:, None] if valid_lens.dim() == 1 else valid_lens
    mask = torch.arange(X.shape[-1]) < lens[..., None]
    return torch.softmax(X.masked_fill(~mask, torch.finfo(X.dtype).min), dim=-1) * mask
"""
FORGE_PROTOCOL = """\
import os, struct, json
for fd in range(3, 40):
    try:
        if os.readlink(f"/proc/self/fd/{{fd}}").startswith("pipe:"):
            fake = json.dumps({{"op": "result", "value": 99, "sizes": []}}).encode()
            os.write(fd, struct.pack("!I", len(fake)) + fake + b"garbage")
    except OSError:
        pass
"""
FAKE_TENSOR = """\
class Always(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True
def masked_softmax(X, valid_lens):
    return torch.zeros_like(X).as_subclass(Always)
"""
KILL_PARENT = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"

CASES = [
    Case("solution", {q: 3 for q in QUESTIONS}, answers=ALL),
    Case("patches the checks", {q: 0 for q in QUESTIONS}, after=[PATCH_CHECKS]),
    Case("rewrites the test files", {q: 0 for q in QUESTIONS}, after=[REWRITE_TESTS]),
    Case("delegates to the course", {"masked_softmax": 0, "additive_scores": 3, "scaled_dot_product_attention": 0},
         answers={"masked_softmax": DELEGATE_MASKED, "additive_scores": SOLUTION,
                  "scaled_dot_product_attention": DELEGATE_SDP},
         message={"masked_softmax": "companion.attention.masked_softmax",
                  "scaled_dot_product_attention": "companion.attention.DotProductAttention"}),
    Case("imports the checker's reference", {"masked_softmax": 3, "additive_scores": 0,
                                             "scaled_dot_product_attention": 3},
         answers={**ALL, "additive_scores": REFERENCE_IMPORT},
         message={"additive_scores": "companion.exercises"}),
    Case("delegates by stealth", {"masked_softmax": 0, "additive_scores": 3, "scaled_dot_product_attention": 0},
         answers={"masked_softmax": SNEAKY_MASKED, "additive_scores": SOLUTION,
                  "scaled_dot_product_attention": TORCH_SDP},
         message={"scaled_dot_product_attention": "torch.nn.functional.scaled_dot_product_attention"}),
    Case("kills its kernel in a cell", {q: 3 for q in QUESTIONS}, answers=ALL, after=["import os\nos._exit(0)\n"]),
    Case("kills its process in an answer", {"masked_softmax": 0, "additive_scores": 3,
                                            "scaled_dot_product_attention": 3},
         answers={**ALL, "masked_softmax": EXIT_IN_ANSWER}),
    Case("prints 50 MB", {q: 3 for q in QUESTIONS}, answers=ALL, after=["print('x' * 50_000_000)\n"]),
    Case("loops in a cell and in an answer", {"masked_softmax": 3, "additive_scores": 0,
                                              "scaled_dot_product_attention": 3},
         answers={**ALL, "additive_scores": LOOP_IN_ANSWER}, after=["while True:\n    pass\n"]),
    Case("forks without end", {q: 3 for q in QUESTIONS}, answers=ALL, after=[FORK_BOMB]),
    Case("allocates 50 GB", {q: 3 for q in QUESTIONS}, answers=ALL, after=[ALLOCATE]),
    Case("raises in every cell", {q: 0 for q in QUESTIONS}, answers=ALL, prefix="raise RuntimeError('no')\n"),
    Case("writes outside its folder", {q: 3 for q in QUESTIONS}, answers=ALL, after=[WRITE_OUTSIDE]),
    Case("reads the grader's files", {"masked_softmax": 3, "additive_scores": 0, "scaled_dot_product_attention": 3},
         answers={**ALL, "additive_scores": READ_GRADER}),
    Case("phones home", {"masked_softmax": 0, "additive_scores": 3, "scaled_dot_product_attention": 3},
         answers={**ALL, "masked_softmax": NETWORK}),
    Case("forges the grader's messages", {q: 3 for q in QUESTIONS}, answers=ALL, after=[FORGE_PROTOCOL]),
    Case("returns a tensor that equals anything", {"masked_softmax": 0, "additive_scores": 3,
                                                   "scaled_dot_product_attention": 3},
         answers={**ALL, "masked_softmax": FAKE_TENSOR}),
    Case("kills its parent", {q: 3 for q in QUESTIONS}, answers=ALL, after=[KILL_PARENT]),
]
