"""The one kind of error that is the user's to fix: its message says what and how.

The CLI prints these without a traceback; anything else is a bug.
"""


class NewsletterError(Exception):
    """A problem with the user's input, settings or request; str() names it and the fix."""
