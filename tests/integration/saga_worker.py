"""A saga host for tests/integration/test_sagas.py, run as its own process so that the
test can kill it with SIGKILL in the middle of a saga.

    python -m tests.integration.saga_worker BOOTSTRAP WORKDIR TAG SAGA_ID MODE

runs the saga ``checkout`` (reserve/release, charge/refund, ship) with the actions of
:func:`make_actions`. ``MODE`` ``block-step``: step 1 (charge) waits until
``WORKDIR/release`` exists. ``block-compensation``: step 2 (ship) fails and the
compensation of step 1 (refund) waits until ``WORKDIR/release`` exists.

Every action appends ``<name> run <run>`` / ``<name> attempt <attempt>`` to
``WORKDIR/journal`` when it starts (so the test sees what ran, in order) and takes its
effect at most once: the effect is a line in ``WORKDIR/effects``, written only by the
action that creates the step's idempotency marker ``WORKDIR/<name>.done``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from edgebus.sagas.runner import SagaAction, SagaContext, SagaRunner

STEP_NAMES = ("reserve", "charge", "ship")
COMPENSATION_NAMES = ("release", "refund", None)


def action_names(tag: str) -> list[tuple[str, str | None]]:
    """The steps of the test saga, with this test's action names."""
    return [
        (f"{tag}.{step}", f"{tag}.{comp}" if comp else None)
        for step, comp in zip(STEP_NAMES, COMPENSATION_NAMES, strict=True)
    ]


def read_lines(path: Path) -> list[str]:
    """The lines of a journal or effects file (none if it does not exist yet)."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def make_actions(workdir: Path, tag: str, mode: str) -> dict[str, SagaAction]:
    """The test saga's actions, registered under ``<tag>.<name>``."""

    def action(name: str) -> SagaAction:
        async def perform(ctx: SagaContext) -> Any:
            when = f"run {ctx.run}" if ctx.phase == "step" else f"attempt {ctx.attempt}"
            _append(workdir / "journal", f"{name} {when}")
            blocks = (mode == "block-step" and name == "charge") or (
                mode == "block-compensation" and name == "refund"
            )
            # another process creates the file: no asyncio.Event can tell this one
            while blocks and not (workdir / "release").exists():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if mode == "block-compensation" and name == "ship":
                raise RuntimeError("no courier available")
            try:  # the idempotency marker: the first run to create it takes the effect
                os.close(os.open(workdir / f"{name}.done", os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                _append(workdir / "effects", name)
            return {"done": name, "key": ctx.idempotency_key}

        return perform

    names = [n for n in (*STEP_NAMES, *COMPENSATION_NAMES) if n is not None]
    return {f"{tag}.{name}": action(name) for name in names}


def saga_config(bootstrap: str, tag: str) -> dict[str, Any]:
    """The test's edge_config: one region of its own, so the saga progress topic
    (``edgebus.<tag>-saga.sagas``) holds only this test's sagas."""
    return {
        "discovery": {"locations": [f"{tag}-saga"]},
        "kafka": {"bootstrap": bootstrap, "connect_timeout_s": 20},
    }


async def main(bootstrap: str, workdir: Path, tag: str, saga_id: str, mode: str) -> None:
    config = saga_config(bootstrap, tag)
    async with SagaRunner(config, make_actions(workdir, tag, mode), retry_delay_ms=10) as runner:
        result = await runner.run(saga_id, "checkout", action_names(tag), context={"order": 7})
    print(json.dumps(result.to_dict()), flush=True)


if __name__ == "__main__":
    bootstrap_, workdir_, tag_, saga_id_, mode_ = sys.argv[1:6]
    asyncio.run(main(bootstrap_, Path(workdir_), tag_, saga_id_, mode_))
