-- GET /api/users/me with access tokens of distinct accounts (one a line in opts.tokens),
-- each request picking one of this thread's tokens at random. opts.path names another service's
-- "who am I" (the peer's /users/me), driven the same way.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local tokens
local path

function init(args)
  parse_options(args)
  path = opts.path or "/api/users/me"
  tokens = my_lines(opts.tokens)
  assert(#tokens > 0, "no access tokens for this thread")
end

function request()
  sent()
  local token = tokens[math.random(#tokens)]
  return wrk.format("GET", path, { Authorization = "Bearer " .. token })
end

function response(status, headers, body)
  answered(status)
end
