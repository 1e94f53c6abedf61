"""Keep the cyclic garbage collector's full passes short: the objects of start-up are frozen.

With TensorFlow and a model loaded, the worker holds ~0.6 million Python objects that live
as long as it does. CPython's collector walks all of them in each full (generation 2) pass,
~0.4 s with MobileNetV2 loaded, holding the GIL: the fetch thread and the Kafka thread
stop meanwhile, and every event in flight waits. Such passes come whenever enough new
objects have survived, minutes apart under load. `gc.freeze` moves every object alive to
a generation the collector never walks, so a full pass only walks what came after.

Frozen objects are still freed by reference counting; only their cycles are never
collected. So a model version that is replaced, whose objects were frozen and hold cycles
(TensorFlow's do), would never be freed: after a swap everything is thawed, collected once
(one long pass, at the swap, between batches) and frozen again.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze(why: str) -> None:
    """Collect what is garbage now, then freeze everything left alive."""
    begun = time.monotonic()
    gc.unfreeze()  # what an earlier freeze kept: its garbage is collected now too
    gc.collect()
    gc.freeze()
    log.info(
        "%s: %d objects frozen out of the garbage collector's passes (%.2f s)",
        why,
        gc.get_freeze_count(),
        time.monotonic() - begun,
    )


def thaw() -> None:
    """Give every frozen object back to the collector (the worker is done)."""
    gc.unfreeze()
