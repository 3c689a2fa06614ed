"""Each chapter's experiment, in a module named for it: what the chapter measures,
built on the models."""
from . import cost, heads, norm_placement, positions, scaling
from .cost import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .norm_placement import *  # noqa: F401,F403
from .positions import *  # noqa: F401,F403
from .scaling import *  # noqa: F401,F403

__all__ = [
    *scaling.__all__, *heads.__all__, *positions.__all__, *norm_placement.__all__,
    *cost.__all__,
]
# Part IV, chapters 10-12: one block per chapter.
# chapter 10
# chapter 11
# chapter 12
