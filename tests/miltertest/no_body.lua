-- End of message straight after the headers: no body packet from the
-- script. miltertest then sends its own one-line body ("Dummy message
-- body.") before end of message; an empty body chunk is no way around it
-- (indymilter refuses empty packets and closes, which Postfix never
-- sends). Checked: signed, and the body hash is that line's.
dofile(scripts .. "/lib.lua")

local conn = open()
envelope(conn, "user1@example.org")
standard_headers(conn)
eoh(conn)
eom(conn, SMFIR_ACCEPT, "outgoing without body")
signed(conn, "outgoing without body")
-- sha256 of "Dummy message body.\r\n" (relaxed canonicalization).
local sig = mt.getheader(conn, "DKIM-Signature", 0)
if sig == nil or not string.find(string.gsub(sig, "%s", ""), "bh=9bK+a7d6bpy6k3OfkYVdfRc3rT3Ym82nevxhmHwBTH8=", 1, true) then
	error("unexpected body hash: " .. tostring(sig))
end
mt.disconnect(conn)

conn = open()
envelope(conn, nil)
standard_headers(conn)
eoh(conn)
eom(conn, SMFIR_ACCEPT, "incoming without body")
verified(conn, "incoming without body")
mt.disconnect(conn)

-- Not even headers.
conn = open()
envelope(conn, "user1@example.org")
eoh(conn)
eom(conn, SMFIR_ACCEPT, "no headers, no body")
unsigned(conn, "no headers, no body")
mt.disconnect(conn)
