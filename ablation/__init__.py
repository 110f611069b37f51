"""sr-ablation: a reproducible ablation study of small super-resolution CNNs.

Importing this package has no side effects: no argv parsing, no disk access, no device choice.
The submodules are imported on demand (``from ablation import models``).
"""

__version__ = "0.1.0"
