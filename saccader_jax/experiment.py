"""The old name of `saccader_jax.research` (the research API's `Run`),
easily taken for the top-level folder `experiments/`; kept so that scripts
that import it keep working, with a DeprecationWarning."""

import warnings

from saccader_jax.research import Run  # pylint: disable=unused-import
from saccader_jax.research import TrainedStage  # pylint: disable=unused-import

warnings.warn("saccader_jax.experiment is now saccader_jax.research "
              "(saccader_jax.Run is the same class under either).",
              DeprecationWarning, stacklevel=2)
