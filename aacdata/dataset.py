"""The dataset: kept importable as ``aacdata.dataset``; the code lives in ``aacdata.data.dataset``."""

import sys

from .data import dataset as _module
from .data.dataset import *  # noqa: F403

sys.modules[__name__] = _module
