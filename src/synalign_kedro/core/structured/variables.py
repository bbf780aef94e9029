"""Variable descriptions (``data_desc``, LLMSYNTHOR.md §1.1) and the validation of record tables against them."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator


class StructuredInputError(ValueError):
    """Bad variable descriptions, target statistics or record table (the message names file/column/row)."""


class VariableSpec(BaseModel):
    """One variable: a categorical with its candidate list, or a numeric / integer with its closed range."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: Literal["categorical", "numeric", "integer"]
    description: str = ""
    categories: list[str] | None = None
    range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _check(self) -> VariableSpec:
        if self.type == "categorical":
            if not self.categories or len(set(self.categories)) != len(self.categories) or len(self.categories) < 2:
                raise ValueError(f"variable {self.name!r}: a categorical needs >= 2 distinct `categories`")
            if self.range is not None:
                raise ValueError(f"variable {self.name!r}: a categorical takes `categories`, not `range`")
        else:
            if self.range is None or not (self.range[0] < self.range[1]):
                raise ValueError(f"variable {self.name!r}: a {self.type} needs `range: [low, high]` with low < high")
            if self.categories is not None:
                raise ValueError(f"variable {self.name!r}: a {self.type} takes `range`, not `categories`")
        return self

    @property
    def is_categorical(self) -> bool:
        return self.type == "categorical"

    def describe(self) -> str:
        """One ``data_desc`` line in the paper's form (Fig. 19 [ICLR]): ``mode: ..., select from [...]``."""
        what = f"{self.description}, " if self.description else ""
        if self.is_categorical:
            return f"{self.name}: {what}select from {self.categories}"
        low, high = self.range  # type: ignore[misc]
        return f"{self.name}: {what}{self.type}, range {_num(low)}~{_num(high)}"


class VariableSet(BaseModel):
    """The variable set V, in a fixed order (the order of columns, prompts and contingency axes)."""

    model_config = ConfigDict(extra="forbid")

    variables: list[VariableSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> VariableSet:
        names = [v.name for v in self.variables]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate variable names {duplicates}")
        return self

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    def __getitem__(self, name: str) -> VariableSpec:
        for variable in self.variables:
            if variable.name == name:
                return variable
        raise KeyError(name)

    def describe(self) -> str:
        return "\n".join(v.describe() for v in self.variables)

    def canonical(self, group: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """A variable group in V's order, without repeats (groups are sets)."""
        wanted = set(group)
        return tuple(n for n in self.names if n in wanted)


def load_variables(obj: Any, source: str = "variables") -> VariableSet:
    """``VariableSet`` from ``[{name, type, ...}, ...]`` or ``{"variables": [...]}``; errors name ``source``."""
    try:
        if isinstance(obj, VariableSet):
            return obj
        if isinstance(obj, dict) and "variables" in obj:
            return VariableSet.model_validate(obj)
        return VariableSet.model_validate({"variables": obj})
    except Exception as error:  # pydantic.ValidationError: say where it came from
        raise StructuredInputError(f"{source}: invalid variable descriptions: {error}") from error


def validate_records(table: pd.DataFrame, variables: VariableSet, source: str = "table") -> pd.DataFrame:
    """The table's V columns, typed, or a :class:`StructuredInputError` naming the column, the row and what was
    expected (the same standard as the text ingestion). Extra columns are ignored."""
    missing = [n for n in variables.names if n not in table.columns]
    if missing:
        raise StructuredInputError(
            f"{source}: missing column(s) {missing}; expected the variables {variables.names}, found {list(table.columns)}"
        )
    if len(table) == 0:
        raise StructuredInputError(f"{source}: the table has no rows")
    out = {}
    for spec in variables.variables:
        column = table[spec.name]
        nulls = np.flatnonzero(column.isna().to_numpy())
        if len(nulls):
            raise StructuredInputError(f"{source}: column {spec.name!r} row {int(nulls[0])}: empty value")
        if spec.is_categorical:
            values = column.astype(str)
            bad = ~values.isin(spec.categories)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise StructuredInputError(
                    f"{source}: column {spec.name!r} row {row}: {values.iloc[row]!r} is not one of {spec.categories}"
                )
            out[spec.name] = values
        else:
            numbers = pd.to_numeric(column, errors="coerce")
            bad = numbers.isna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise StructuredInputError(
                    f"{source}: column {spec.name!r} row {row}: {column.iloc[row]!r} is not a number"
                )
            low, high = spec.range  # type: ignore[misc]
            outside = (numbers < low) | (numbers > high)
            if outside.any():
                row = int(np.flatnonzero(outside.to_numpy())[0])
                raise StructuredInputError(
                    f"{source}: column {spec.name!r} row {row}: {numbers.iloc[row]} is outside the range [{low}, {high}]"
                )
            out[spec.name] = numbers.astype(float)
    return pd.DataFrame(out).reset_index(drop=True)


def empty_records(variables: VariableSet) -> pd.DataFrame:
    return pd.DataFrame(
        {v.name: pd.Series(dtype=str if v.is_categorical else float) for v in variables.variables}
    )


def _num(x: float) -> str:
    """A short decimal for prompts: integers without a point, others with up to 4 significant digits."""
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}" if abs(x) >= 1 else f"{x:.3g}"
