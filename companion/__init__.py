"""Companion code for the course "Attention, from kernels to Transformers": every algorithm the chapters show.

``import companion`` and then ``companion.X`` reaches every name a chapter uses; each lives in one module:

- models, one topic per module: ``cues`` (1), ``pooling`` (2-3), ``attention`` (4), ``seq2seq`` (5),
  ``multihead`` (6), ``positional`` (7), ``transformer`` (8), ``transformer_seq2seq`` (9);
- ``decoding`` and ``training``: greedy decoding and the training loops the models share;
- ``tasks``: the data, generated from a seed (the toy regression, text and dates, synthetic sequence tasks);
- ``experiments``: each chapter's experiment, in a module named for it (``experiments.scaling`` for chapter 4);
- ``metrics``, ``plotting``, ``utils``: measures, figures, and devices, seeds and argument checks;
- ``exercises``: the checks of the graded exercises; ``grading``: what a Colab edition needs to run them.
"""
from . import (attention, cues, decoding, experiments, metrics, multihead, plotting, pooling, positional, seq2seq,
               tasks, training, transformer, transformer_seq2seq, utils)
from .attention import *  # noqa: F401,F403
from .cues import *  # noqa: F401,F403
from .decoding import *  # noqa: F401,F403
from .experiments import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .multihead import *  # noqa: F401,F403
from .plotting import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .positional import *  # noqa: F401,F403
from .seq2seq import *  # noqa: F401,F403
from .tasks import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
from .transformer_seq2seq import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403

__all__ = [
    *utils.__all__,
    *tasks.__all__,
    *cues.__all__,
    *pooling.__all__,
    *metrics.__all__,
    *attention.__all__,
    *seq2seq.__all__,
    *decoding.__all__,
    *training.__all__,
    *multihead.__all__,
    *positional.__all__,
    *plotting.__all__,
    *transformer.__all__,
    *transformer_seq2seq.__all__,
    *experiments.__all__,
]
