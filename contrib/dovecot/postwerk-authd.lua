-- /etc/dovecot/postwerk-authd.lua — Dovecot passdb and userdb through
-- postwerk-authd, for Dovecot 2.4 (which has no dict passdb/userdb) and 2.3.
-- Tested with Dovecot 2.4.1 (Debian 13) and 2.3.19 (Debian 12).
--
-- Needs Debian's dovecot-auth-lua (driver lua) and lua-socket (UNIX socket
-- client). The script speaks authd's dict protocol (the same socket and the
-- same answers as contrib/dovecot/dovecot-dict-auth.conf.ext, see
-- shared/reference/dovecot-dict.md) to [authd].dict_listen:
--
--   H3<TAB>2<TAB>0<TAB><TAB>authd-lua       hello (no reply)
--   Lshared/passdb/<user>                   -> O{"password":"..."} | N | F<text>
--   Lshared/userdb/<user>                   -> O{"home":..,"uid":..,"gid":..,
--                                              "quota_rule":"*:storage=NM"} | N | F
--   I8<TAB>0<TAB>shared/userdb/             -> O<key><TAB> rows, then an empty line
--
-- passdb returns the stored hash and Dovecot verifies it (so Dovecot's own
-- auth_failure_delay and penalty apply, as with the dict path); userdb
-- returns home, uid, gid and the quota; a send-only account has no userdb
-- entry (USER_UNKNOWN: no IMAP). An authd or database failure is
-- INTERNAL_FAILURE, which Dovecot answers with code=temp_fail.
--
-- One connection per lookup, with a timeout: the script runs in Dovecot's
-- auth-worker processes (2.3: blocking=yes, the default; 2.4: use_worker =
-- yes), where a blocking read is what they are for.
--
-- Dovecot 2.4 (dovecot.conf):
--   passdb lua {
--     lua_file = /etc/dovecot/postwerk-authd.lua
--     use_worker = yes
--     lua_settings {
--       socket = /run/postwerk/authd-dict
--     }
--   }
--   userdb lua {
--     lua_file = /etc/dovecot/postwerk-authd.lua
--     use_worker = yes
--     lua_settings {
--       socket = /run/postwerk/authd-dict
--     }
--   }
-- Dovecot 2.3 (dovecot.conf; 2.3 passes no settings to the script, so edit
-- SOCKET below if authd listens elsewhere):
--   passdb { driver = lua
--            args = file=/etc/dovecot/postwerk-authd.lua blocking=yes }
--   userdb { driver = lua
--            args = file=/etc/dovecot/postwerk-authd.lua blocking=yes }
--
-- Settings (2.4 lua_settings; 2.3: edit the defaults here):
--   socket               authd's dict_listen socket
--   default_pass_scheme  scheme of stored hashes without {SCHEME}; keep it
--                        equal to [mail].default_pass_scheme (the guide:
--                        SHA512-CRYPT)
--   quota_field          userdb field for the quota: 2.3 reads quota_rule
--                        (*:storage=NM, authd's answer, the default when
--                        Dovecot passes no settings); 2.4 replaced it with
--                        quota_storage_size (NM), the default when it does
--   timeout              seconds for connect + one answer (default 10)

-- At load time: after script_init Dovecot forbids new globals.
local unix = require("socket.unix")

local SOCKET = "/run/postwerk/authd-dict"
local DEFAULT_PASS_SCHEME = "SHA512-CRYPT"
local TIMEOUT = 10
-- Dovecot 2.3 calls script_init() without arguments; 2.4 passes the table
-- of lua_settings. The quota field follows the version unless set.
local QUOTA_FIELD = "quota_rule"

-- Called by Dovecot 2.3 (no arguments) and 2.4 (lua_settings).
function script_init(args)
  if type(args) == "table" then
    QUOTA_FIELD = "quota_storage_size"
    if args.socket then SOCKET = args.socket end
    if args.default_pass_scheme then DEFAULT_PASS_SCHEME = args.default_pass_scheme end
    if args.quota_field then QUOTA_FIELD = args.quota_field end
    if args.timeout then TIMEOUT = tonumber(args.timeout) or TIMEOUT end
  end
  return 0
end

-- Dovecot's str_tabescape / str_tabunescape (the dict protocol's escaping).
local ESC = { ["\1"] = "\0011", ["\t"] = "\001t", ["\n"] = "\001n", ["\r"] = "\001r", ["\0"] = "\0010" }
local UNESC = { ["1"] = "\1", t = "\t", n = "\n", r = "\r", ["0"] = "\0" }
local function tabescape(s)
  return (s:gsub("[%z\1\t\n\r]", ESC))
end
local function tabunescape(s)
  return (s:gsub("\1(.?)", function(c) return UNESC[c] or c end))
end

