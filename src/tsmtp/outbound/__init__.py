"""Outbound delivery. The types its hooks receive are declared now; delivery itself lands later."""

from .mail import Bounce, Deferral, Delivery, MailExchanger, OutboundMail

__all__ = ["Bounce", "Deferral", "Delivery", "MailExchanger", "OutboundMail"]
