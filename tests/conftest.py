"""Session set-up shared by the tests."""

import signal


def pytest_configure(config):
    # A shell without job control starts background commands with SIGINT ignored (`make
    # test &` in a script, `(... &)`), and Python then installs no KeyboardInterrupt
    # handler. The tests of Ctrl-C need the handler an interactive run has; the
    # processes that they start inherit it as the default disposition.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
