"""`pytest --nbval book/` validates the notebooks under the smoke profile unless
$F1LIB_PROFILE names another: "auto" would otherwise resolve to quick (CPU) or paper
(CUDA), whose figures land in the committed figures/ (f1lib.provenance.figures_dir).
nbval's kernels inherit this process's environment. Nor do they draw progress bars
(f1lib.progress), as `f1lib.reproduce`'s kernels do not."""

import os

os.environ.setdefault("F1LIB_PROFILE", "smoke")
os.environ.setdefault("F1LIB_PROGRESS", "0")
