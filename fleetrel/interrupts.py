"""Signals and prompts around a run in a terminal: the CLI's side of stopping a run.

    result = anyio.run(lambda: with_signals(lambda stop: run(plan, stop=stop)))
    answer = await ask(lambda: click.confirm("Start wave 2?"))    # None on Ctrl-C/Ctrl-D
    if ask_now(lambda: click.confirm("Apply 25 steps?")): ...     # before a run: Ctrl-C is 130

The first SIGINT or SIGTERM asks the engine to stop (`Stop.request`): no new attempt
starts and the run ends as soon as the calls in flight are answered, which is at once
when there are none. A second signal, or `grace` seconds, cancels the calls in flight
(their steps stay unfinished and a resume sends them with the same clientTokens).
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Awaitable, Callable, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from fleetrel.engine import Stop

T = TypeVar("T")


async def with_signals(body: Callable[[Stop], Awaitable[T]], *, grace: float = 10.0) -> T:
    """Run `body(stop)` with SIGINT/SIGTERM turned into `stop` requests."""
    stop = Stop()
    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch, stop, grace)
        try:
            result = await body(stop)
        except Exception as exc:  # raised as it is below, not wrapped in the task group's ExceptionGroup
            failure = exc
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def _watch(stop: Stop, grace: float) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            break
        stop.request("interrupted")
        with anyio.move_on_after(grace):
            async for _ in signals:  # a second signal: stop now
                break
        stop.now()


async def ask(question: Callable[[], T]) -> T | None:
    """`question()` (a blocking prompt) in a daemon thread; None if it was interrupted
    (EOF, click's Abort) — and if the run stops meanwhile, the caller's cancellation
    leaves the thread behind without keeping the process alive, as a worker thread would."""
    return (await _asked(question)).get("value")


def ask_now(question: Callable[[], T]) -> T:
    """`question()` (a blocking prompt) before any run, answered or raising as it would,
    but with Ctrl-C honoured at every moment: asked in a thread while this one waits in an
    event loop, which a signal always wakes. (Asked here directly, a SIGINT that lands
    after the prompt is printed and before its read() begins is lost: the process sits in
    read() until Enter.) Ctrl-C raises KeyboardInterrupt here; EOF and click's Abort are
    raised as the prompt raised them."""
    outcome = anyio.run(_asked, question)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def _asked(question: Callable[[], T]) -> dict[str, Any]:
    """{"value": the answer} or {"error": what the prompt raised}, the prompt in a daemon thread."""
    done = anyio.Event()
    token = anyio.lowlevel.current_token()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = question()
        except BaseException as exc:  # noqa: BLE001 - EOF/Abort/KeyboardInterrupt: no answer
            outcome["error"] = exc
        try:
            anyio.from_thread.run_sync(done.set, token=token)
        except RuntimeError:
            pass  # the loop is gone: nobody waits for the answer any more

    threading.Thread(target=target, name="fleetrel-prompt", daemon=True).start()
    await done.wait()
    return outcome
