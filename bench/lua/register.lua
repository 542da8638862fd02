-- POST /api/auth/register with a new email and username each time (unique per run, thread
-- and request), and a password the policy accepts.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local n = 0

function init(args)
  parse_options(args)
end

function request()
  sent()
  n = n + 1
  local name = string.format("r%s%dx%d", opts.run, id, n)
  local body = string.format(
    '{"email":"%s@bench.test","username":"%s","password":"plover quartz tangerine 42"}', name, name
  )
  return wrk.format("POST", "/api/auth/register", { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = client_address() }, body)
end

function response(status, headers, body)
  answered(status)
end
