"""The web side: the editor's live preview, and the public app (archive,
unsubscribe, SendGrid events)."""
