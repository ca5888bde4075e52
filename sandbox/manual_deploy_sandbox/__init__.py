"""Local stand-ins for the real systems, shared by the tests and the `sandbox` drill command."""
