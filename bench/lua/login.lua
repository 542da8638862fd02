-- POST /api/auth/login as a random seeded account (usernames user0 .. user<accounts-1>, one password).
-- With opts.rate (requests per second over all connections) each connection paces itself on a
-- fixed schedule, so the offered load stays near that rate whatever the answers' latency (as
-- long as it is shorter than the schedule's interval): used for the flood at a multiple of the
-- hash bound.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local accounts
local body_format

function init(args)
  parse_options(args)
  accounts = tonumber(opts.accounts)
  body_format = '{"login":"user%d","password":"' .. opts.password .. '"}'
  if opts.rate then
    local interval_us = tonumber(opts.connections) / tonumber(opts.rate) * 1e6
    -- Spread the connections' first sends over one interval, so they do not arrive in step.
    local next_at = now_us() + math.random() * interval_us
    function delay()
      local wait = next_at - now_us()
      next_at = math.max(next_at, now_us()) + interval_us
      return math.max(0, math.floor(wait / 1000))
    end
  end
end

function request()
  sent()
  local body = string.format(body_format, math.random(0, accounts - 1))
  return wrk.format("POST", "/api/auth/login", { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = client_address() }, body)
end

function response(status, headers, body)
  answered(status)
end
