"""mgfrec: reasoning recommenders that think inside the real item space (MGFRec)."""

__version__ = "0.1.0"
