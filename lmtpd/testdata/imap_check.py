#!/usr/bin/python3
"""Reads a mailbox through a real Dovecot IMAP server and prints JSON:
folders (LIST), subscribed folders (LSUB), per folder the subjects and
flags of its messages, and GETQUOTAROOT INBOX STORAGE (usage, limit in KiB).
Usage: imap_check.py PORT USER PASSWORD
"""
import imaplib, json, re, sys

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
m = imaplib.IMAP4("127.0.0.1", port)
m.login(user, password)

def names(resp):
    out = []
    for line in resp:
        if line is None:
            continue
        s = line.decode() if isinstance(line, bytes) else line
        mt = re.match(r'\((?P<flags>[^)]*)\) "(?P<sep>[^"]*)" (?P<name>.*)$', s)
        if mt:
            out.append(mt.group("name").strip('"'))
    return sorted(out)

typ, lst = m.list()
typ, lsub = m.lsub()
folders = {}
for name in names(lst):
    typ, data = m.select('"%s"' % name, readonly=True)
    if typ != "OK":
        continue
    count = int(data[0])
    msgs = []
    if count:
        typ, resp = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT DELIVERED-TO)] RFC822.SIZE)")
        for item in resp:
            if isinstance(item, tuple):
                meta = item[0].decode()
                flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1).split()
                size = int(re.search(r"RFC822.SIZE (\d+)", meta).group(1))
                hdr = item[1].decode(errors="replace")
                subj = re.search(r"^Subject: (.*?)\r?$", hdr, re.M | re.I)
                dt = re.search(r"^Delivered-To: (.*?)\r?$", hdr, re.M | re.I)
                msgs.append({"subject": subj.group(1) if subj else None,
                             "delivered_to": dt.group(1) if dt else None,
                             "flags": sorted(flags), "size": size})
    folders[name] = msgs
typ, q = m.getquotaroot("INBOX")
quota = None
for line in q[1] if len(q) > 1 else []:
    s = line.decode() if isinstance(line, bytes) else str(line)
    mt = re.search(r"STORAGE (\d+) (\d+)", s)
    if mt:
        quota = [int(mt.group(1)), int(mt.group(2))]
m.logout()
print(json.dumps({"list": names(lst), "lsub": names(lsub), "folders": folders, "quota": quota}))
