-- Abort in the middle of a message, then a whole message on the same
-- connection: it must be signed as if the aborted one never happened.
dofile(scripts .. "/lib.lua")

local conn = open()
envelope(conn, "user1@example.org")
standard_headers(conn)
eoh(conn)
body(conn, "half of a body that is never finished\r\n")
if mt.abort(conn) ~= nil then
	error("mt.abort() failed")
end

-- Abort right after MAIL, before any header.
envelope(conn, "user1@example.org")
if mt.abort(conn) ~= nil then
	error("mt.abort() after MAIL failed")
end

envelope(conn, "user1@example.org")
standard_headers(conn)
eoh(conn)
body(conn, "the message after the aborted one\r\n")
eom(conn, SMFIR_ACCEPT, "after abort")
signed(conn, "after abort")
mt.disconnect(conn)

-- Abort mid-body of an incoming message, then an incoming one: verified.
conn = open()
envelope(conn, nil)
standard_headers(conn)
eoh(conn)
body(conn, "incoming, aborted\r\n")
mt.abort(conn)
envelope(conn, nil)
standard_headers(conn)
eoh(conn)
body(conn, "incoming, complete\r\n")
eom(conn, SMFIR_ACCEPT, "incoming after abort")
verified(conn, "incoming after abort")
unsigned(conn, "incoming after abort")
mt.disconnect(conn)
