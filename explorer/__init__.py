"""Deep Dream and style-visualization explorer.

Twelve subpackages, listed from the ground floor up (README, "Layout"; each imports only its
own floor and the ones before it): ``core`` (settings, recipes, runs, progress events, devices),
``io`` (decoding, images, outputs), ``nets`` (registry with each network's default layers,
weights, models, memory estimates), ``optim`` (losses and objectives), ``activations``,
``style`` (Gatys style transfer), ``saliency``, ``dream``, ``featurevis``, ``batch`` (sweeps and
augmentation), ``app`` (the only Streamlit code) and ``cli`` (``explorer`` / ``python -m explorer``).

Importing the package before torch sets ``GOMP_SPINCOUNT=20000`` unless it is set already:
torch's OpenMP threads then wait about a millisecond, not tens of milliseconds, spinning after
each parallel operation, so they no longer take the cores from NNPACK's threads while the
Winograd convolutions run (:mod:`explorer.nets.winograd`). On the 2-core development CPU that made a
256 px fp32 style-transfer step 0.41 -> 0.33 s and changed bf16 and direct convolutions by less
than the noise (bench/README.md, ``bench_speed.py``). It must be set before torch loads OpenMP.
"""

import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    _os.environ.setdefault("GOMP_SPINCOUNT", "20000")

__version__ = "0.1.0"
