"""A task module with an invalid option: the worker must refuse to start."""

from conductor_worker import task


@task(name="bad-window", window=("22:00", "22:00"))
def bad_window(event, ctx):
    return None
