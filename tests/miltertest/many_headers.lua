-- Many header fields: 900 are signed; 5,000 are over max_headers (2,000 in
-- the test's config): accepted unsigned (error_action = accept), incoming
-- accepted unverified.
dofile(scripts .. "/lib.lua")

local function send(user, count, what)
	local conn = open()
	envelope(conn, user)
	standard_headers(conn)
	for i = 1, count do
		header(conn, "X-Many", "field number " .. i)
	end
	eoh(conn)
	body(conn, what .. "\r\n")
	eom(conn, SMFIR_ACCEPT, what)
	return conn
end

local conn = send("user1@example.org", 900, "900 headers")
signed(conn, "900 headers")
mt.disconnect(conn)

conn = send("user1@example.org", 5000, "5000 headers")
unsigned(conn, "5000 headers")
mt.disconnect(conn)

conn = send(nil, 5000, "incoming 5000 headers")
mt.disconnect(conn)
