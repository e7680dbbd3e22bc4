"""A local stand-in for the X API (CONTRACT.md, "The X sandbox"): in memory, no Django, spoken to over HTTP only."""

from xsandbox.server import SandboxServer, start_in_thread

__all__ = ["SandboxServer", "start_in_thread"]
