"""The one exception the protocol core raises."""

from __future__ import annotations


class ProtocolError(Exception):
    """Bad input from the client, carrying the reply that answers it.

    The session sends ``code enhanced text`` and goes on; nothing the client sends can raise
    anything else out of the parser.
    """

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(f"{code} {enhanced} {text}")
        self.code = code
        self.enhanced = enhanced
        self.text = text
