-- A POST of one form (opts.body) to opts.path with one Authorization header (opts.authorization):
-- a client at the OpenID Provider's endpoints (client_credentials, introspection). The body is
-- given URL-encoded already.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local headers

function init(args)
  parse_options(args)
  headers = {
    ["Authorization"] = opts.authorization,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
end

function request()
  sent()
  return wrk.format("POST", opts.path, headers, opts.body)
end

function response(status, headers, body)
  answered(status)
end
