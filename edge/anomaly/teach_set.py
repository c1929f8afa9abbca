"""How many good images a fit needs, and which of them are held back (light: no image code).

The web UI checks a technician's pick with these before it starts a job, and the job
splits it the same way: a refusal comes at once, in the form, not minutes later.
"""

from __future__ import annotations

#: fewer good images than this cannot give held-out scores worth a threshold
MIN_GOOD = 10
#: fewest held-back images worth a verification (INT8 against FP32, unseen good scores)
MIN_HELD = 3


class TeachSetError(ValueError):
    """A pick of good images the method cannot be fitted on; the message says why."""


def split(shas: list[str], hold_every: int) -> tuple[list[str], list[str]]:
    """(teach, held): every `hold_every`-th pick held back, in the order picked.

    The held-back images are never fitted on: `verify` compares INT8 with FP32 on them,
    and their scores against the fitted model show how unseen good units fare against
    the threshold.
    """
    if hold_every < 2:
        raise TeachSetError("hold_every must be 2 or more: some good images must stay unseen")
    if len(set(shas)) != len(shas):
        raise TeachSetError("the same image was picked twice")
    held = [s for i, s in enumerate(shas) if i % hold_every == hold_every - 1]
    teach = [s for i, s in enumerate(shas) if i % hold_every != hold_every - 1]
    if len(teach) < MIN_GOOD or len(held) < MIN_HELD:
        need = max(MIN_GOOD + MIN_HELD, hold_every * MIN_HELD)
        raise TeachSetError(
            f"{len(shas)} good images picked: {len(teach)} to fit on and {len(held)} held back "
            f"for verification (one in {hold_every}); pick at least {need} "
            f"({MIN_GOOD} to fit on, {MIN_HELD} held back)"
        )
    return teach, held
