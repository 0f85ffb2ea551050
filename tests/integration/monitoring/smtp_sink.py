"""A small SMTP server that keeps what it receives: the relay Alertmanager mails alerts through in
the monitoring test. It speaks what Alertmanager's Go client needs (EHLO, AUTH LOGIN, MAIL, RCPT,
DATA, QUIT) and records each message with its arrival time and the credentials it logged in with.
"""

from __future__ import annotations

import base64
import socketserver
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage


@dataclass
class Mail:
    at: float  # time.monotonic() when the message was complete
    sender: str
    recipients: list[str]
    login: tuple[str, str] | None  # (user, password) of AUTH LOGIN, if any
    message: EmailMessage

    @property
    def text(self) -> str:
        """Subject and every text part, decoded (Alertmanager sends quoted-printable HTML)."""
        parts = [str(self.message["Subject"])]
        for part in self.message.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
        return "\n".join(parts)


@dataclass
class _Session:
    login: tuple[str, str] | None = None
    sender: str = ""
    recipients: list[str] = field(default_factory=list)


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str) -> None:
        self.mails: list[Mail] = []
        super().__init__((address, 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def wait_for(self, text: str, since: float, timeout: float) -> Mail | None:
        """The first mail since `since` (monotonic) whose text contains `text`, or None."""
        deadline = since + timeout
        while time.monotonic() < deadline:
            for mail in list(self.mails):
                if mail.at >= since and text in mail.text:
                    return mail
            time.sleep(0.5)
        return None


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def _read(self) -> str:
        return self.rfile.readline(65536).decode(errors="replace").rstrip("\r\n")

    def handle(self) -> None:
        assert isinstance(self.server, SmtpSink)
        s = _Session()
        self._reply("220 bgdb-test-sink ESMTP")
        while line := self._read():
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb in ("EHLO", "HELO"):
                self._reply("250-bgdb-test-sink")
                self._reply("250 AUTH LOGIN")
            elif verb == "AUTH" and arg.split()[0].upper() == "LOGIN":
                initial = arg.split()[1:]  # the user name may come with the command
                if not initial:
                    self._reply("334 " + base64.b64encode(b"Username:").decode())
                user = base64.b64decode(initial[0] if initial else self._read()).decode()
                self._reply("334 " + base64.b64encode(b"Password:").decode())
                s.login = (user, base64.b64decode(self._read()).decode())
                self._reply("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                s.sender, s.recipients = arg.partition(":")[2].strip().strip("<>"), []
                self._reply("250 OK")
            elif verb == "RCPT":
                s.recipients.append(arg.partition(":")[2].strip().strip("<>"))
                self._reply("250 OK")
            elif verb == "DATA":
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                self._data(s)
                self._reply("250 OK: queued")
            elif verb == "QUIT":
                self._reply("221 Bye")
                return
            elif verb in ("RSET", "NOOP"):
                self._reply("250 OK")
            else:
                self._reply("502 Command not implemented")

    def _data(self, s: _Session) -> None:
        assert isinstance(self.server, SmtpSink)
        lines = []
        while (raw := self.rfile.readline(1 << 20)) not in (b".\r\n", b".\n", b""):
            lines.append(raw[1:] if raw.startswith(b"..") else raw)  # dot-unstuffing
        msg = message_from_bytes(b"".join(lines), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.server.mails.append(Mail(time.monotonic(), s.sender, list(s.recipients), s.login,
                                      msg))
