"""A release rolled out on the local target: install, switch, restart, gates - and back by
itself when a gate fails.

Why in this order: the new release is installed beside the running one (nothing changes while
it builds), ``current`` switches atomically, the services restart from it, and each gate must
pass; the first that fails switches ``current`` back to the release that ran before, restarts
it, records the automatic rollback with the gate's reason in the history, and raises. A manual
``rollback --to`` with a supervisor restarts the services the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.gates import Gate
from mts1b_deploy.history import Generation
from mts1b_deploy.local import LocalTarget, ReleaseRequest
from mts1b_deploy.supervisor import Supervisor

__all__ = ["GateFailed", "restart", "rollout"]

Log = Callable[[str], None]


class GateFailed(ReleaseError):
    """A health gate failed; the release that ran before is current again."""

    code = "DEPLOY.GATE_FAILED"


def restart(supervisor: Supervisor, log: Log) -> None:
    supervisor.stop(log)
    supervisor.start(log)


def rollout(target: LocalTarget, request: ReleaseRequest, supervisor: Supervisor,
            gates: Sequence[Gate], log: Log = lambda _: None,
            guard: Callable[[Log], None] | None = None) -> Generation:
    """Install ``request``, make it current, restart the services, run ``gates``; on a failed
    gate go back to the previous release (raises :class:`GateFailed`). ``guard`` runs first
    and may refuse by raising, before anything is installed (the OMS's working orders:
    :class:`~mts1b_deploy.omscheck.OrdersGuard`)."""
    if guard is not None:
        guard(log)
    previous = target.current()
    generation = target.install(request, log)  # the running services are untouched so far
    for gate in gates:
        gate.begin()
    restart(supervisor, log)
    for gate in gates:
        why = gate.check(supervisor)
        if why is None:
            log(f"gate {gate.name}: ok")
            continue
        log(f"gate {gate.name}: FAILED - {why}")
        if previous is None:
            supervisor.stop(log)
            raise GateFailed(f"generation {generation.generation} failed the gate "
                             f"{gate.name!r} ({why}); there is no earlier release to go back "
                             "to: the services are stopped", gate=gate.name)
        target.switch_to(previous, f"automatic rollback: gate {gate.name} failed: {why}")
        restart(supervisor, log)
        raise GateFailed(f"generation {generation.generation} failed the gate {gate.name!r} "
                         f"({why}); rolled back to generation {previous.generation} "
                         f"({previous.sha[:12]}), which runs again", gate=gate.name,
                         failed=generation.generation, current=previous.generation)
    return generation
