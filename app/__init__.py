"""Kinema's API gateway: FastAPI, no torch."""

__version__ = "0.1.0"
