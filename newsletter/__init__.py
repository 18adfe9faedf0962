"""newsletter: essays in a git repo in, responsive email out, sent exactly once."""

__version__ = "0.1.0"
