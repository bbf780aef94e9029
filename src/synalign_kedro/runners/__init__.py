"""Kedro runners shipped with the project: ``kedro run --runner synalign_kedro.runners.DaskRunner``."""

from .dask_runner import DaskClientSettings, DaskRunner

__all__ = ["DaskClientSettings", "DaskRunner"]
