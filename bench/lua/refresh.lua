-- POST /api/auth/refresh. Each thread keeps a pool of live refresh tokens (its share of
-- opts.tokens): a request takes one out, its answer puts the rotated one back. A thread needs at
-- least as many tokens as connections, or it would present a spent token (reuse detection).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local pool

function init(args)
  parse_options(args)
  pool = my_lines(opts.tokens)
  assert(#pool > 0, "no refresh tokens for this thread")
end

function request()
  sent()
  local token = table.remove(pool, 1) or "spent"
  return wrk.format(
    "POST", "/api/auth/refresh", { ["Content-Type"] = "application/json" },
    '{"refresh_token":"' .. token .. '"}'
  )
end

function response(status, headers, body)
  answered(status)
  if status == 200 then
    local token = body:match('"refresh_token":"([^"]+)"')
    if token then
      pool[#pool + 1] = token
    end
  end
end
