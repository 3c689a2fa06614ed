"""Data tasks, each generated from a seed, none downloaded.

The toy regression (chapters 2-3), text as indices and the dates task (chapter 5),
the synthetic sequence tasks (chapters 6-9).
"""
from . import dates, regression, synthetic, text
from .dates import *  # noqa: F401,F403
from .regression import *  # noqa: F401,F403
from .synthetic import *  # noqa: F401,F403
from .text import *  # noqa: F401,F403

__all__ = [*regression.__all__, *text.__all__, *dates.__all__, *synthetic.__all__]
# Part IV, chapters 10-12: one block per chapter.
# chapter 10
from . import long_range
from .long_range import *  # noqa: F401,F403
__all__ += long_range.__all__
# chapter 11
# chapter 12
from . import frames
from .frames import *  # noqa: F401,F403
__all__ += frames.__all__
# Part V, chapters 13-15: one block per chapter.
# chapter 13
from . import digits, fashion_mnist
from .digits import *  # noqa: F401,F403
from .fashion_mnist import *  # noqa: F401,F403
__all__ += digits.__all__ + fashion_mnist.__all__
# chapter 14
from . import dictionary_lookup, karate
from .dictionary_lookup import *  # noqa: F401,F403
from .karate import *  # noqa: F401,F403
__all__ += dictionary_lookup.__all__ + karate.__all__
# chapter 15
from . import stations
from .stations import *  # noqa: F401,F403
__all__ += stations.__all__
