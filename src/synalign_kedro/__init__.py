"""synalign_kedro: SynAlign (Ren et al., WWW Companion 2025) as a Kedro project."""

__version__ = "0.1.0"
