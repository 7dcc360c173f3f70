"""The first release's import path of the training-script API, kept for the scripts that use it
(``from chiml.lifecycle import tracking as ct``); new scripts write ``from chiml import tracking as ct``."""

from chiml.tracking import *  # noqa: F403
from chiml.tracking import __all__  # noqa: F401
