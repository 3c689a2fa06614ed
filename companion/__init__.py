"""Companion code for the course "Attention, from kernels to Transformers": every algorithm the chapters show."""
from . import (attention, cues, data, dates, metrics, multihead, plotting, pooling, positional, seq2seq, training,
               transformer, transformer_seq2seq, utils)
from .attention import *  # noqa: F401,F403
from .cues import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .dates import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .multihead import *  # noqa: F401,F403
from .plotting import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .positional import *  # noqa: F401,F403
from .seq2seq import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
from .transformer_seq2seq import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403

__all__ = [
    *utils.__all__,
    *data.__all__,
    *cues.__all__,
    *pooling.__all__,
    *metrics.__all__,
    *attention.__all__,
    *dates.__all__,
    *seq2seq.__all__,
    *multihead.__all__,
    *positional.__all__,
    *plotting.__all__,
    *training.__all__,
    *transformer.__all__,
    *transformer_seq2seq.__all__,
]
