-- A webhook as the service posts it (Standard Webhooks headers, a body of the usual size), to
-- measure the receiver's own rate (bench/webhooks.py): the limit the deliveries are judged by.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local body = '{"type":"account.profile_updated","timestamp":"2026-12-07T01:00:00.000000Z",'
  .. '"data":{"account_id":"6f1c9a52-3e1b-4d7a-9d0e-2b7c1a3f4e5d"}}'
local n = 0

function init(args)
  parse_options(args)
end

function request()
  sent()
  n = n + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["webhook-id"] = string.format("msg_%d_%d", id or 0, n),
    ["webhook-timestamp"] = tostring(os.time()),
    ["webhook-signature"] = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
  }, body)
end

function response(status, headers, body)
  answered(status)
end
