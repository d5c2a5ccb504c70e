"""Training backends for mlx-rsi: one protocol (``backends.base``), one module each.

This is a generic top-level package name (the project layout asks for it); it holds
only explicit submodules. Heavy frameworks (mlx, torch) are imported by the backend
modules alone, and only when that backend is chosen.
"""
