-- 1 MB of headers. miltertest 2.11 cannot send one field of more than
-- about 1 KB (its header buffer overflows: abort or SIGSEGV), so the
-- megabyte comes as fields of 1,000 bytes. The test runs milterd with
-- max_headers = 2000, so max_header_size (1 MiB) is the limit that bites:
-- 990 fields (~1.0 MB) are signed; 1,100 (~1.1 MB) are over the limit,
-- not buffered, and accepted unsigned (error_action = accept).
dofile(scripts .. "/lib.lua")

local field = string.rep("a", 1000)

local function send(user, count, what)
	local conn = open()
	envelope(conn, user)
	standard_headers(conn)
	for i = 1, count do
		header(conn, "X-Big-" .. i, field)
	end
	eoh(conn)
	body(conn, what .. "\r\n")
	eom(conn, SMFIR_ACCEPT, what)
	return conn
end

local conn = send("user1@example.org", 990, "1.0 MB of headers")
signed(conn, "1.0 MB of headers")
mt.disconnect(conn)

conn = send("user1@example.org", 1100, "1.1 MB of headers")
unsigned(conn, "1.1 MB of headers")
mt.disconnect(conn)

-- Incoming, the same: accepted.
conn = send(nil, 1100, "incoming 1.1 MB of headers")
mt.disconnect(conn)

-- The daemon still works after all of that.
conn = send("user1@example.org", 1, "small again")
signed(conn, "small after huge")
mt.disconnect(conn)
