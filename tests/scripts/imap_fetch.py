#!/usr/bin/python3
"""postwerk-tests: read one message back over IMAP, as a mail client would.

Connects to HOST:PORT (from --source if given), records the capabilities before
STARTTLS (LOGINDISABLED under the guide's `ssl = required`), upgrades with STARTTLS
verifying the server certificate against --cafile, logs in with LOGIN (password on
stdin), selects --mailbox and searches for the message whose Message-ID header is
--message-id. It polls until --timeout seconds have passed, because delivery is
asynchronous. Stdlib only (imaplib, ssl, json).

Prints one JSON object on stdout:
  {"outcome": "found", "message": "<RFC 5322 text>", "mailbox": ..., "quota": [...],
   "pre_tls_capabilities": [...]}
  {"outcome": "not_found", "mailboxes": {"INBOX": <count>, ...}}
  {"outcome": "login_failed", "response": "<server text>"}
and exits 0 for found, 1 for not found, 2 for a refused login, 3 for anything else
(the error is printed on stderr).

With --login-only it stops after LOGIN (outcome "logged_in" or "login_failed").
With --move-to MAILBOX it then moves the message found there, as a mail client does
when the user drags it (UID MOVE, RFC 6851, which Dovecot offers), and reports
"moved": the server's response.
"""

import argparse
import re
import imaplib
import json
import socket
import ssl
import sys
import time


def capabilities(conn):
    return sorted(c.decode() if isinstance(c, bytes) else c for c in conn.capabilities)


class SourcedIMAP4(imaplib.IMAP4):
    """IMAP4 from a chosen local address. Dovecot treats a connection whose
    remote and local address are equal (127.0.0.1 to 127.0.0.1) as secured
    and would then allow LOGIN without TLS; from 127.0.0.2 it behaves as for a
    client on the network, which is what the guide's ssl = required is about."""

    def __init__(self, host, port, timeout, source):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        source = (self._source, 0) if self._source else None
        return socket.create_connection((self.host, self.port), timeout, source_address=source)


def connect(args):
    conn = SourcedIMAP4(args.host, args.port, args.io_timeout, args.source)
    pre_tls = capabilities(conn)
    ctx = ssl.create_default_context(cafile=args.cafile)
    conn.starttls(ssl_context=ctx)
    return conn, pre_tls


def quota(conn):
    """GETQUOTAROOT INBOX (RFC 2087), loaded by the guide's imap_quota plugin."""
    typ, data = conn.getquotaroot("INBOX")
    if typ != "OK":
        return []
    out = []
    for item in data:
        for entry in item if isinstance(item, list) else [item]:
            if isinstance(entry, bytes):
                out.append(entry.decode(errors="replace"))
    return out


def counts(conn):
    result = {}
    typ, data = conn.list()
    if typ != "OK":
        return result
    for line in data:
        if not line:
            continue
        # (flags) "delimiter"|NIL name, the name quoted or not (RFC 3501 7.2.2)
        m = re.match(r'^\((.*?)\) (NIL|"(?:[^"\\]|\\.)*") (.*)$', line.decode(errors="replace"))
        if not m:
            continue
        name = m.group(3)
        if name.startswith('"') and name.endswith('"'):
            name = name[1:-1]
        typ, n = conn.select('"%s"' % name, readonly=True)
        if typ == "OK":
            result[name] = int(n[0])
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--source", help="local address to connect from, e.g. 127.0.0.2")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--mailbox", default="INBOX")
    p.add_argument("--message-id")
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--io-timeout", type=float, default=10.0)
    p.add_argument("--login-only", action="store_true")
    p.add_argument("--move-to", help="move the message found into this mailbox")
    args = p.parse_args()
    password = sys.stdin.readline().rstrip("\n")

    deadline = time.monotonic() + args.timeout
    conn, pre_tls = connect(args)
    try:
        conn.login(args.user, password)
    except imaplib.IMAP4.error as e:
        text = e.args[0] if e.args else ""
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        print(json.dumps({"outcome": "login_failed", "response": str(text),
                          "pre_tls_capabilities": pre_tls}))
        return 2
    if args.login_only:
        print(json.dumps({"outcome": "logged_in", "pre_tls_capabilities": pre_tls}))
        conn.logout()
        return 0
    if not args.message_id:
        p.error("--message-id is required unless --login-only")

    criterion = '(HEADER Message-ID "%s")' % args.message_id
    while True:
        typ, data = conn.select('"%s"' % args.mailbox, readonly=not args.move_to)
        if typ == "OK":
            typ, data = conn.uid("SEARCH", None, criterion)
            uids = data[0].split() if typ == "OK" and data and data[0] else []
            if uids:
                typ, msg = conn.uid("FETCH", uids[-1], "(BODY.PEEK[])")
                body = b""
                for part in msg:
                    if isinstance(part, tuple):
                        body = part[1]
                moved = None
                if args.move_to:
                    typ, resp = conn.uid("MOVE", uids[-1], '"%s"' % args.move_to)
                    if typ != "OK":
                        raise imaplib.IMAP4.error("UID MOVE: %s %s" % (typ, resp))
                    moved = typ
                print(json.dumps({
                    "outcome": "found",
                    "moved": moved,
                    "mailbox": args.mailbox,
                    "message": body.decode("utf-8", errors="replace"),
                    "quota": quota(conn),
                    "pre_tls_capabilities": pre_tls,
                }))
                conn.logout()
                return 0
        if time.monotonic() >= deadline:
            print(json.dumps({"outcome": "not_found", "mailboxes": counts(conn)}))
            conn.logout()
            return 1
        time.sleep(0.1)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ssl.SSLError, imaplib.IMAP4.error, socket.timeout) as e:
        print("imap_fetch.py: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(3)
