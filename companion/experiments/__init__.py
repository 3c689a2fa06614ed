"""Each chapter's experiment, in a module named for it: what the chapter measures,
built on the models."""
from . import cost, heads, norm_placement, positions, scaling, transformer_dates
from .cost import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .norm_placement import *  # noqa: F401,F403
from .positions import *  # noqa: F401,F403
from .scaling import *  # noqa: F401,F403
from .transformer_dates import *  # noqa: F401,F403

__all__ = [
    *scaling.__all__, *heads.__all__, *positions.__all__, *norm_placement.__all__,
    *cost.__all__, *transformer_dates.__all__,
]
# Part IV, chapters 10-12: one block per chapter.
# chapter 10
from . import layer_cost
from .layer_cost import *  # noqa: F401,F403
__all__ += layer_cost.__all__
# chapter 11
from . import gating_vs_attention
from .gating_vs_attention import *  # noqa: F401,F403
__all__ += gating_vs_attention.__all__
# chapter 12
from . import long_sequences
from .long_sequences import *  # noqa: F401,F403
__all__ += long_sequences.__all__
# Part V, chapters 13-15: one block per chapter.
# chapter 13
from . import vision_transformer as _vision_transformer_experiment
from .vision_transformer import *  # noqa: F401,F403
__all__ += _vision_transformer_experiment.__all__
# chapter 14
from . import graph_attention
from .graph_attention import *  # noqa: F401,F403
__all__ += graph_attention.__all__
# chapter 15
from . import station_attention as _station_attention_experiment
from .station_attention import *  # noqa: F401,F403
__all__ += _station_attention_experiment.__all__
