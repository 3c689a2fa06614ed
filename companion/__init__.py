"""Companion code for the course "Attention, from kernels to Transformers".

``import companion`` and then ``companion.X`` reaches every name a chapter uses; each
is defined in one module:

- models, one topic per module: ``cues`` (chapter 1), ``pooling`` (2-3),
  ``attention`` (4), ``seq2seq`` (5), ``multihead`` (6), ``positional`` (7),
  ``transformer`` (8), ``transformer_seq2seq`` (9), ``conv_attention`` and
  ``layer_types`` (10), ``gating`` and ``gmlp`` (11), ``chunked_attention`` and
  ``local_attention`` (12);
- ``decoding`` and ``training``: greedy decoding and the training loops;
- ``tasks``: the data, generated from a seed (the toy regression, text and dates,
  the synthetic sequence tasks);
- ``experiments``: each chapter's experiment, in a module named for it
  (``experiments.scaling`` for chapter 4's sqrt(d) experiment);
- ``metrics``, ``plotting``, ``utils``: measures, figures, devices and seeds, the
  shared argument checks; ``measure``: timing and peak memory, the one way every
  chapter measures cost;
- ``exercises``: the checks of the graded exercises; ``grading``: what a Colab
  edition needs to run them.

Shapes. Every ``Shapes:`` line and shape comment uses these letters, each with one
meaning:

============  =======================================================================
B             sequences (or sets of queries) in a batch
N             examples in a data set or a split, or samples in an experiment
n             items: the positions of a sequence, or the queries of chapter 3's batch
m             keys per query in chapter 3's batch (n, m)
n_q, n_k      queries; keys (and values)
t             positions already decoded, held in a cache
T_src, T_tgt  source positions; target positions (sequence to sequence)
d             width: the query and key size, num_hiddens of a Transformer
d_v           value size
h, d_h        attention heads; each head's size d / h
d_ff          hidden units of the position-wise FFN (ffn_num_hiddens)
H             hidden units: of a GRU, or of additive attention's tanh layer
c             content features of chapter 6's two-neighbours task
E             embedding size of a GRU model
L             layers (num_layers, num_blks)
V, V_tgt      vocabulary size; the target's
C             classes
...           any leading axes
============  =======================================================================

Other sizes are written out by name (max_len, query_size, content_size, ...).
"""
from . import (attention, cues, decoding, experiments, metrics, multihead, plotting,
               pooling, positional, seq2seq, tasks, training, transformer,
               transformer_seq2seq, utils)
from . import measure
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
from .measure import *  # noqa: F401,F403

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
    *measure.__all__,
]
# Part IV, chapters 10-12: one block per chapter, each importing its own modules.
# chapter 10
from . import conv_attention, layer_types
from .conv_attention import *  # noqa: F401,F403
from .layer_types import *  # noqa: F401,F403
__all__ += conv_attention.__all__ + layer_types.__all__
# chapter 11
from . import gating, gmlp
from .gating import *  # noqa: F401,F403
from .gmlp import *  # noqa: F401,F403
__all__ += gating.__all__ + gmlp.__all__
# chapter 12
from . import chunked_attention as _chunked_attention_module
from . import local_attention
from .chunked_attention import *  # noqa: F401,F403
from .local_attention import *  # noqa: F401,F403
__all__ += _chunked_attention_module.__all__ + local_attention.__all__
# Architecture diagrams (chapters 5, 6, 8, 9; the primitives serve later chapters).
from . import diagrams
from .diagrams import *  # noqa: F401,F403
__all__ += diagrams.__all__
from . import diagrams_part5
from .diagrams_part5 import *  # noqa: F401,F403
__all__ += diagrams_part5.__all__
# Part V, chapters 13-15: one block per chapter.
# chapter 13
from . import cnn_baseline, vision_transformer
from .cnn_baseline import *  # noqa: F401,F403
from .vision_transformer import *  # noqa: F401,F403
__all__ += cnn_baseline.__all__ + vision_transformer.__all__
# chapter 14
from . import graph_attention
from .graph_attention import *  # noqa: F401,F403
__all__ += graph_attention.__all__
# chapter 15
from . import station_attention as _station_attention_module
from .station_attention import *  # noqa: F401,F403
__all__ += _station_attention_module.__all__
