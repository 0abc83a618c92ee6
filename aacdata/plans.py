"""Window plans: kept importable as ``aacdata.plans``; the code lives in ``aacdata.data.plans``."""

import sys

from .data import plans as _module
from .data.plans import *  # noqa: F403

sys.modules[__name__] = _module
