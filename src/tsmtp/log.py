"""The nine log levels, on top of the standard :mod:`logging` module.

Every line names who wrote it (``core`` or the plugin) and the connection id, with the
transaction number appended once a transaction exists: ``[INFO] [3f9c2a1b.2] [queue.maildir] ...``.
"""

from __future__ import annotations

import enum
import logging
from typing import Protocol, cast

logger = logging.getLogger("tsmtp")


class Level(enum.IntEnum):
    PROTOCOL = 5
    DEBUG = 10
    INFO = 20
    NOTICE = 25
    WARN = 30
    ERROR = 40
    CRIT = 50
    ALERT = 60
    EMERG = 70


for _level in Level:
    logging.addLevelName(_level, _level.name)


class HasLogId(Protocol):
    @property
    def log_id(self) -> str: ...


def log(
    level: Level,
    message: str,
    *args: object,
    source: str,
    context: HasLogId | None = None,
) -> None:
    """Log ``message % args`` (formatted only if the level is enabled)."""
    if logger.isEnabledFor(level):
        where = context.log_id if context is not None else "-"
        text = message % args if args else message
        logger.log(level, "[%s] [%s] %s", where, source, text)


class LogMethods:
    """``logprotocol`` ... ``logemerg``; subclasses say who is logging via :attr:`log_source`."""

    __slots__ = ()

    @property
    def log_source(self) -> str:
        return "core"

    def _log(
        self, level: Level, message: str, context: HasLogId | None, args: tuple[object, ...]
    ) -> None:
        if not logger.isEnabledFor(level):
            return
        if context is None and hasattr(self, "log_id"):
            context = cast(HasLogId, self)
        log(level, message, *args, source=self.log_source, context=context)

    def logprotocol(self, message: str, context: HasLogId | None = None, *args: object) -> None:
        self._log(Level.PROTOCOL, message, context, args)

    def logdebug(self, message: str, context: HasLogId | None = None, *args: object) -> None:
        self._log(Level.DEBUG, message, context, args)

    def loginfo(self, message: str, context: HasLogId | None = None, *args: object) -> None:
        self._log(Level.INFO, message, context, args)

    def lognotice(self, message: str, context: HasLogId | None = None, *args: object) -> None:
        self._log(Level.NOTICE, message, context, args)

    def logwarn(self, message: str, context: HasLogId | None = None, *args: object) -> None:
        self._log(Level.WARN, message, context, args)

    def logerror(self, message: str, context: HasLogId | None = None, *args: object) -> None:
        self._log(Level.ERROR, message, context, args)

    def logcrit(self, message: str, context: HasLogId | None = None, *args: object) -> None:
        self._log(Level.CRIT, message, context, args)

    def logalert(self, message: str, context: HasLogId | None = None, *args: object) -> None:
        self._log(Level.ALERT, message, context, args)

    def logemerg(self, message: str, context: HasLogId | None = None, *args: object) -> None:
        self._log(Level.EMERG, message, context, args)


def configure(level: str | int = "INFO") -> None:
    """Send tsmtp's log to stderr at ``level`` (a name such as ``"NOTICE"`` or a number)."""
    value = Level[level.upper()] if isinstance(level, str) else level
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(value)
    logger.propagate = False
