"""Progress labels are text, not rich markup: '[ray]' in a name is shown, not swallowed."""

from actlab.engine.sweep import _bar


def test_sweep_bar_shows_brackets_in_its_label():
    label = "C5 [moe] runs with actlab[ray]"
    with _bar(False, label, total=3, done=1) as bar:
        task = bar.progress.tasks[0]
        shown = bar.progress.columns[0].render(task).plain
    assert shown == label
