"""Progress bars where someone is watching: a terminal, or a notebook run by hand.

tqdm's own default (`disable=None`) draws on a terminal only. A Jupyter or Colab
kernel's stderr is not a terminal, so there an hour of SegNet training would
show nothing at all. `progress_bar` draws in a notebook too: ipywidgets' bar
where ipywidgets is installed (Colab, most Jupyter installs), else one line of
text that carriage returns redraw. A notebook's output has no cursor to move
up, which tqdm's stacked text bars would need, so text bars there share that
line: a finished bar stays, the next one draws below it. Each redraw of a text bar
is an output of its own in the saved notebook (papermill run by hand keeps them
all), so there they redraw at most every NOTEBOOK_TEXT_INTERVAL_S seconds.

$F1LIB_PROGRESS overrides the choice: 1 draws everywhere, 0 nowhere.
`f1lib.reproduce` and the book's nbval run set 0 for their kernels, since
papermill would store every redraw of a bar in the executed notebook.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Iterable

from tqdm import tqdm

ENV = "F1LIB_PROGRESS"
# a notebook's text bars: some 12 redraws a minute, not tqdm's 10 a second (a bar's
# first and last draws come whatever the interval)
NOTEBOOK_TEXT_INTERVAL_S = 5.0
_ON, _OFF = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (Jupyter, Colab, VS Code, papermill's):
    there sys.stderr is ipykernel's stream."""
    return type(sys.stderr).__module__.startswith("ipykernel")


def show_progress(show: bool | None = None) -> bool:
    """Whether to draw progress bars: `show` when it is given, else what $F1LIB_PROGRESS
    says, else on a terminal or in a notebook."""
    if show is not None:
        return bool(show)
    setting = os.environ.get(ENV, "").strip().lower()
    if setting in _ON:
        return True
    if setting in _OFF:
        return False
    if setting:
        raise ValueError(f"${ENV} is 1 (draw progress bars) or 0 (none), or unset (on a "
                         f"terminal or in a notebook): got {os.environ[ENV]!r}")
    return sys.stderr.isatty() or in_notebook()


def progress_bar(iterable: Iterable | None = None, *, show: bool | None = None,
                 **options) -> tqdm:
    """A tqdm bar over `iterable` (or to update by hand), drawn where `show_progress(show)`
    says; `options` go to tqdm."""
    if not show_progress(show):
        return tqdm(iterable, disable=True, **options)
    if in_notebook():
        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.notebook import tqdm as widget_bar
            return widget_bar(iterable, **options)
        options["position"] = 0
        options.setdefault("mininterval", NOTEBOOK_TEXT_INTERVAL_S)
    return tqdm(iterable, disable=False, **options)
