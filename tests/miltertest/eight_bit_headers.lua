-- Raw 8-bit bytes in header values (Latin-1 and UTF-8), as broken or
-- SMTPUTF8 clients send them.
dofile(scripts .. "/lib.lua")

local latin1 = "Gr\252\223e aus M\252nchen \228\246\252"
local utf8 = "Gr\195\188\195\159e \226\130\172 \240\159\152\128"
local garbage = "\255\254\128\129 \192\193"

for _, user in ipairs({ "user1@example.org", false }) do
	local conn = open()
	envelope(conn, user or nil)
	header(conn, "From", latin1 .. " <user1@example.org>")
	header(conn, "To", utf8 .. " <someone@example.net>")
	header(conn, "Subject", garbage .. latin1 .. utf8)
	header(conn, "X-Raw", garbage)
	eoh(conn)
	body(conn, "8-bit header test " .. latin1 .. "\r\n")
	local what = user and "outgoing 8-bit" or "incoming 8-bit"
	eom(conn, SMFIR_ACCEPT, what)
	if user then
		signed(conn, what)
	else
		verified(conn, what)
	end
	mt.disconnect(conn)
end
