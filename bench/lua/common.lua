-- Shared by every scenario script: options from the command line (after `--`, as key=value),
-- answers counted by status, optional per-answer timing, and one JSON summary line at the end
-- (`BENCH_JSON {...}`) that bench/load.py reads.
--
-- Per-status timing needs exactly one connection per wrk thread: with one request in flight per
-- Lua state, each response belongs to the last request sent. The scripts time answers only when
-- given `timed=1`, which bench/load.py passes when threads == connections.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

-- A client address of its own for each request, in X-Forwarded-For (believed from 127.0.0.1,
-- the bench's trusted proxy): logins and registrations are many people's, not one client's,
-- whose share of the hash gate is bounded (infrastructure/hash_gate.py).
function client_address()
  return string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
end

function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

-- Main state: every thread, so done() can collect what each one counted.
local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
  table.insert(threads, thread)
end

-- Thread state. Flat tables only: wrk's thread:get() cannot copy a table of tables.
opts = {}
statuses = {}
timed_statuses = {}
timed_us = {}
local sent_at = nil

function parse_options(args)
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then
      opts[key] = value
    end
  end
  math.randomseed(os.time() * 1000 + (id or 0) * 7919 + math.floor(now_us() % 1000))
end

-- The lines of a file that fall to this thread: line i goes to thread (i - 1) % threads + 1.
function my_lines(path)
  local mine = {}
  local n = tonumber(opts.threads or "1")
  local i = 0
  for line in io.lines(path) do
    if line ~= "" then
      if i % n == id - 1 then
        mine[#mine + 1] = line
      end
      i = i + 1
    end
  end
  return mine
end

function sent()
  if opts.timed == "1" then
    sent_at = now_us()
  end
end

function answered(status)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if sent_at ~= nil then
    timed_statuses[#timed_statuses + 1] = key
    timed_us[#timed_us + 1] = now_us() - sent_at
    sent_at = nil
  end
end

local function percentile(sorted, p)
  if #sorted == 0 then
    return 0
  end
  local rank = math.max(1, math.ceil(p / 100 * #sorted))
  return sorted[rank]
end

local function json_object(pairs_list)
  return "{" .. table.concat(pairs_list, ",") .. "}"
end

function done(summary, latency, requests)
  local totals = {}
  local merged = {}
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("statuses")) do
      totals[key] = (totals[key] or 0) + count
    end
    local keys, values = thread:get("timed_statuses"), thread:get("timed_us")
    for i, key in ipairs(keys) do
      local all = merged[key] or {}
      all[#all + 1] = values[i]
      merged[key] = all
    end
  end
  local status_fields = {}
  for key, count in pairs(totals) do
    status_fields[#status_fields + 1] = string.format('"%s":%d', key, count)
  end
  local timing_fields = {}
  for key, list in pairs(merged) do
    table.sort(list)
    timing_fields[#timing_fields + 1] = string.format(
      '"%s":{"count":%d,"p50_us":%.1f,"p99_us":%.1f}',
      key, #list, percentile(list, 50), percentile(list, 99)
    )
  end
  local e = summary.errors
  io.write("BENCH_JSON ", json_object({
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"p50_us":%.1f', latency:percentile(50)),
    string.format('"p99_us":%.1f', latency:percentile(99)),
    string.format('"mean_us":%.1f', latency.mean),
    string.format('"max_us":%.1f', latency.max),
    string.format(
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
      e.connect, e.read, e.write, e.status, e.timeout
    ),
    '"statuses":' .. json_object(status_fields),
    '"timed":' .. json_object(timing_fields),
  }), "\n")
end

-- The scripts live side by side; each loads this file with:
--   dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
