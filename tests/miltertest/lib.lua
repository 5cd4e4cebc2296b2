-- Shared steps for the milterd scripts (loaded with dofile).
-- `socket` comes from `miltertest -D socket=inet:PORT@127.0.0.1`.

function open()
	local conn = mt.connect(socket, 20, 0.25)
	if conn == nil then
		error("cannot connect to " .. socket)
	end
	if mt.conninfo(conn, "client.example.net", "127.0.0.1") ~= nil then
		error("mt.conninfo() failed")
	end
	if mt.helo(conn, "client.example.net") ~= nil then
		error("mt.helo() failed")
	end
	return conn
end

-- MAIL and RCPT; `user` set: an authenticated (outgoing) message.
function envelope(conn, user)
	if user ~= nil then
		mt.macro(conn, SMFIC_MAIL, "i", "MT0001", "{auth_authen}", user, "{auth_type}", "PLAIN")
	else
		mt.macro(conn, SMFIC_MAIL, "i", "MT0002")
	end
	if mt.mailfrom(conn, "<user1@example.org>") ~= nil then
		error("mt.mailfrom() failed")
	end
	if mt.rcptto(conn, "<someone@example.net>") ~= nil then
		error("mt.rcptto() failed")
	end
end

function header(conn, name, value)
	if mt.header(conn, name, value) ~= nil then
		error("mt.header(" .. name .. ") failed")
	end
end

function standard_headers(conn)
	header(conn, "From", "User One <user1@example.org>")
	header(conn, "To", "<someone@example.net>")
	header(conn, "Subject", "miltertest")
	header(conn, "Date", "Sun, 29 Nov 2026 10:00:00 +0000")
	header(conn, "Message-ID", "<mt@example.org>")
end

function eoh(conn)
	if mt.eoh(conn) ~= nil then
		error("mt.eoh() failed")
	end
end

function body(conn, text)
	if mt.bodystring(conn, text) ~= nil then
		error("mt.bodystring() failed")
	end
end

-- End of message; the final reply must be `want` (default accept).
function eom(conn, want, what)
	if mt.eom(conn) ~= nil then
		error(what .. ": mt.eom() failed")
	end
	local got = mt.getreply(conn)
	want = want or SMFIR_ACCEPT
	if got ~= want then
		error(what .. ": end of message answered " .. tostring(got) .. ", wanted " .. tostring(want))
	end
end

function signed(conn, what)
	if not mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature") then
		error(what .. ": no DKIM-Signature inserted")
	end
end

function unsigned(conn, what)
	if mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature") then
		error(what .. ": a DKIM-Signature was inserted")
	end
end

function verified(conn, what)
	if not mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results") then
		error(what .. ": no Authentication-Results inserted")
	end
end
