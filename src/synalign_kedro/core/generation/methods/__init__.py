"""One module per generation method, behind one registry: ``METHODS[name](context) -> pool rows``.

The names are those of :data:`synalign_kedro.core.variants.GENERATION_METHODS`; a method listed in
:data:`~synalign_kedro.core.variants.DEMONSTRATION_METHODS` gets the exploration's demonstration batches in its
context (and only those methods wait for the exploration pipeline).
"""

from __future__ import annotations

from collections.abc import Callable

from ...variants import GENERATION_METHODS
from ..context import GenerationContext
from .attrprompt import attrprompt
from .feedback import synalign_feedback
from .one_stage import synalign_one_stage
from .simprompt import simprompt
from .synalign import synalign

Method = Callable[[GenerationContext], list[dict]]

METHODS: dict[str, Method] = {
    "simprompt": simprompt,
    "attrprompt": attrprompt,
    "synalign_one_stage": synalign_one_stage,
    "synalign": synalign,
    "synalign_feedback": synalign_feedback,
}
if tuple(METHODS) != GENERATION_METHODS:  # pragma: no cover - a developer error, caught at import
    raise ImportError(f"generation methods {list(METHODS)} differ from core/variants.py {list(GENERATION_METHODS)}")
