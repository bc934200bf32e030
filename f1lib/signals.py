"""A stop that lands between training steps."""

from __future__ import annotations

import signal
import threading


class HeldSignals:
    """SIGINT and SIGTERM held back while the block trains, so that a stop lands between
    steps: a signal only sets `signum` (and puts the previous handlers back, so that a
    second one acts at once); the trainer then writes its checkpoint and calls `act()`,
    which lets the signal do what it would have done (Ctrl-C or Jupyter's interrupt
    raise KeyboardInterrupt). Inactive off the main thread, where Python cannot install
    handlers, for a signal that is ignored, and where a handler was installed outside
    Python."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, active: bool = True):
        self.active, self.signum, self.previous = active, None, {}

    def __enter__(self) -> "HeldSignals":
        if self.active and threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                handler = signal.getsignal(signum)
                if handler not in (None, signal.SIG_IGN):  # an ignored signal stays ignored
                    self.previous[signum] = handler
                    signal.signal(signum, self._hold)
        return self

    def _hold(self, signum, frame) -> None:
        self.signum = signum
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def act(self) -> None:
        """The held signal, if any, delivered now to the handlers that were there before."""
        if self.signum is not None:
            self._restore()
            signum, self.signum = self.signum, None
            signal.raise_signal(signum)

    def __exit__(self, *exc) -> None:
        self._restore()
        if exc[0] is None:
            self.act()