-- A JSON object of strings and numbers, as authd writes it (serde_json):
-- returns a table, or nil and an error.
local JSON_ESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
local function json_object(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function str()
    if s:sub(pos, pos) ~= '"' then return nil, "string expected at " .. pos end
    pos = pos + 1
    local out = {}
    while true do
      local c = s:sub(pos, pos)
      if c == "" then return nil, "unterminated string" end
      if c == '"' then pos = pos + 1; return table.concat(out) end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        if JSON_ESC[e] then
          out[#out + 1] = JSON_ESC[e]; pos = pos + 2
        elseif e == "u" then
          local cp = tonumber(s:sub(pos + 2, pos + 5), 16)
          if not cp then return nil, "bad \\u escape" end
          pos = pos + 6
          if cp >= 0xD800 and cp < 0xDC00 and s:sub(pos, pos + 1) == "\\u" then
            local lo = tonumber(s:sub(pos + 2, pos + 5), 16)
            if lo and lo >= 0xDC00 and lo < 0xE000 then
              cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
              pos = pos + 6
            end
          end
          out[#out + 1] = utf8.char(cp)
        else
          return nil, "bad escape"
        end
      else
        local j = s:find('["\\]', pos) or #s + 1
        out[#out + 1] = s:sub(pos, j - 1); pos = j
      end
    end
  end
  ws()
  if s:sub(pos, pos) ~= "{" then return nil, "object expected" end
  pos = pos + 1
  local obj = {}
  ws()
  if s:sub(pos, pos) == "}" then return obj end
  while true do
    ws()
    local k, err = str()
    if not k then return nil, err end
    ws()
    if s:sub(pos, pos) ~= ":" then return nil, "':' expected" end
    pos = pos + 1
    ws()
    local v
    if s:sub(pos, pos) == '"' then
      v, err = str()
      if not v then return nil, err end
    else
      local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not num or num == "" then return nil, "unsupported value for " .. k end
      v = num; pos = pos + #num
    end
    obj[k] = v
    ws()
    local c = s:sub(pos, pos)
    pos = pos + 1
    if c == "}" then return obj end
    if c ~= "," then return nil, "',' or '}' expected" end
  end
end

-- Opens a connection and says hello; returns it or nil, error.
local function connect()
  local c, err = (unix.stream or unix)()
  if not c then return nil, err end
  c:settimeout(TIMEOUT)
  local ok
  ok, err = c:connect(SOCKET)
  if not ok then c:close(); return nil, "connect " .. SOCKET .. ": " .. tostring(err) end
  ok, err = c:send("H3\t2\t0\t\tauthd-lua\n")
  if not ok then c:close(); return nil, err end
  return c
end

-- One dict lookup: "found", value | "notfound" | "fail", error text.
local function lookup(key)
  local c, err = connect()
  if not c then return "fail", err end
  local ok
  ok, err = c:send("L" .. tabescape(key) .. "\n")
  local line
  if ok then line, err = c:receive("*l") end
  c:close()
  if not line then return "fail", "authd: " .. tostring(err) end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "O" then return "found", tabunescape(rest) end
  if kind == "N" then return "notfound" end
  if kind == "F" then return "fail", "authd failed: " .. tabunescape(rest) end
  return "fail", "authd sent an unexpected reply"
end

local function object_for(req, key)
  local status, value = lookup(key .. req.user)
  if status ~= "found" then return status, value end
  local obj, err = json_object(value)
  if not obj then return "fail", "authd sent bad JSON: " .. err end
  return "found", obj
end

function auth_passdb_lookup(req)
  local status, obj = object_for(req, "shared/passdb/")
  if status == "notfound" then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such user"
  elseif status == "fail" then
    req:log_error(obj)
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "temporary failure"
  end
  local password = obj.password
  if type(password) ~= "string" then
    req:log_error("authd passdb answer has no password")
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "temporary failure"
  end
  if password:sub(1, 1) ~= "{" then
    password = "{" .. DEFAULT_PASS_SCHEME .. "}" .. password
  end
  return dovecot.auth.PASSDB_RESULT_OK, { password = password }
end

function auth_userdb_lookup(req)
  local status, obj = object_for(req, "shared/userdb/")
  if status == "notfound" then
    -- Send-only accounts and unknown users: no mailbox.
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "no such user"
  elseif status == "fail" then
    req:log_error(obj)
    return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, "temporary failure"
  end
  local fields = {}
  for _, k in ipairs({ "home", "uid", "gid" }) do
    if obj[k] ~= nil then fields[k] = tostring(obj[k]) end
  end
  local rule = obj.quota_rule
  if rule ~= nil then
    if QUOTA_FIELD == "quota_rule" then
      fields.quota_rule = rule
    else
      -- 2.4: quota_storage_size takes the size alone ("*:storage=2048M").
      fields[QUOTA_FIELD] = rule:match("storage=(.*)$") or rule
    end
  end
  return dovecot.auth.USERDB_RESULT_OK, fields
end

-- doveadm user '*' and doveadm ... -A: the accounts with a mailbox.
function auth_userdb_iterate()
  local c, err = connect()
  if not c then error(err) end
  local ok
  ok, err = c:send("I8\t0\tshared/userdb/\n")
  if not ok then c:close(); error(err) end
  local users = {}
  while true do
    local line
    line, err = c:receive("*l")
    if not line then c:close(); error("authd: " .. tostring(err)) end
    if line == "" then break end
    local kind, rest = line:sub(1, 1), line:sub(2)
    if kind ~= "O" then c:close(); error("authd iterate failed: " .. tabunescape(rest)) end
    local key = tabunescape(rest:match("^[^\t]*"))
    local user = key:match("^shared/userdb/(.+)$")
    if user then users[#users + 1] = user end
  end
  c:close()
  return users
end
