"""A task module whose task cannot be registered: it is defined inside a function."""

from conductor_worker import task


def make():
    @task(name="inner-task")
    def inner(event, ctx):
        return None

    return inner


inner_task = make()
