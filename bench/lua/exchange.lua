-- POST /oauth2/token with the authorization_code grant: one line of opts.codes per request
-- ("<code> <PKCE verifier>", made ahead through the real /oauth2/authorize), each sent once, by
-- the client of opts.authorization, for opts.redirect_uri (URL-encoded already). A thread that
-- has spent its share stops; wrk's rate is still over the whole run, so there must be more
-- codes than the run spends (bench/person_tokens.py says when there were not).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local codes
local headers

function init(args)
  parse_options(args)
  codes = my_lines(opts.codes)
  assert(#codes > 0, "no codes for this thread")
  headers = {
    ["Authorization"] = opts.authorization,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
end

function request()
  local line = table.remove(codes)
  if line == nil then
    wrk.thread:stop()
    line = "spent spent"
  end
  local code, verifier = line:match("^(%S+) (%S+)$")
  sent()
  return wrk.format(
    "POST", "/oauth2/token", headers,
    "grant_type=authorization_code&code=" .. code .. "&code_verifier=" .. verifier
      .. "&redirect_uri=" .. opts.redirect_uri
  )
end

function response(status, headers, body)
  answered(status)
end
