-- A plain GET of the URL given to wrk (the bare endpoint: /health/live).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

function init(args)
  parse_options(args)
end

function request()
  sent()
  return wrk.format("GET")
end

function response(status, headers, body)
  answered(status)
end
