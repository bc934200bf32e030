"""f1lib.progress: bars on a terminal and in a notebook run by hand; none where papermill
would store them; a study's worker processes moving one bar."""

import io
import signal
import sys

import nbformat
import pytest

from f1lib import Schedule, train
from f1lib import lp_study
from f1lib.lp_study import Problem, run_lp_study
from f1lib.progress import ENV, progress_bar, show_progress
from test_train import Interrupt, fresh, raise_interrupt, signal_at


class Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "pipe"])
def test_unset_it_draws_on_a_terminal_and_not_into_a_pipe(monkeypatch, tty):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", Stream(tty))
    assert show_progress() is tty
    for _ in progress_bar(range(3), desc="work"):
        pass
    assert ("work: 100%" in sys.stderr.getvalue()) is tty


@pytest.mark.parametrize("value, expected", [("1", True), ("on", True), (" 0 ", False),
                                             ("False", False)])
def test_the_environment_decides_over_the_stream(monkeypatch, value, expected):
    monkeypatch.setenv(ENV, value)
    monkeypatch.setattr(sys, "stderr", Stream(tty=not expected))
    assert show_progress() is expected
    # an explicit choice decides over both
    assert show_progress(not expected) is (not expected)


def test_an_unknown_setting_is_refused(monkeypatch):
    monkeypatch.setenv(ENV, "sometimes")
    with pytest.raises(ValueError, match="F1LIB_PROGRESS.*'sometimes'"):
        show_progress()


def test_in_a_notebook_kernel_bars_draw_on_one_line_and_the_environment_turns_them_off(
        monkeypatch, tmp_path):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    source = ("from f1lib.progress import progress_bar, show_progress\n"
              "print(show_progress())\n"
              "for _ in progress_bar(range(2), desc='outer', mininterval=0):\n"
              "    for _ in progress_bar(range(50), desc='inner', mininterval=0):\n"
              "        pass\n"
              "import time\n"
              "for _ in progress_bar(range(20), desc='slow'):\n"  # 1 s at tqdm's own 0.1 s
              "    time.sleep(0.05)\n")

    def run(setting: str | None):
        if setting is None:
            monkeypatch.delenv(ENV, raising=False)
        else:
            monkeypatch.setenv(ENV, setting)  # the kernel inherits this environment
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source)]
        nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
        outputs = nb.cells[0].outputs
        text = {name: "".join(o.get("text", "") for o in outputs if o.get("name") == name)
                for name in ("stdout", "stderr")}
        widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json"
                   in o.get("data", {})]
        return text, widgets

    (shown, widgets) = run(None)
    assert shown["stdout"] == "True\n"
    if not widgets:  # without ipywidgets: text bars
        assert "outer: 100%" in shown["stderr"] and "inner: 100%" in shown["stderr"]
        # no cursor movement, which a notebook's output cannot do (tqdm's stacked bars)
        assert "\x1b[" not in shown["stderr"]
        # papermill would keep every redraw: a second's bar draws when it starts and ends
        assert shown["stderr"].count("slow:") == 2
    (hidden, widgets) = run("0")
    assert hidden == {"stdout": "False\n", "stderr": ""} and not widgets


def test_a_callable_gets_every_step_once_across_a_stop_and_its_resumption(
        monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(ENV, "1")  # a callable replaces the bar even where bars are on
    schedule = Schedule(outer=3, inner=45, batch_size=16)  # reports every 2 steps and at 45
    steps: list[int] = []
    ckpt = tmp_path / "run.ckpt"
    model, reg, data = fresh()
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        with pytest.raises(Interrupt):  # mid-step in step 8 of outer loop 2
            train(model, data, reg, schedule=schedule, checkpoint=ckpt,
                  checkpoint_interval=1e9, task_loss=signal_at(45 + 8, signal.SIGTERM),
                  progress=steps.append)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sum(steps) == 45 + 8 and max(steps) <= 2
    before = len(steps)
    model, reg, data = fresh()
    train(model, data, reg, schedule=schedule, checkpoint=ckpt, progress=steps.append)
    assert sum(steps[before:]) == 3 * 45 - (45 + 8)
    assert capsys.readouterr().err == ""


class RecordedBar:
    """A stand-in for run_lp_study's bar that keeps its updates."""

    def __init__(self, total, **options):
        self.total, self.updates, self.closed = total, [], False

    def update(self, n):
        self.updates.append(n)

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.closed = True


@pytest.mark.parametrize("workers, interval", [(1, None), (2, 0.0), (2, 60.0)],
                         ids=["here", "workers reporting every time", "workers reporting late"])
def test_an_lp_study_moves_its_bar_while_it_trains_to_exactly_its_run_steps(
        monkeypatch, workers, interval):
    bars = []
    monkeypatch.setattr(lp_study, "progress_bar",
                        lambda **options: bars.append(RecordedBar(**options)) or bars[-1])
    if interval is not None:  # how often the workers send their steps
        monkeypatch.setattr(lp_study, "REPORT_INTERVAL_S", interval)
    problems = [Problem(1.5, 0.0), Problem(6.0, 5.0)]
    schedule = Schedule(outer=2, inner=100, batch_size=30)
    history, _ = run_lp_study(problems, ["paper", "stable"], 2, schedule, workers=workers)
    bar, = bars
    assert bar.closed
    runs = len(problems) * 2 * 2
    assert bar.total == runs * 200 == sum(bar.updates)
    assert len(history) == runs * 2
    if interval != 60.0:
        # every 5 steps of 2 x 100, in each of 2 jobs: the bar moved while they trained,
        # not only as each ended (which is all that a worker reporting late shows)
        assert sum(1 for n in bar.updates if n > 0) >= 2 * 20
