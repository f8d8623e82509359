"""Local capture peers for dev mode: an SMTP server, a Twilio-compatible API and a fax API.

They speak the real protocols, so Herald's real providers talk to them unchanged; what they
receive lands in the outbox (``herald outbox``). Tests use them as loopback peers too.
"""
