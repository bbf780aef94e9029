"""LLMSynthor (Tang, Kong, Sun et al., arXiv 2505.14752): structured records aligned to target statistics by a
discrepancy-guided LLM loop. The spec every equation and choice cites is ``LLMSYNTHOR.md`` (shared); the
user-facing description is ``docs/llmsynthor.md``. No Kedro import here.
"""

from .statistics import TargetStatistics, target_from_dict, target_from_table
from .synthor import SynthorConfig, SynthorResult, run_llmsynthor
from .variables import StructuredInputError, VariableSet, VariableSpec, load_variables, validate_records

__all__ = [
    "StructuredInputError",
    "SynthorConfig",
    "SynthorResult",
    "TargetStatistics",
    "VariableSet",
    "VariableSpec",
    "load_variables",
    "run_llmsynthor",
    "target_from_dict",
    "target_from_table",
    "validate_records",
]
